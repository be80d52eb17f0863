"""An optional second opinion for grounding: any OpenAI-compatible chat endpoint as judge.

The judge gets the retrieved evidence and the answer's claims, numbered, and answers with
one true/false per claim. Any failure (unreachable, an HTTP error, an answer that is not
the JSON asked for) raises :class:`JudgeError`; the pipeline then applies the check's fail
mode, as for any check that fails. Synchronous on purpose: the check runs it off the event
loop (a thread), and a worker pool may call it directly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Annotated

import httpx
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ClaimJudge", "JudgeError", "JudgeSettings"]

_PROMPT = (
    "You check answers of a support assistant against its knowledge base. For each numbered claim, say whether "
    "the evidence supports it: every figure, name, plan, place and condition must be stated or follow directly "
    "from the evidence, attached to the same thing. Reply with JSON only: {\"supported\": [true, false, ...]}, "
    "one boolean per claim, in order."
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class JudgeSettings(BaseModel):
    """Where the judge is. The API key is read from the environment variable named here, never from the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: Annotated[str, Field(min_length=1, description="e.g. http://localhost:8000/v1")]
    model: Annotated[str, Field(min_length=1)]
    api_key_env: str | None = None
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    max_evidence_chars: Annotated[int, Field(ge=200)] = 6000


class JudgeError(RuntimeError):
    """The judge could not give a verdict (its message never quotes the answer)."""


class ClaimJudge:
    def __init__(self, settings: JudgeSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        headers = {}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise ValueError(f"llm_judge: environment variable {settings.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=settings.base_url.rstrip("/") + "/", headers=headers, timeout=settings.timeout_s,
                                    transport=transport)

    def close(self) -> None:
        self._client.close()

    def judge(self, question: str | None, claims: Sequence[str], evidence: Sequence[str]) -> list[bool]:
        """One verdict per claim: True when the evidence supports it."""
        if not claims:
            return []
        context = "\n\n".join(evidence)[: self.settings.max_evidence_chars]
        numbered = "\n".join(f"{i}. {claim}" for i, claim in enumerate(claims, 1))
        user = f"Evidence:\n{context or '(none found)'}\n\nQuestion: {question or '(not given)'}\n\nClaims:\n{numbered}"
        body = {"model": self.settings.model, "temperature": 0,
                "messages": [{"role": "system", "content": _PROMPT}, {"role": "user", "content": user}]}
        try:
            response = self._client.post("chat/completions", json=body)
            response.raise_for_status()
            content = response.json()["choices"][0]["message"]["content"]
        except httpx.HTTPStatusError as exc:
            raise JudgeError(f"llm_judge answered HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise JudgeError(f"llm_judge unreachable ({type(exc).__name__})") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError("llm_judge answered something that is not a chat completion") from None
        return self._verdicts(content, len(claims))

    @staticmethod
    def _verdicts(content: object, count: int) -> list[bool]:
        found = _JSON_OBJECT.search(content) if isinstance(content, str) else None
        try:
            verdicts = json.loads(found.group(0))["supported"] if found else None
        except (ValueError, KeyError, TypeError):
            verdicts = None
        if not isinstance(verdicts, list) or len(verdicts) != count or not all(isinstance(v, bool) for v in verdicts):
            raise JudgeError(f"llm_judge did not answer one true/false for each of the {count} claims")
        return verdicts
