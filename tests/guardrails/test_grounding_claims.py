"""Which sentences are claims, and what each claims (guardrails/grounding_claims.py)."""

import pytest

from aimsguard.guardrails.grounding_claims import claims_of, statement_of


@pytest.mark.parametrize(
    ("sentence", "statement"),
    [
        # a lead of small talk or assent no longer hides the statement after it
        ("Sure, the Pro plan costs 25 EUR per user per month.", "the Pro plan costs 25 EUR per user per month."),
        ("Hello there , the movie is called Inception", "the movie is called Inception"),
        ("I'm sorry, but monthly subscriptions are not refunded.", "monthly subscriptions are not refunded."),
        ("Unfortunately, monthly subscriptions cannot be refunded.", "monthly subscriptions cannot be refunded."),
        # a hedge before "but" (or before "I ...") is not the statement's negation
        ("I'm not sure, but annual plans are refunded within 45 days.", "annual plans are refunded within 45 days."),
        ("Not sure but it aims to provide speed and scalability.", "it aims to provide speed and scalability."),
        ("I am not entirely sure, I know there are other electric cars.", "there are other electric cars."),
        # a frame that reports a fact, before or after it
        ("I've heard that Venus does not tilt.", "Venus does not tilt."),
        ("I 've heard that Venus does not tilt .", "Venus does not tilt ."),  # tokenised text
        ("It is pretty interesting to know that genius was a powerful word.", "genius was a powerful word."),
        ("I think that the plan is good", "the plan is good"),
        ("I think that's a good idea", "that's a good idea"),  # "that's" is the subject, not the frame's "that"
        ("Annual plans are refunded within 30 days, I believe.", "Annual plans are refunded within 30 days"),
        # a question that tells states its fact
        ("Did you know that annual plans are refunded within 45 days?", "annual plans are refunded within 45 days"),
        ("Yeah, did you know the cat in the opening scene was a stray?", "the cat in the opening scene was a stray"),
        ("Do you know why stadiums cost 60 million to build?", "stadiums cost 60 million to build"),
        # a statement with a question tagged on is still said
        ("The Pro plan costs 20 EUR per user per month, would you like to upgrade?", "The Pro plan costs 20 EUR per user per month"),
        # questions that ask, and small talk, state nothing
        ("Do you know who Snoop Dogg is?", None),
        ("Is it refundable, do you know?", None),
        ("Anything else I can do for you?", None),
        ("Happy to help!", None),
        ("I'm not sure what else they need to add.", None),
    ],
)
def test_statement_of_a_sentence(sentence: str, statement: str | None) -> None:
    assert statement_of(sentence) == statement


@pytest.mark.parametrize(
    "sentence",
    [
        "I love comic books!",
        "Hello! I am from Canada!",
        "I've been a Pro customer for years.",
        "I 've watched it twice .",
        "My favourite plan is Pro.",
        "I'm a total metalhead.",
    ],
)
def test_the_speakers_own_experience_or_taste_is_a_personal_claim(sentence: str) -> None:
    assert any(claim.personal for claim in claims_of(sentence))


@pytest.mark.parametrize(
    "sentence",
    [
        "I'd love to help with that.",  # an offer, not an experience
        "I would like to hear more about your setup.",
        "We have seen this error before when the token expired.",  # the company, not the speaker's life
        "Do you like comic books?",  # asks the user
        "I know that annual plans are refunded within 30 days.",  # a report of a fact: checked as one
    ],
)
def test_offers_questions_and_reports_are_not_personal(sentence: str) -> None:
    assert not any(claim.personal for claim in claims_of(sentence))


def test_a_bare_yes_and_a_short_answer_still_stand_for_their_question() -> None:
    (yes,) = claims_of("Yes.", "Is the Starter plan free?")
    assert yes.from_question and yes.text == "the Starter plan free"
    (short,) = claims_of("Water damage.", "What does the warranty exclude?")
    assert short.short_answer and short.question_says_not


def test_a_sentence_of_two_content_words_is_a_claim_and_one_of_one_is_not() -> None:
    answer = "The Pro plan costs 20 EUR. Elsa leaves. Yes it was!"
    assert [c.text for c in claims_of(answer)] == ["The Pro plan costs 20 EUR.", "Elsa leaves."]


def test_a_one_sentence_answer_of_two_content_words_keeps_its_questions_polarity() -> None:
    (claim,) = claims_of("Water damage.", "What does the warranty exclude?")
    assert claim.short_answer and claim.question_says_not
    (claim,) = claims_of("Elsa leaves.", "What happens next?")
    assert claim.short_answer and not claim.question_says_not
    assert not any(c.short_answer for c in claims_of("Elsa leaves. Anna stays.", "What happens next?"))
