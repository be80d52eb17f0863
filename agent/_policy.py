"""The policy: one YAML file describing each AI system and how it is guarded.

``load_policy`` reads and validates it; every problem is reported with the file, the
key path and what is wrong, all at once. ``${VAR}`` and ``${VAR:-default}`` in string
values are filled from the environment (for secrets). Relative paths are relative to
the policy file. The policy's ``version`` is a hash of its validated content (secrets
masked, values from the environment counted as written), recorded in every event so each output can be tied to the rules in force.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    IPvAnyNetwork,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from aimsguard.collectors import Comparison, FairnessConfig, ObjectiveConfig, ObjectiveMetric, ReviewConfig
from aimsguard.collectors.records import MANUAL_RULE, IncidentCategory, IncidentSeverity
from aimsguard.guardrails import GuardrailRegistry, GuardrailSettings, Stage, default_registry

from ._errors import PolicyError, PolicyProblem

__all__ = [
    "CallersConfig",
    "CheckConfig",
    "Comparison",
    "ConsoleConfig",
    "ConsoleRole",
    "ContentLogging",
    "Durability",
    "EventLogConfig",
    "FailMode",
    "GatewayConfig",
    "HandoffWebhookConfig",
    "IncidentRule",
    "IncidentsConfig",
    "ObjectiveConfig",
    "ObjectiveMetric",
    "Policy",
    "RecordsConfig",
    "StateConfig",
    "SystemConfig",
    "TelemetryConfig",
    "UnknownRoutes",
    "load_policy",
    "parse_policy",
]

_ID = r"^[a-z0-9][a-z0-9_\-]{0,62}$"


class _HasId(Protocol):
    id: str


_WithId = TypeVar("_WithId", bound=_HasId)


def _unique_ids(items: list[_WithId], what: str) -> list[_WithId]:
    ids = [item.id for item in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{what} ids must be unique; repeated: {repeated}")
    return items


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FailMode(str, enum.Enum):
    """What a check's error or timeout means: ``open`` lets the exchange through, ``closed`` blocks it."""

    OPEN = "open"
    CLOSED = "closed"


class UnknownRoutes(str, enum.Enum):
    """What a model call to a route no dialect reads gets (``/v1/audio/...``, ``/v1/assistants``, ...):
    ``block`` answers 403 ``route_not_guarded``; ``pass`` lets it through unchecked. Both are
    recorded (a ``route.unguarded`` event and ``aimsguard_unguarded_routes_total``)."""

    PASS = "pass"
    BLOCK = "block"


class ContentLogging(str, enum.Enum):
    NONE = "none"
    REDACTED = "redacted"


class Durability(str, enum.Enum):
    """When an answer may leave: ``batch`` at once (its event is written within the bus's
    flush interval); ``request`` only once its exchange event is written and fsynced."""

    BATCH = "batch"
    REQUEST = "request"


class CheckConfig(_Strict):
    guardrail: Annotated[str, Field(min_length=1)]
    id: Annotated[str | None, Field(pattern=_ID)] = None
    fail_mode: FailMode = FailMode.CLOSED
    timeout_ms: Annotated[float, Field(gt=0, le=60_000)] = 200
    # A check's cost grows with its input (Presidio's faster than linearly), so input past
    # max_chars (all texts together) is not checked at all; over_limit decides what that means.
    max_chars: Annotated[int | None, Field(ge=1)] = None
    over_limit: FailMode = FailMode.CLOSED
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


class HandoffWebhookConfig(_Strict):
    """Called (POST, JSON, no conversation text) when a handoff ticket is queued; in the
    background with retries, never holding up the user's answer."""

    url: HttpUrl
    secret: SecretStr | None = None  # signs the body: x-aimsguard-signature: sha256=<hmac>
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class FallbackConfig(_Strict):
    handoff_webhook: HandoffWebhookConfig | None = None
    stopped_message: Annotated[str | None, Field(min_length=1, description="answer while the stop switch is on; default: message")] = None
    message: Annotated[str, Field(min_length=1)] = (
        "I'm sorry, I can't help with that request. Please contact our support team."
    )
    escalation_message: Annotated[str, Field(min_length=1)] = (
        "I've passed your request to a member of our team, who will get back to you."
    )


class StreamingConfig(_Strict):
    holdback_chars: Annotated[int, Field(ge=0, le=4096)] = 32
    # The most new text between two checks of a stream (the step grows to it from one window,
    # so the first words go out soon). Each check reads only the new text and the context it
    # declares: a stream costs linear time, and a larger step costs less per character.
    check_every_chars: Annotated[int, Field(ge=1, le=4096)] = 256


class CallersConfig(_Strict):
    """Who may call a system: virtual API keys (``aimsguard keys create``) and what happens
    to their limits when the shared state is down (see ``agent/_callers.py``)."""

    # true: every request needs one of this system's keys (Bearer ag-... or x-api-key), else 401.
    # false: a request may still present one, and is then held to it (and refused if it is bad).
    require_key: bool = False
    # The shared state (limit counters) unreachable: open lets requests through unlimited,
    # closed refuses them (503 limits_unavailable). Counted and evented either way.
    limits_fail_mode: FailMode = FailMode.OPEN


class ShadowConfig(_Strict):
    """A candidate version of a system's checks, run on the same traffic after each answer:
    its decisions are recorded (``shadow.verdict``), never applied."""

    candidate: Annotated[str, Field(pattern=_ID, description="the candidate's name, on every shadow.verdict")]
    checks: Checks
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 64  # shadow runs waiting at once; past this, dropped and counted
    # The share of exchanges the candidate also checks: it costs about the live checks' CPU again.
    sample_rate: Annotated[float, Field(gt=0, le=1)] = 1.0


class SystemConfig(_Strict):
    name: Annotated[str, Field(min_length=1)]
    owner: Annotated[str, Field(min_length=1)]
    purpose: str = ""
    upstream: UpstreamConfig | None = None
    checks: Checks = Checks()
    fallback: FallbackConfig = FallbackConfig()
    streaming: StreamingConfig = StreamingConfig()
    callers: CallersConfig = CallersConfig()
    unknown_routes: UnknownRoutes = UnknownRoutes.BLOCK
    knowledge_base: Path | None = None
    objectives: list[ObjectiveConfig] = []
    # A decision system's outcomes and sensitive-feature groups, watched for bias (see
    # aimsguard.collectors.FairnessConfig and the commented example policy).
    fairness: FairnessConfig | None = None
    # A share of the checks' decisions queued for people to judge (see aimsguard.collectors.ReviewConfig).
    review: ReviewConfig | None = None
    shadow: ShadowConfig | None = None

    @field_validator("objectives")
    @classmethod
    def _unique_objective_ids(cls, objectives: list[ObjectiveConfig]) -> list[ObjectiveConfig]:
        return _unique_ids(objectives, "objective")


class EventLogConfig(_Strict):
    directory: Path = Path("var/events")
    fail_mode: FailMode = FailMode.OPEN
    content: ContentLogging = ContentLogging.NONE
    fsync: bool = False
    retention_days: Annotated[int, Field(ge=1)] = 183
    max_segment_bytes: Annotated[int, Field(ge=64 * 1024)] = 64 * 1024 * 1024  # a segment closes (and gets its digest) at this size
    max_queue: Annotated[int, Field(ge=100)] = 20_000
    durability: Durability = Durability.BATCH
    # An Ed25519 private key (PEM) that signs each segment digest; $AIMSGUARD_EVENT_LOG_SIGNING_KEY
    # (the PEM itself) takes precedence. Make a pair with `aimsguard logs keygen`.
    signing_key: Path | None = None


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
    # Bounded by cost, not only bytes: thousands of tiny messages or one huge one would each
    # be checked, so they are refused up front (413) with the limit named.
    max_messages: Annotated[int, Field(ge=1)] = 1_000
    max_message_chars: Annotated[int, Field(ge=1)] = 200_000
    default_system: str | None = None
    # On SIGTERM, how long in-flight requests may take to finish before the log is closed
    # (below Kubernetes' default 30 s grace period, which ends in SIGKILL).
    drain_timeout_s: Annotated[int, Field(ge=0, le=3600)] = 25


class ConsoleRole(str, enum.Enum):
    """What a console user may do: reviewers answer handoffs, responders handle incidents
    and the stop switch, admins both."""

    REVIEWER = "reviewer"
    RESPONDER = "responder"
    ADMIN = "admin"


class ConsoleUser(_Strict):
    name: Annotated[str, Field(pattern=_ID)]
    password_hash: Annotated[str, Field(description="argon2 hash from `aimsguard console hash-password`")]
    role: ConsoleRole

    @model_validator(mode="after")
    def _argon2_hash(self) -> ConsoleUser:
        # Checked here rather than on the field so the error never echoes the value (a
        # plain password pasted by mistake).
        import argon2

        try:
            argon2.extract_parameters(self.password_hash)
        except argon2.exceptions.InvalidHashError:
            raise ValueError(
                f"user {self.name!r}: password_hash must be an argon2 hash (make one with "
                "`aimsguard console hash-password`), never a plain password"
            ) from None
        return self


class ConsoleToken(_Strict):
    """A bearer token for scripted access (``Authorization: Bearer ...``), e.g. from a secret store."""

    name: Annotated[str, Field(pattern=_ID)]
    token: SecretStr
    role: ConsoleRole

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)")
        return value


class ConsoleConfig(_Strict):
    """The web console (mounted at /console on the gateway)."""

    enabled: bool = False
    # Signs the session cookie; every replica needs the same one. Empty: a random one per
    # process (sessions end at restart and do not work across workers).
    session_secret: SecretStr | None = None
    session_max_age_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 8 * 3600
    secure_cookies: bool = False  # true behind HTTPS: the session cookie is then never sent over plain HTTP
    users: list[ConsoleUser] = []
    tokens: list[ConsoleToken] = []
    # Reverse proxies (CIDRs) whose X-Forwarded-For is believed for the sign-in limit per
    # address; from anyone else the header is ignored (a client could name any address).
    trusted_proxies: list[IPvAnyNetwork] = []

    @field_validator("session_secret")
    @classmethod
    def _secret_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (or empty for a random one per process)")
        return value

    @model_validator(mode="after")
    def _usable(self) -> ConsoleConfig:
        if self.enabled and not self.users:
            raise ValueError(
                "the console is enabled but has no users: add console.users with password hashes "
                "(`aimsguard console hash-password`), or set console.enabled: false"
            )
        names = [u.name for u in self.users] + [t.name for t in self.tokens]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"user and token names must be unique; repeated: {duplicates}")
        return self


_Scalar = str | int | float | bool


class IncidentRule(_Strict):
    """Opens an incident record when matching events pile up (see collectors/_incidents.py).

    ``when`` names the event kind and fields that must match (a value or a list of
    allowed values), e.g. ``{event: guardrail.verdict, guardrail: pii-out, action: [redact, block]}``.
    A count rule fires at ``count`` matches within ``window_s``; a rate rule
    (``rate_over: exchange``) when matches / events of that kind reach ``threshold``
    with at least ``min_events`` of them in the window.
    """

    id: Annotated[str, Field(pattern=_ID)]
    title: str = ""
    when: dict[str, _Scalar | list[_Scalar]]
    systems: list[str] = []  # empty: every system
    count: Annotated[int, Field(ge=1)] = 1
    window_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 600.0
    rate_over: str | None = None
    threshold: Annotated[float | None, Field(gt=0)] = None
    min_events: Annotated[int, Field(ge=1)] = 20
    severity: IncidentSeverity = IncidentSeverity.MEDIUM
    serious: bool = False  # a serious incident under EU AI Act Art. 3(49): gets a reporting deadline
    category: IncidentCategory | None = None  # death | widespread | critical_infrastructure | other

    @model_validator(mode="after")
    def _consistent(self) -> IncidentRule:
        if self.id == MANUAL_RULE:
            raise ValueError(f"incident rule id {MANUAL_RULE!r} is reserved for incidents people report; choose another id")
        if not isinstance(self.when.get("event"), str):
            raise ValueError(f"incident rule {self.id!r}: when.event must name an event kind (e.g. guardrail.verdict)")
        if (self.rate_over is None) != (self.threshold is None):
            raise ValueError(f"incident rule {self.id!r}: rate_over and threshold go together")
        if self.category is not None and not self.serious:
            raise ValueError(f"incident rule {self.id!r}: category only applies to serious incidents (serious: true)")
        return self


class IncidentsConfig(_Strict):
    fold_window_s: Annotated[float, Field(gt=0)] = 3600.0  # repeats within this fold into the open record
    max_event_ids: Annotated[int, Field(ge=1, le=10_000)] = 200  # linked event ids kept per incident
    rules: list[IncidentRule] = []

    @field_validator("rules")
    @classmethod
    def _unique_rule_ids(cls, rules: list[IncidentRule]) -> list[IncidentRule]:
        return _unique_ids(rules, "incident rule")


class RecordsConfig(_Strict):
    """The records store (handoffs, incidents, stop switches): SQLite file or PostgreSQL URL."""

    url: SecretStr = SecretStr("sqlite:///var/records.db")  # a relative SQLite path is relative to the policy file
    stop_poll_s: Annotated[float, Field(ge=0.1, le=60)] = 1.0  # how soon a stop switch reaches every replica
    handoff_timeout_s: Annotated[float, Field(gt=0, le=30)] = 2.0  # longest an escalated answer waits for its ticket


class VaultFailMode(str, enum.Enum):
    """The personal-data vault when the shared state is unreachable: ``degrade`` still redacts
    (``<EMAIL_ADDRESS>``, unnumbered) but cannot restore, and every piece of personal data in
    an answer counts as a leak; ``closed`` makes the check fail, resolved by its fail_mode."""

    DEGRADE = "degrade"
    CLOSED = "closed"


class SignInFailMode(str, enum.Enum):
    """Console sign-in throttling without its shared counters: ``closed`` refuses sign-ins
    (503), ``local`` counts failures in this process only."""

    CLOSED = "closed"
    LOCAL = "local"


class SessionsFailMode(str, enum.Enum):
    """Console session revocations without the shared state: ``store`` asks the records
    store (the durable copy), ``closed`` refuses every session (bearer tokens still work)."""

    STORE = "store"
    CLOSED = "closed"


class StopSwitchFailMode(str, enum.Enum):
    """The stop switch's fast path without the shared state: ``poll``, the records store's poll
    (``records.stop_poll_s``) carries a stop to every replica."""

    POLL = "poll"


class StateFailModes(_Strict):
    vault: VaultFailMode = VaultFailMode.DEGRADE
    sign_in: SignInFailMode = SignInFailMode.CLOSED
    sessions: SessionsFailMode = SessionsFailMode.STORE
    stop_switch: StopSwitchFailMode = StopSwitchFailMode.POLL


class StateConfig(_Strict):
    """Short-lived state the replicas of a fleet share (the personal-data vault, sign-in
    throttling, session revocations, the stop switch's fast path). Without ``url``: kept in
    this process, which is right for one replica."""

    url: SecretStr | None = Field(default=None, description="redis://host:6379/0 (rediss:// for TLS); absent: this process only")
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{0,64}$")] = "aimsguard"  # every key starts with it
    timeout_ms: Annotated[float, Field(ge=10, le=10_000)] = 250.0  # connect and answer, per operation
    max_connections: Annotated[int, Field(ge=1, le=10_000)] = 64  # per worker process
    # The vault's encryption key (32 bytes, URL-safe base64); $AIMSGUARD_STATE_KEY takes precedence.
    # Required with a url when a system has a personal-data check. Make one with `aimsguard state keygen`.
    key: SecretStr | None = None
    fail_modes: StateFailModes = StateFailModes()

    @field_validator("url", mode="before")
    @classmethod
    def _empty_is_none(cls, url: Any) -> Any:
        return None if url in ("", None) else url  # `${AIMSGUARD_STATE_URL:-}` unset: this process only

    @property
    def shared(self) -> bool:
        return self.url is not None


class Policy(_Strict):
    version: int = Field(default=1, ge=1, le=1, description="schema version of this file")
    records: RecordsConfig | None = None
    incidents: IncidentsConfig = IncidentsConfig()
    gateway: GatewayConfig = GatewayConfig()
    event_log: EventLogConfig = EventLogConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    console: ConsoleConfig = ConsoleConfig()
    state: StateConfig = StateConfig()
    systems: Annotated[dict[Annotated[str, Field(pattern=_ID)], SystemConfig], Field(min_length=1)]
    _version: str = PrivateAttr(default="")

    @field_validator("systems")
    @classmethod
    def _unique_check_ids(cls, systems: dict[str, SystemConfig]) -> dict[str, SystemConfig]:
        for system_id, system in systems.items():
            for stage in Stage:
                ids = [c.instance_id for c in system.checks.for_stage(stage)]
                shadow_ids = [c.instance_id for c in system.shadow.checks.for_stage(stage)] if system.shadow else []
                if len(set(shadow_ids)) < len(shadow_ids):
                    raise ValueError(f"system {system_id!r}: shadow {stage.value} checks share an id; give each an 'id'")
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


def _policy_hash(policy: Policy, written: Mapping[tuple[str | int, ...], str] | None = None) -> str:
    """The policy version: a hash of the validated content, where every value filled from the
    environment counts as written (``${VAR:-default}``), so the demo, the report and the docs
    give one version for one file whatever their environment holds. Secrets are masked too."""
    content = policy.model_dump(mode="json")
    for path, template in (written or {}).items():
        _put_written(content, path, template)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _put_written(node: Any, path: tuple[str | int, ...], template: str) -> None:
    """Put the text as written at ``path`` in the dumped policy (if that value is still there)."""
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1] if path else None
    if isinstance(node, dict) and last in node and not isinstance(node[last], (dict, list)):
        node[last] = template
    elif isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node) and not isinstance(node[last], (dict, list)):
        node[last] = template


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _fill_env(
    node: Any,
    path: str,
    env: Mapping[str, str],
    problems: list[PolicyProblem],
    written: dict[tuple[str | int, ...], str] | None = None,
    at: tuple[str | int, ...] = (),
) -> Any:
    """Fill ``${VAR}`` references; ``written`` collects each filled value's text as written."""
    if isinstance(node, dict):
        return {
            key: _fill_env(value, f"{path}.{key}" if path else str(key), env, problems, written, (*at, key))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_fill_env(value, f"{path}[{i}]", env, problems, written, (*at, i)) for i, value in enumerate(node)]
    if isinstance(node, str):
        if written is not None and _ENV_REF.search(node):
            written[at] = node

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
    written: dict[tuple[str | int, ...], str] = {}
    data = _fill_env(data, "", os.environ if env is None else env, problems, written)
    if problems:
        raise PolicyError(source, problems)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _problems_from(exc)) from None
    problems.extend(_check_settings(policy, registry))
    problems.extend(_check_records_needed(policy))
    problems.extend(_check_review(policy))
    default = policy.gateway.default_system
    if default is not None and default not in policy.systems:
        problems.append(PolicyProblem("gateway.default_system", f"names no system (systems: {', '.join(policy.systems)})"))
    if problems:
        raise PolicyError(source, problems)
    version = _policy_hash(policy, written)
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
        candidates = [("checks", system.checks)] + ([("shadow.checks", system.shadow.checks)] if system.shadow else [])
        for where, checks in candidates:
            for stage in Stage:
                for index, check in enumerate(checks.for_stage(stage)):
                    path = f"systems.{system_id}.{where}.{stage.value}[{index}]"
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


def _check_records_needed(policy: Policy) -> list[PolicyProblem]:
    """What needs a records store (incident rules, API keys) and what incident rules name."""
    problems: list[PolicyProblem] = []
    if policy.incidents.rules and policy.records is None:
        problems.append(PolicyProblem("incidents.rules", "incident records need a records store: add records: {url: ...}"))
    for system_id, system in policy.systems.items():
        if system.callers.require_key and policy.records is None:
            problems.append(
                PolicyProblem(f"systems.{system_id}.callers.require_key", "API keys live in the records store: add records: {url: ...}")
            )
    for index, rule in enumerate(policy.incidents.rules):
        unknown = sorted(set(rule.systems) - set(policy.systems))
        if unknown:
            problems.append(PolicyProblem(f"incidents.rules[{index}].systems", f"names no system: {unknown}"))
    return problems


def _check_review(policy: Policy) -> list[PolicyProblem]:
    problems: list[PolicyProblem] = []
    for system_id, system in policy.systems.items():
        if system.review is None:
            continue
        if policy.records is None:
            problems.append(PolicyProblem(f"systems.{system_id}.review", "review samples need a records store: add records: {url: ...}"))
        known = {c.instance_id for stage in Stage for c in system.checks.for_stage(stage)}
        unknown = sorted(set(system.review.checks) - known)
        if unknown:
            problems.append(PolicyProblem(f"systems.{system_id}.review.checks", f"names no check of this system: {unknown} (checks: {sorted(known)})"))
    return problems


def _resolve_sqlite(url: SecretStr, base_dir: Path) -> SecretStr:
    """``sqlite:///relative.db`` is relative to the policy file, like every other path in it."""
    value = url.get_secret_value()
    prefix = "sqlite:///"
    path = value[len(prefix) :].split("?", 1)[0] if value.startswith(prefix) else ""
    if not path or path.startswith("/") or path == ":memory:":
        return url
    return SecretStr(prefix + str((base_dir / path).resolve()) + value[len(prefix) + len(path) :])


def _resolve_paths(policy: Policy, base_dir: Path) -> Policy:
    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    systems = {
        system_id: system.model_copy(update={"knowledge_base": resolve(system.knowledge_base)})
        if system.knowledge_base is not None
        else system
        for system_id, system in policy.systems.items()
    }
    event_log = policy.event_log.model_copy(
        update={"directory": resolve(policy.event_log.directory), "signing_key": policy.event_log.signing_key and resolve(policy.event_log.signing_key)}
    )
    records = policy.records.model_copy(update={"url": _resolve_sqlite(policy.records.url, base_dir)}) if policy.records else None
    return policy.model_copy(update={"systems": systems, "event_log": event_log, "records": records})


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
