"""The personal-data check (``pii``), on Presidio, for both stages.

Input: personal data is replaced by placeholders that stay the same within a
conversation (``<PERSON_1>``, ``<EMAIL_ADDRESS_2>``), so the model can still reason about
"the customer's e-mail" without seeing it; or blocks or flags, per entity type.

Output: placeholders in the answer are put back for the user (``restore_output``), and
personal data the user did not give in this conversation is a leak: redacted, blocked or
flagged (``leak_action``).

Findings carry the entity type, position, score and the recognizer that found it —
never the value.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import phonenumbers
import structlog
from pydantic import Field, model_validator

from .._base import Guardrail, GuardrailSettings, window_start
from .._verdict import Action, CheckRequest, Finding, Stage, Verdict, most_severe
from ._offline import pipeline_for
from ._overlaps import without_overlaps
from ._phone import DEFAULT_PHONE_REGIONS
from aimsguard.collectors._state import StateError

from ._vault import PLACEHOLDER, SHARED_VAULT, PlaceholderVault, SharedVault, SharedVaultConfig, VaultView

__all__ = ["PiiGuardrail", "PiiSettings"]

log = structlog.get_logger("aimsguard.guardrails")

_VAULT_KEY = "pii.vault"
Score = Annotated[float, Field(ge=0.0, le=1.0)]


class PiiSettings(GuardrailSettings):
    language: str = "en"
    entities: list[str] | None = Field(
        default=None,
        description="entity types to look for; default: e-mail, phone, names, places, cards, IBAN, national ids, passports, IP, "
        "crypto, URL (not DATE_TIME, ORGANIZATION or NRP: ask for them by name)",
    )
    ner_model: str | None = Field(
        default=None,
        description="an installed spaCy pipeline for PERSON/LOCATION by NER (never downloaded); 'auto': the pipeline on PyPI "
        "for `language`",
    )
    phone_regions: list[str] = Field(
        default=list(DEFAULT_PHONE_REGIONS), min_length=1,
        description="regions whose national phone formats are matched (ISO 3166 codes); +NN numbers are found whatever the list",
    )
    score_threshold: Score = 0.5
    thresholds: dict[str, Score] = {}
    default_action: Action = Action.REDACT
    actions: dict[str, Action] = {}
    allow_list: list[str] = []
    pseudonymize: bool = True
    restore_output: bool = True
    leak_action: Action = Action.REDACT
    vault_ttl_s: Annotated[float, Field(gt=0)] = 3600.0
    vault_max_conversations: Annotated[int, Field(ge=1)] = 10_000
    vault_max_values: Annotated[int, Field(ge=1)] = 1_000

    @model_validator(mode="after")
    def _actions_make_sense(self) -> PiiSettings:
        if self.leak_action is Action.ALLOW:
            raise ValueError("leak_action 'allow' would let leaked personal data through silently; use 'flag' to only record it")
        if self.entities is not None and not self.entities:
            raise ValueError("entities must name at least one entity type (or be left out for the default set)")
        unknown = [r for r in self.phone_regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"phone_regions: {unknown} are not regions phonenumbers knows (ISO 3166 codes such as GB, not UK)")
        return self


def _vault_key(request: CheckRequest) -> str:
    """A conversation, within the credentials of whoever calls (see the middleware's principal)."""
    return f"{request.metadata.get('principal', '')}/{request.conversation_id}"


class PiiGuardrail(Guardrail):
    name = "pii"
    version = "3"  # 2: default entity set, phones by region, layout names, NFKC; 3: cards of every network, street addresses (issue 12)
    masks_content = True
    Settings = PiiSettings
    stream_start = staticmethod(window_start)  # a streamed answer: the new text and one window before it

    def __init__(self, settings: PiiSettings, **kwargs: Any) -> None:  # type: ignore[override]
        super().__init__(settings, **kwargs)
        self.settings: PiiSettings = settings
        # Pattern recognizers run in microseconds to a few milliseconds on short texts:
        # inline. Longer texts, and every text for an NER model, are analysed in a worker
        # process (the vault stays here: ``analyse`` there, ``decide`` here).
        self.offload_above_chars = 256 if settings.ner_model is None else 0  # ~2 ms of Presidio's patterns
        self.analyzer: Any = None
        # A fleet keeps the vault in the shared state (the runtime says so through ``shared``):
        # then each decision first fetches what it needs from there, so the check awaits.
        shared_config: SharedVaultConfig | None = self.shared.get(SHARED_VAULT)
        self.shared_vault: SharedVault | None = None
        self.vault: PlaceholderVault | None = None
        if shared_config is not None:
            self.shared_vault = self.shared.setdefault(
                _VAULT_KEY, SharedVault(shared_config, ttl_s=settings.vault_ttl_s, max_values=settings.vault_max_values)
            )
        else:
            self.vault = self.shared.setdefault(
                _VAULT_KEY,
                PlaceholderVault(
                    ttl_s=settings.vault_ttl_s, max_conversations=settings.vault_max_conversations, max_values=settings.vault_max_values
                ),
            )
        self.inline = settings.ner_model is None and self.shared_vault is None

    def load(self) -> None:
        from ._analyzer import shared_analyzer  # Presidio and spaCy load only when a policy uses this check

        threshold = min([self.settings.score_threshold, *self.settings.thresholds.values()])
        entities = tuple(self.settings.entities) if self.settings.entities is not None else None
        ner_model = pipeline_for(self.settings.language) if self.settings.ner_model == "auto" else self.settings.ner_model
        self.analyzer = shared_analyzer(self.settings.language, entities, ner_model, threshold, tuple(self.settings.phone_regions))
        log.info(
            "pii_entities_covered",
            guardrail=self.instance_id,
            language=self.settings.language,
            entities=self.analyzer.entities,
            ner_model=ner_model,
            phone_regions=self.settings.phone_regions,
        )

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if self.analyzer is not None:
            described["entities_covered"] = self.analyzer.entities
        return described

    async def check(self, request: CheckRequest) -> Verdict:
        if self.settings.ner_model is None:
            analysis = self.analyse(request)
        else:
            analysis = await asyncio.to_thread(self.analyse, request)
        return await self.decide_async(request, analysis)

    def check_inline(self, request: CheckRequest) -> Verdict:
        return self.decide(request, self.analyse(request))

    def analyse(self, request: CheckRequest) -> list[list[Any]]:
        """What the analyzer found in each text, kept above the thresholds (no vault)."""
        return [self._found(text) for text in request.texts]

    def quick_analysis(self, request: CheckRequest) -> list[list[Any]] | None:
        """Nothing found, when no recognizer could match in any of the texts (most answers)."""
        if any(self.analyzer.could_find(text) for text in request.texts):
            return None
        return [[] for _ in request.texts]

    def decide(self, request: CheckRequest, analysis: list[list[Any]]) -> Verdict:
        assert self.vault is not None, "a shared vault decides in decide_async"
        return self._decide_with(self.vault, request, analysis)

    @property
    def decides_with_io(self) -> bool:
        return self.shared_vault is not None

    async def decide_async(self, request: CheckRequest, analysis: list[list[Any]]) -> Verdict:
        if self.shared_vault is None:
            return self.decide(request, analysis)
        return self._decide_with(await self._fetch(request, analysis), request, analysis)

    def _decide_with(self, vault: PlaceholderVault | VaultView, request: CheckRequest, analysis: list[list[Any]]) -> Verdict:
        if request.stage is Stage.INPUT:
            return self._check_input(vault, request, analysis)
        return self._check_output(vault, request, analysis)

    async def _fetch(self, request: CheckRequest, found: list[list[Any]]) -> VaultView:
        """What this decision needs from the shared vault, in one or two round trips; when the
        shared state fails, ``fail_closed`` raises (the check fails, its fail mode decides) or
        an empty view redacts unnumbered, restores nothing and treats all personal data in an
        answer as a leak."""
        assert self.shared_vault is not None
        config = self.shared_vault.config
        conversation = _vault_key(request)
        try:
            if request.stage is Stage.INPUT:
                wanted = [
                    (r.entity_type, text[r.start : r.end])
                    for text, results in zip(request.texts, found)
                    for r in results
                    if self.settings.actions.get(r.entity_type, self.settings.default_action) is Action.REDACT
                ]
                placeholders = await self.shared_vault.placeholders(conversation, wanted) if self.settings.pseudonymize else {}
                view = VaultView(placeholders, {}, set())
            else:
                marks = [m.group(0) for text in request.texts for m in PLACEHOLDER.finditer(text)] if self.settings.restore_output else []
                values = [text[r.start : r.end] for text, results in zip(request.texts, found) for r in results]
                restored, known = await self.shared_vault.lookup(conversation, marks, values)
                view = VaultView({}, restored, known)
        except StateError as exc:
            config.on_failure(exc)
            if config.fail_closed:
                raise
            return VaultView({}, {}, set())
        config.on_success()
        return view

    # -- what the analyzer found, kept above each entity's threshold -------------------------

    def _found(self, text: str) -> list[Any]:
        results = self.analyzer.find(text, allow_list=self.settings.allow_list)
        thresholds, default = self.settings.thresholds, self.settings.score_threshold
        return without_overlaps([r for r in results if r.score >= thresholds.get(r.entity_type, default)])

    @staticmethod
    def _explain(result: Any) -> str:
        recognizer = (result.recognition_metadata or {}).get("recognizer_name", "recognizer")
        return f"{recognizer} (score {result.score:.2f})"

    # -- input ---------------------------------------------------------------------------------

    def _check_input(self, vault: PlaceholderVault | VaultView, request: CheckRequest, found: list[list[Any]]) -> Verdict:
        findings: list[Finding] = []
        actions: list[Action] = []
        for segment, text in enumerate(request.texts):
            for result in found[segment]:
                action = self.settings.actions.get(result.entity_type, self.settings.default_action)
                if action is Action.ALLOW:
                    continue
                replacement = None
                if action is Action.REDACT:
                    replacement = self._placeholder(vault, _vault_key(request), result.entity_type, text[result.start : result.end])
                actions.append(action)
                findings.append(
                    Finding(result.entity_type, segment, result.start, result.end, result.score, self._explain(result), replacement)
                )
        if not findings:
            return Verdict(guardrail=self.instance_id, stage=request.stage)
        return Verdict(
            guardrail=self.instance_id,
            stage=request.stage,
            action=most_severe(actions),
            score=max(f.score for f in findings),
            reasons=tuple(sorted({f"personal data: {f.kind}" for f in findings})),
            findings=tuple(findings),
        )

    def _placeholder(self, vault: PlaceholderVault | VaultView, conversation_id: str, entity_type: str, value: str) -> str:
        if not self.settings.pseudonymize:
            return f"<{entity_type}>"
        return vault.placeholder_for(conversation_id, entity_type, value)

    # -- output ----------------------------------------------------------------------------------

    def _check_output(self, vault: PlaceholderVault | VaultView, request: CheckRequest, found: list[list[Any]]) -> Verdict:
        findings: list[Finding] = []
        leaks: list[Finding] = []
        conversation = _vault_key(request)
        for segment, text in enumerate(request.texts):
            if self.settings.restore_output:
                for match in PLACEHOLDER.finditer(text):
                    value = vault.value_of(conversation, match.group(0))
                    if value is not None:
                        findings.append(
                            Finding("placeholder", segment, match.start(), match.end(), 1.0, "restored for the user", value, restores=True)
                        )
            for result in found[segment]:
                if vault.knows(conversation, text[result.start : result.end]):
                    continue  # the user gave it in this conversation: not a leak
                replacement = f"<{result.entity_type}>" if self.settings.leak_action is Action.REDACT else None
                leaks.append(
                    Finding(
                        result.entity_type, segment, result.start, result.end, result.score,
                        f"leak: not given by the user in this conversation; {self._explain(result)}", replacement,
                    )
                )
        if not findings and not leaks:
            return Verdict(guardrail=self.instance_id, stage=request.stage)
        action = self.settings.leak_action if leaks else Action.ALLOW
        return Verdict(
            guardrail=self.instance_id,
            stage=request.stage,
            action=action,
            score=max((f.score for f in leaks), default=0.0),
            reasons=tuple(sorted({f"personal data leak: {f.kind}" for f in leaks})) or ("placeholders restored",),
            findings=tuple(findings + leaks),
        )
