"""The grounding check against the example knowledge base."""

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import structlog

from aimsguard.guardrails import Action, CheckRequest, Stage, grounding_align
from aimsguard.guardrails import grounding as grounding_check
from aimsguard.guardrails.grounding import GroundingGuardrail, GroundingSettings, claims_of
from aimsguard.guardrails.knowledge import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "tests" / "data" / "grounding_eval.jsonl"


@pytest.fixture(scope="module")
def grounding() -> GroundingGuardrail:
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=ROOT / "configs" / "knowledge"), instance_id="grounding")
    guardrail.load()
    return guardrail


def _check(guardrail: GroundingGuardrail, answer: str, question: str | None = None):
    return guardrail.check_inline(CheckRequest(stage=Stage.OUTPUT, texts=[answer], system_id="s", conversation_id="c", question=question))


def test_small_talk_and_questions_are_not_claims() -> None:
    text = "Happy to help! The Pro plan costs 20 EUR per user per month. Anything else I can do for you?"
    assert [claim.text for claim in claims_of(text)] == ["The Pro plan costs 20 EUR per user per month."]


@pytest.mark.parametrize(
    ("answer", "supported"),
    [
        ("The Pro plan costs 20 EUR per user per month, billed monthly.", True),
        ("The Pro plan costs 25 EUR per user per month.", False),  # a wrong price
        ("Annual subscriptions can be refunded within 90 days.", False),  # a wrong duration
        ("The Starter plan includes unlimited projects.", False),  # a feature of another plan
        ("Our office is on the moon and every customer gets free pizza.", False),  # nothing like it in the KB
    ],
)
def test_claims_are_checked_for_words_and_facts(grounding, answer: str, supported: bool) -> None:
    verdict = _check(grounding, answer)
    assert (verdict.action is Action.ALLOW) == supported
    if not supported:
        (finding,) = verdict.findings
        assert "best evidence" in finding.explanation or "no passage" in finding.explanation
        assert "25" not in finding.explanation  # facts are counted, never quoted


def test_edits_to_the_knowledge_base_are_picked_up(tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text("# Shipping\nParcels arrive within 3 working days.\n")
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=tmp_path, reload_every_s=0.01), instance_id="g")
    guardrail.load()
    assert _check(guardrail, "Parcels arrive within 5 working days.").action is Action.FLAG
    time.sleep(0.05)
    (tmp_path / "faq.md").write_text("# Shipping\nParcels arrive within 5 working days.\n")
    os.utime(tmp_path / "faq.md", (time.time() + 5, time.time() + 5))
    # Off the event loop (a check worker, a thread), the check that finds the edit reloads first.
    assert _check(guardrail, "Parcels arrive within 5 working days.").action is Action.ALLOW


def test_on_the_event_loop_a_reload_is_built_off_the_checks_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "faq.md").write_text("# Shipping\nParcels arrive within 3 working days.\n")
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=tmp_path, reload_every_s=0.01), instance_id="g")
    guardrail.load()
    building, release = threading.Event(), threading.Event()
    build = KnowledgeBase.from_directory

    builds: list[Path] = []

    def slow_build(directory: Path) -> KnowledgeBase:
        builds.append(directory)
        building.set()
        release.wait(30)  # a rebuild that takes its time (a large knowledge base)
        return build(directory)

    monkeypatch.setattr(KnowledgeBase, "from_directory", slow_build)
    (tmp_path / "faq.md").write_text("# Shipping\nParcels arrive within 5 working days.\n")
    os.utime(tmp_path / "faq.md", (time.time() + 5, time.time() + 5))
    time.sleep(0.02)

    async def on_the_loop() -> tuple[Action, float]:
        started = time.perf_counter()
        verdict = _check(guardrail, "Parcels arrive within 5 working days.")
        return verdict.action, time.perf_counter() - started

    action, took = asyncio.run(on_the_loop())
    assert building.wait(10) and took < 5  # not held by the rebuild
    assert action is Action.FLAG  # judged on the knowledge base it had
    time.sleep(0.02)
    assert asyncio.run(on_the_loop())[0] is Action.FLAG  # due again, but the rebuild under way is not started again
    release.set()
    assert guardrail.wait_reloaded(timeout=30) and len(builds) == 1
    assert asyncio.run(on_the_loop())[0] is Action.ALLOW


def test_html_and_jsonl_documents_are_read(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("<html><body><h1>Returns</h1><p>Returns are accepted within 14 days.</p><script>x=1</script></body></html>")
    (tmp_path / "more.jsonl").write_text(json.dumps({"title": "Gift cards", "text": "Gift cards never expire."}) + "\n")
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=tmp_path), instance_id="g")
    guardrail.load()
    assert _check(guardrail, "Returns are accepted within 14 days.").action is Action.ALLOW
    assert _check(guardrail, "Gift cards never expire.").action is Action.ALLOW


def test_balanced_accuracy_on_the_labelled_set_is_at_least_90_percent(grounding) -> None:
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    right = {True: 0, False: 0}
    total = {True: 0, False: 0}
    for row in rows:
        allowed = _check(grounding, row["answer"], row["question"]).action is Action.ALLOW
        total[row["supported"]] += 1
        right[row["supported"]] += allowed == row["supported"]
    balanced = (right[True] / total[True] + right[False] / total[False]) / 2
    assert balanced >= 0.9, (right, total)


@pytest.mark.parametrize(
    ("answer", "supported"),
    [
        # What is said around a claim no longer hides it (each of these was allowed unchecked) ...
        ("Sure, annual subscriptions can be refunded within 45 days.", False),
        ("I'm not sure, but annual subscriptions can be refunded within 45 days.", False),
        ("Did you know that annual subscriptions can be refunded within 45 days?", False),
        ("The Starter plan includes unlimited projects, would you like to upgrade?", False),
        # ... nor spoils it: a hedge's "not" is not the claim's negation, a frame's words are not the claim's.
        ("I'm not sure, but annual subscriptions can be refunded in full within 30 days.", True),
        ("I've heard that annual subscriptions can be refunded in full within 30 days.", True),
        ("The Pro plan costs 20 EUR per user per month, would you like to upgrade?", True),
        ("Unfortunately, monthly subscriptions cannot be refunded.", True),  # an apology's words are not the claim's
        ("I'm sorry, but the reset link is valid for 60 minutes.", False),
    ],
)
def test_what_is_said_around_a_claim_neither_hides_nor_spoils_it(grounding, answer: str, supported: bool) -> None:
    assert (_check(grounding, answer).action is Action.ALLOW) == supported


def test_the_speakers_own_experience_is_unsupported_unless_the_policy_ignores_it() -> None:
    answer = "I love the Pro plan! It includes unlimited projects, 100 GB of storage and email support."
    strict = GroundingGuardrail(GroundingSettings(knowledge_base=ROOT / "configs" / "knowledge"), instance_id="g")
    strict.load()
    verdict = _check(strict, answer, "What does Pro include?")
    (finding,) = verdict.findings
    assert finding.end <= answer.index("It includes") and "personal experience" in finding.explanation
    lenient = GroundingGuardrail(GroundingSettings(knowledge_base=ROOT / "configs" / "knowledge", personal_statements="ignore"),
                                 instance_id="g")
    lenient.load()
    assert _check(lenient, answer, "What does Pro include?").action is Action.ALLOW
    assert _check(strict, "I'd love to help! The Pro plan costs 20 EUR per user per month.").action is Action.ALLOW  # an offer


def _generated_kb(folder: Path, chunks: int) -> Path:
    """The example knowledge base and ``chunks`` generated help sections (the bench's kind)."""
    for path in (ROOT / "configs" / "knowledge").glob("*.md"):
        (folder / path.name).write_text(path.read_text())
    (folder / "generated.jsonl").write_text("\n".join(
        json.dumps({"title": f"exports {i}", "text": f"To archive exports in workspace {i}, open Settings > Exports. It takes up to {i % 50 + 2} minutes."})
        for i in range(chunks)))
    return folder


def test_a_loaded_knowledge_base_is_read_ahead_so_no_check_reads_a_passage(tmp_path: Path) -> None:
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=_generated_kb(tmp_path, 50)), instance_id="g")
    guardrail.load()
    assert guardrail.wait_analysed(timeout=30)
    assert guardrail.kb is not None and set(guardrail._analysed) == set(guardrail.kb.chunks)
    grounding_align._passage.cache_clear()
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    for row in rows:
        _check(guardrail, row["answer"], row["question"])
    assert grounding_align._passage.cache_info().misses == 0  # every passage met was read at load


def test_passages_not_read_ahead_are_read_when_met_with_the_same_verdicts(tmp_path: Path) -> None:
    folder = _generated_kb(tmp_path, 50)
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    verdicts = {}
    for ahead in (0, 1, 16_384):  # none, the first passage only, all
        guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=folder, analyse_ahead=ahead), instance_id="g")
        guardrail.load()
        assert guardrail.wait_analysed(timeout=30)
        assert len(guardrail._analysed) == min(ahead, 59)
        verdicts[ahead] = [_check(guardrail, row["answer"], row["question"]) for row in rows]
    assert verdicts[0] == verdicts[1] == verdicts[16_384]
    assert all((v.action is Action.ALLOW) == row["supported"] for v, row in zip(verdicts[16_384], rows, strict=True))


def test_a_passage_added_later_is_read_ahead_after_the_reload(tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text("# Shipping\nParcels arrive within 3 working days.\n")
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=tmp_path, reload_every_s=0.01), instance_id="g")
    guardrail.load()
    assert guardrail.wait_analysed(timeout=30)
    (tmp_path / "gifts.md").write_text("# Gift cards\nGift cards never expire.\n")
    os.utime(tmp_path / "gifts.md", (time.time() + 5, time.time() + 5))
    time.sleep(0.02)
    assert _check(guardrail, "Gift cards never expire.").action is Action.ALLOW  # reloaded: read when met, or ahead
    assert guardrail.wait_analysed(timeout=30)
    assert {c.title for c in guardrail._analysed} == {"Shipping", "Gift cards"}
    assert _check(guardrail, "Gift cards expire after a year.").action is Action.FLAG


def test_checks_while_passages_are_read_ahead_give_the_same_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _generated_kb(tmp_path, 300)
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    lazy = GroundingGuardrail(GroundingSettings(knowledge_base=folder, analyse_ahead=0), instance_id="g")
    lazy.load()
    expected = [_check(lazy, row["answer"], row["question"]) for row in rows]
    read = grounding_check.analyse_passage
    halfway, checked = threading.Semaphore(150), threading.Event()

    def slow(title: str, text: str) -> grounding_align.PassageAnalysis:
        if not halfway.acquire(blocking=False):
            checked.wait(30)  # the second half only once the checks are done
        time.sleep(0.001)
        return read(title, text)

    monkeypatch.setattr(grounding_check, "analyse_passage", slow)
    grounding_align._passage.cache_clear()
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=folder, retrieval_cache=0), instance_id="g")
    guardrail.load()
    with ThreadPoolExecutor(4) as pool:  # checks in threads too, as in mode llm_judge
        results = list(pool.map(lambda _: [_check(guardrail, row["answer"], row["question"]) for row in rows], range(4)))
    assert not guardrail.wait_analysed(timeout=0)  # the checks all ran while the passages were being read
    checked.set()
    assert all(result == expected for result in results)
    assert guardrail.wait_analysed(timeout=30) and len(guardrail._analysed) == 309


def test_a_reload_that_fails_keeps_the_knowledge_base_and_logs_no_content(tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text("# Shipping\nParcels arrive within 3 working days.\n")
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=tmp_path, reload_every_s=0.01), instance_id="g")
    guardrail.load()
    (tmp_path / "faq.md").write_bytes(b"# Shipping\nParcels arrive within 5 days. Secret: s3cr3t \xff\xfe\n")  # not UTF-8
    os.utime(tmp_path / "faq.md", (time.time() + 5, time.time() + 5))
    time.sleep(0.02)
    with structlog.testing.capture_logs() as logs:
        verdict = _check(guardrail, "Parcels arrive within 3 working days.")
    assert verdict.action is Action.ALLOW  # judged on the knowledge base it had
    (failed,) = [entry for entry in logs if entry["event"] == "grounding: knowledge base not reloaded"]
    assert failed["error_type"] == "UnicodeDecodeError" and "s3cr3t" not in repr(failed)


def _every_passage_aligned(claim, passages):
    """What judge_claim gave when it aligned the claim with every passage: the first of the best."""
    judged = [(grounding_align.assess_claim(claim.text, p.chunk.title, p.chunk.text, negated=claim.negated != claim.question_says_not,
                                            whole_clauses=not claim.from_question, bare=claim.short_answer), p) for p in passages]
    return max(judged, key=lambda j: (not (j[0].missing or j[0].misattached or j[0].negation_mismatch), j[0].support,
                                      -(j[0].missing + j[0].misattached)), default=None)


def test_passages_left_unaligned_never_change_which_one_backs_a_claim(grounding) -> None:
    """judge_claim skips a passage that cannot outrank a sound one already found: the passage
    and assessment it picks are those that aligning every passage picks (ten per claim here,
    so many are skipped, on claims both supported and not)."""
    rows = [json.loads(line) for line in EVAL.read_text().splitlines() if line.strip()]
    claims = [claim for row in rows for claim in claims_of(row["answer"], row["question"]) if not claim.personal]
    retrieved = grounding.kb.search_many([claim.text for claim in claims], k=10)
    for claim, passages in zip(claims, retrieved, strict=True):
        assert grounding_check.judge_claim(claim, passages) == _every_passage_aligned(claim, passages), claim.text
    assert sum(not grounding_check.judge_claim(c, p)[0].supported(0.7) for c, p in zip(claims, retrieved) if p) >= 10


def test_a_claim_soundly_backed_by_its_first_passage_is_aligned_with_that_one_only(grounding, monkeypatch: pytest.MonkeyPatch) -> None:
    claim = claims_of("The Pro plan costs 20 EUR per user per month, billed monthly.")[0]
    passages = grounding.kb.search(claim.text, k=5)
    aligned = []
    real = grounding_check.assess_claim
    monkeypatch.setattr(grounding_check, "assess_claim", lambda *a, **k: aligned.append(a[2]) or real(*a, **k))
    assessment, passage = grounding_check.judge_claim(claim, passages)
    assert assessment.supported(0.7) and passage is passages[0]
    assert aligned == [passages[0].chunk.text]


def _stream_so_far(guardrail: GroundingGuardrail, text: str, complete: bool):
    return guardrail.check_inline(CheckRequest(stage=Stage.OUTPUT, texts=[text], system_id="s", conversation_id="c", complete=complete))


def test_a_streamed_answer_s_open_sentence_waits_for_its_end_when_grounding_only_flags(grounding) -> None:
    so_far = "The Pro plan costs 20 EUR per user per month. Our office is on the moon and every"
    assert _stream_so_far(grounding, so_far, complete=False).action is Action.ALLOW  # judged at the next look, whole
    (finding,) = _stream_so_far(grounding, so_far, complete=True).findings
    assert finding.start == so_far.index("Our")


def test_a_streamed_answer_s_open_sentence_is_judged_at_once_when_grounding_stops_answers() -> None:
    blocking = GroundingGuardrail(GroundingSettings(knowledge_base=ROOT / "configs" / "knowledge", action=Action.BLOCK), instance_id="g")
    blocking.load()
    so_far = "The Pro plan costs 20 EUR per user per month. Our office is on the moon and every"
    assert _stream_so_far(blocking, so_far, complete=False).action is Action.BLOCK  # before any of it is released
