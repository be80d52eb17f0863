"""The policy: one YAML file describing each AI system and how it is guarded.

``load_policy`` reads and validates it; every problem is reported with the file, the
key path and what is wrong, all at once. ``${VAR}`` and ``${VAR:-default}`` in string
values are filled from the environment (for secrets). Relative paths are relative to
the policy file. The policy's ``version`` is a hash of its validated content (secrets
masked), recorded in every event so each output can be tied to the rules in force.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, PrivateAttr, SecretStr, ValidationError, field_validator

from aimsguard.guardrails import GuardrailRegistry, GuardrailSettings, Stage, default_registry

from ._errors import PolicyError, PolicyProblem

__all__ = [
    "CheckConfig",
    "ContentLogging",
    "EventLogConfig",
    "FailMode",
    "GatewayConfig",
    "Policy",
    "SystemConfig",
    "TelemetryConfig",
    "load_policy",
    "parse_policy",
]

_ID = r"^[a-z0-9][a-z0-9_\-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FailMode(str, enum.Enum):
    """What a check's error or timeout means: ``open`` lets the exchange through, ``closed`` blocks it."""

    OPEN = "open"
    CLOSED = "closed"


class ContentLogging(str, enum.Enum):
    NONE = "none"
    REDACTED = "redacted"


class CheckConfig(_Strict):
    guardrail: Annotated[str, Field(min_length=1)]
    id: Annotated[str | None, Field(pattern=_ID)] = None
    fail_mode: FailMode = FailMode.CLOSED
    timeout_ms: Annotated[float, Field(gt=0, le=60_000)] = 200
    settings: dict[str, Any] = {}

    @property
    def instance_id(self) -> str:
        return self.id or self.guardrail


class Checks(_Strict):
    input: list[CheckConfig] = []
    output: list[CheckConfig] = []

    def for_stage(self, stage: Stage) -> list[CheckConfig]:
        return self.input if stage is Stage.INPUT else self.output


class UpstreamConfig(_Strict):
    base_url: HttpUrl
    provider: Annotated[str, Field(min_length=1, description="gen_ai.provider.name, e.g. openai")] = "openai"
    api_key: SecretStr | None = None
    model: str | None = Field(default=None, description="force this model name upstream")
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    headers: dict[str, str] = {}


class FallbackConfig(_Strict):
    message: Annotated[str, Field(min_length=1)] = (
        "I'm sorry, I can't help with that request. Please contact our support team."
    )
    escalation_message: Annotated[str, Field(min_length=1)] = (
        "I've passed your request to a member of our team, who will get back to you."
    )


class StreamingConfig(_Strict):
    holdback_chars: Annotated[int, Field(ge=0, le=4096)] = 32


class SystemConfig(_Strict):
    name: Annotated[str, Field(min_length=1)]
    owner: Annotated[str, Field(min_length=1)]
    purpose: str = ""
    upstream: UpstreamConfig | None = None
    checks: Checks = Checks()
    fallback: FallbackConfig = FallbackConfig()
    streaming: StreamingConfig = StreamingConfig()
    knowledge_base: Path | None = None


class EventLogConfig(_Strict):
    directory: Path = Path("var/events")
    fail_mode: FailMode = FailMode.OPEN
    content: ContentLogging = ContentLogging.NONE
    fsync: bool = False
    retention_days: Annotated[int, Field(ge=1)] = 183
    max_queue: Annotated[int, Field(ge=100)] = 20_000


class TracesConfig(_Strict):
    """OTLP/HTTP trace export. Off unless enabled here or by OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT."""

    enabled: bool = False
    otlp_endpoint: HttpUrl | None = None  # e.g. http://collector:4318/v1/traces
    service_name: str = "aimsguard"


class TelemetryConfig(_Strict):
    metrics: bool = True
    max_model_labels: Annotated[int, Field(ge=1, le=1000)] = 32
    traces: TracesConfig = TracesConfig()


class GatewayConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    max_response_bytes: Annotated[int, Field(ge=1024)] = 8_388_608
    default_system: str | None = None


class Policy(_Strict):
    version: int = Field(default=1, ge=1, le=1, description="schema version of this file")
    gateway: GatewayConfig = GatewayConfig()
    event_log: EventLogConfig = EventLogConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    systems: Annotated[dict[Annotated[str, Field(pattern=_ID)], SystemConfig], Field(min_length=1)]
    _version: str = PrivateAttr(default="")

    @field_validator("systems")
    @classmethod
    def _unique_check_ids(cls, systems: dict[str, SystemConfig]) -> dict[str, SystemConfig]:
        for system_id, system in systems.items():
            for stage in Stage:
                ids = [c.instance_id for c in system.checks.for_stage(stage)]
                duplicates = sorted({i for i in ids if ids.count(i) > 1})
                if duplicates:
                    raise ValueError(
                        f"system {system_id!r}: {stage.value} checks share the id(s) {duplicates}; give each an 'id'"
                    )
        return systems

    @property
    def policy_version(self) -> str:
        # Hashed before relative paths are resolved, so the same file has the same
        # version wherever it is deployed.
        return self._version or _policy_hash(self)

    def system(self, system_id: str) -> SystemConfig:
        return self.systems[system_id]

    @property
    def default_system_id(self) -> str | None:
        if self.gateway.default_system:
            return self.gateway.default_system
        return next(iter(self.systems)) if len(self.systems) == 1 else None


def _policy_hash(policy: Policy) -> str:
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _fill_env(node: Any, path: str, env: Mapping[str, str], problems: list[PolicyProblem]) -> Any:
    if isinstance(node, dict):
        return {key: _fill_env(value, f"{path}.{key}" if path else str(key), env, problems) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill_env(value, f"{path}[{i}]", env, problems) for i, value in enumerate(node)]
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(PolicyProblem(path, f"environment variable {name} is not set (use ${{{name}:-default}} to allow that)"))
            return ""

        return _ENV_REF.sub(substitute, node)
    return node


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems_from(error: ValidationError, prefix: str = "") -> list[PolicyProblem]:
    problems = []
    for item in error.errors():
        loc = _key_path(tuple(item["loc"]))
        path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see configs/aimsguard.yaml for the keys this file takes)"
        elif "input" in item and item["type"] not in ("missing",) and not isinstance(item["input"], (dict, list)):
            message = f"{message} (got {item['input']!r})"
        problems.append(PolicyProblem(path, message))
    return problems


def parse_policy(
    data: Any,
    *,
    source: str = "<policy>",
    base_dir: Path | None = None,
    registry: GuardrailRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> Policy:
    """Validate an already-parsed policy document; raise PolicyError listing every problem."""
    registry = registry or default_registry()
    if not isinstance(data, dict):
        raise PolicyError(source, [PolicyProblem("", "the policy must be a mapping (key: value) at the top level")])
    problems: list[PolicyProblem] = []
    data = _fill_env(data, "", os.environ if env is None else env, problems)
    if problems:
        raise PolicyError(source, problems)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _problems_from(exc)) from None
    problems.extend(_check_settings(policy, registry))
    default = policy.gateway.default_system
    if default is not None and default not in policy.systems:
        problems.append(PolicyProblem("gateway.default_system", f"names no system (systems: {', '.join(policy.systems)})"))
    if problems:
        raise PolicyError(source, problems)
    version = _policy_hash(policy)
    if base_dir is not None:
        policy = _resolve_paths(policy, base_dir)
    policy._version = version
    return policy


# The longest common personal data with spaces in it (an IBAN written in groups) must fit
# in the hold-back window whole: the word rule does not protect text that has spaces.
MIN_PII_HOLDBACK = 42


def _check_settings(policy: Policy, registry: GuardrailRegistry) -> list[PolicyProblem]:
    problems: list[PolicyProblem] = []
    for system_id, system in policy.systems.items():
        if any(c.guardrail == "pii" for c in system.checks.output) and system.streaming.holdback_chars < MIN_PII_HOLDBACK:
            problems.append(
                PolicyProblem(
                    f"systems.{system_id}.streaming.holdback_chars",
                    f"must be at least {MIN_PII_HOLDBACK} when a pii check watches the output "
                    "(personal data written with spaces, such as an IBAN, could otherwise go out in part)",
                )
            )
        for stage in Stage:
            for index, check in enumerate(system.checks.for_stage(stage)):
                path = f"systems.{system_id}.checks.{stage.value}[{index}]"
                if check.guardrail not in registry:
                    problems.append(
                        PolicyProblem(f"{path}.guardrail", f"unknown guardrail {check.guardrail!r} (known: {', '.join(registry)})")
                    )
                    continue
                cls = registry.get(check.guardrail)
                if stage not in cls.stages:
                    problems.append(PolicyProblem(f"{path}.guardrail", f"{check.guardrail!r} does not support the {stage.value} stage"))
                try:
                    cls.Settings.model_validate(check.settings)
                except ValidationError as exc:
                    problems.extend(_problems_from(exc, f"{path}.settings"))
    return problems


def validated_settings(check: CheckConfig, registry: GuardrailRegistry) -> GuardrailSettings:
    return registry.get(check.guardrail).Settings.model_validate(check.settings)


def _resolve_paths(policy: Policy, base_dir: Path) -> Policy:
    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    systems = {
        system_id: system.model_copy(update={"knowledge_base": resolve(system.knowledge_base)})
        if system.knowledge_base is not None
        else system
        for system_id, system in policy.systems.items()
    }
    event_log = policy.event_log.model_copy(update={"directory": resolve(policy.event_log.directory)})
    return policy.model_copy(update={"systems": systems, "event_log": event_log})


def load_policy(path: str | os.PathLike[str], *, registry: GuardrailRegistry | None = None) -> Policy:
    """Read, fill and validate a policy file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(file), [PolicyProblem("", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(str(file), [PolicyProblem(where, f"not valid YAML: {problem}")]) from None
    return parse_policy(data, source=str(file), base_dir=file.resolve().parent, registry=registry)
