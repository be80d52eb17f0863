"""Grounding beyond word overlap: swapped facts are caught; paraphrase, arithmetic and yes/no answers pass."""

from pathlib import Path

import pytest

from aimsguard.guardrails import Action, CheckRequest, Stage
from aimsguard.guardrails.grounding import GroundingGuardrail, GroundingSettings
from aimsguard.guardrails.grounding_align import assess_claim, facts_of

KB = {
    "refunds.md": "# Refunds\nAnnual plans can be refunded in full within 30 days of purchase. Monthly plans are not refundable, "
                  "but you can cancel at any time.\n",
    "stores.md": "# Opening hours\nThe Berlin store opens at 9:00 on weekdays. The Munich store opens at 10:00 on weekdays.\n",
    "support.md": "# Support tiers\nGold customers get phone support within 1 hour. Silver customers get email support within 24 hours.\n",
    "prices.md": "# Prices\nThe Pro plan costs $20 per month. The Business plan costs $25 per month.\n\n"
                 "# Storage\nThe Starter plan includes 2 GB of storage. The Pro plan includes 12 GB of storage.\n",
    "warranty.md": "# Warranty\nThe warranty covers battery and screen defects. It excludes water damage.\n",
    "hours.md": "# Phone support\nPhone support is open 9:00 to 17:00 CET for customers in Europe. "
                "Phone support for customers in the US is open 9:00 to 17:00 EST.\n",
    "changes.md": "# Changing plans\nAn upgrade takes effect at once; a downgrade takes effect at the end of the billing period.\n",
}


@pytest.fixture(scope="module")
def grounding(tmp_path_factory: pytest.TempPathFactory) -> GroundingGuardrail:
    folder: Path = tmp_path_factory.mktemp("kb")
    for name, text in KB.items():
        (folder / name).write_text(text)
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=folder), instance_id="grounding")
    guardrail.load()
    return guardrail


def _allowed(guardrail: GroundingGuardrail, answer: str, question: str | None = None) -> bool:
    request = CheckRequest(stage=Stage.OUTPUT, texts=[answer], system_id="s", conversation_id="c", question=question)
    return guardrail.check_inline(request).action is Action.ALLOW


@pytest.mark.parametrize(
    ("right", "swapped"),
    [
        ("Annual plans can be refunded within 30 days.", "Monthly plans can be refunded within 30 days."),  # plan
        ("The Berlin store opens at 9:00 on weekdays.", "The Munich store opens at 9:00 on weekdays."),  # store
        ("Gold customers get phone support within 1 hour.", "Silver customers get phone support within 1 hour."),  # tier
        ("An upgrade takes effect at once.", "An upgrade takes effect at the end of the billing period."),  # condition
        ("The Business plan costs $25 per month.", "The Pro plan costs $25 per month."),  # price
        ("The warranty covers screen defects.", "The warranty covers water damage."),  # exclusion
        ("Customers in Europe can reach phone support from 9:00 to 17:00 CET.",
         "Customers in Europe can reach phone support from 9:00 to 17:00 EST."),  # time zone
    ],
)
def test_a_right_value_attached_to_the_wrong_item_is_caught(grounding, right: str, swapped: str) -> None:
    assert _allowed(grounding, right)
    assert not _allowed(grounding, swapped)


def test_a_swap_is_explained_without_quoting_the_claim(grounding) -> None:
    request = CheckRequest(stage=Stage.OUTPUT, texts=["Silver customers get phone support within 1 hour."], system_id="s", conversation_id="c")
    (finding,) = grounding.check_inline(request).findings
    assert "said there of something else" in finding.explanation
    assert "Silver" not in finding.explanation and "1 hour" not in finding.explanation


@pytest.mark.parametrize(
    "answer",
    [
        "Annual subscriptions are refundable in full within 30 days of purchase.",  # other inflections
        "Purchases of an annual plan get a full refund within 30 days.",
        "Gold customers are supported by phone within one hour.",  # a number word
    ],
)
def test_paraphrase_is_accepted(grounding, answer: str) -> None:
    assert _allowed(grounding, answer)


@pytest.mark.parametrize(
    ("answer", "supported"),
    [
        ("The Pro plan costs $240 per year.", True),  # 20 a month, 12 months
        ("The Pro plan costs $250 per year.", False),
        ("The Pro plan includes 10 GB more storage than the Starter plan.", True),  # 12 - 2
        ("The Business plan costs 25% more than the Pro plan.", True),  # (25 - 20) / 20
        ("The Business plan costs 40% more than the Pro plan.", False),
        ("Phone support for Gold customers answers within 60 minutes.", True),  # 1 hour
    ],
)
def test_arithmetic_on_the_knowledge_base_figures(grounding, answer: str, supported: bool) -> None:
    assert _allowed(grounding, answer) == supported


@pytest.mark.parametrize(
    ("question", "answer", "supported"),
    [
        ("Can annual plans be refunded?", "Yes.", True),
        ("Are monthly plans refundable?", "No.", True),
        ("Are monthly plans refundable?", "Yes.", False),
        ("Does the Berlin store open at 9:00?", "Yes, it does.", True),
        ("Does the Munich store open at 9:00?", "Yes, it does.", False),
    ],
)
def test_yes_no_answers_are_read_with_their_question(grounding, question: str, answer: str, supported: bool) -> None:
    assert _allowed(grounding, answer, question) == supported


def test_negation_must_agree() -> None:
    passage = "Monthly plans are not refundable."
    assert assess_claim("Monthly plans are refundable.", "", passage).negation_mismatch
    assert not assess_claim("Monthly plans aren't refundable.", "", passage).negation_mismatch


def test_a_short_answer_is_checked_with_its_question(grounding) -> None:
    assert _allowed(grounding, "Berlin.", "Which store opens at 9:00?")
    assert not _allowed(grounding, "Hamburg.", "Which store opens at 9:00?")


def test_a_table_row_is_read_with_its_header() -> None:
    table = "| Plan | Price per month | Refund window |\n|---|---|---|\n| Monthly | $20 | 7 days |\n| Annual | $16 | 30 days |\n"
    assert assess_claim("The refund window of the Annual plan is 30 days.", "Plans", table).supported(0.7)
    swapped = assess_claim("The refund window of the Monthly plan is 30 days.", "Plans", table)
    assert swapped.misattached and not swapped.supported(0.7)


@pytest.mark.parametrize("text", ["We often reply within 2 days.", "Everyone gets 5 seats.", "The canine unit has 3 dogs.",
                                  "Your request is written down within 2 hours."])
def test_a_number_word_inside_another_word_is_no_figure(text: str) -> None:
    # "often" once held "ten", "canine" "nine": a figure the evidence lacks, and a right answer flagged.
    assert {f.key for f in facts_of(text) if f.kind == "number"} == {next(w.rstrip(".") for w in text.split() if w[0].isdigit())}
    assert assess_claim(text.replace("2", "two"), "", text.replace("often", "usually").replace("canine", "dog")
                        .replace("Everyone", "Each user").replace("written", "noted")).missing == 0


@pytest.mark.parametrize(
    ("question", "answer", "supported"),
    [
        ("What does the warranty exclude?", "Water damage.", True),  # the question says "exclude": so does the evidence
        ("What does the warranty exclude?", "Battery defects.", False),  # covered, not excluded
        ("What does the warranty cover?", "Screen defects.", True),
        ("What does the warranty cover?", "Water damage.", False),  # excluded
    ],
)
def test_a_short_answer_takes_its_polarity_from_its_question(grounding, question: str, answer: str, supported: bool) -> None:
    assert _allowed(grounding, answer, question) is supported


def test_a_short_answer_named_in_a_clause_of_each_polarity_is_not_a_negation_mismatch() -> None:
    passage = "Barton Mine is an abandoned mine in Ontario. Barton was the site of a fire, after which the mine never had active mining again."
    assert not assess_claim("Barton Mine", "", passage, bare=True).negation_mismatch
    assert assess_claim("Barton Mine", "", passage).negation_mismatch  # a tie counts against a claim with a verb of its own


def test_filler_words_need_not_be_said_where_the_fact_is() -> None:
    """"some" or "during" met elsewhere in the passage is no sign of a swap; a plan's name still is."""
    evidence = "Annual subscriptions can be refunded within 30 days. Some monthly plans are cheaper during a sale."
    assert assess_claim("Some annual subscriptions can be refunded within 30 days.", "", evidence).supported(0.7)
    assert assess_claim("During the first 30 days, annual subscriptions can be refunded.", "", evidence).supported(0.7)
    assert assess_claim("Monthly plans can be refunded within 30 days.", "", evidence).misattached


@pytest.mark.parametrize(
    ("claim", "passage"),
    [
        ("Kilauea is the most active of the five volcanoes.", "Kīlauea is the most active of the five volcanoes that form the island."),  # accents
        ("The Zürich office opens at 9:00.", "The Zurich office opens at 9:00 on weekdays."),
        ("Tupac was a ballet dancer in high school.", "Tupac danced ballet in high school."),  # a noun made of a verb
        ("The creation of an invoice is free.", "Creating an invoice is free."),
    ],
)
def test_accents_and_nouns_made_of_verbs_meet_their_evidence(claim: str, passage: str) -> None:
    assert assess_claim(claim, "", passage).supported(0.7)


def test_a_noun_made_of_a_verb_does_not_hide_a_swap(grounding) -> None:
    assert not _allowed(grounding, "The Starter plan includes 12 GB of storage.")
