"""Outcomes, groups and feedback through the gateway and the SDK, into the bias monitor."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aimsguard.agent import GuardedExchange, RequestError, guarded

LOAN = "/systems/loan-assistant/v1/chat/completions"


def _loan(**fairness: Any):
    """Point the example's loan assistant at the test upstream, with fairness overrides."""

    def mutate(data: dict[str, Any]) -> None:
        system = data["systems"]["loan-assistant"]
        system["upstream"]["base_url"] = data["systems"]["support-bot"]["upstream"]["base_url"]
        system["fairness"].update(fairness)

    return mutate


def _body(text: str = "Why was my application declined?", **extra: Any) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": text}], **extra}


def _events(guard, events, kind: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        guard.flush()
        found = events.events(kind)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_outcome_and_groups_reach_the_exchange_event_but_not_the_upstream(gateway, events, upstream) -> None:
    url, guard = gateway(_loan())
    seen = upstream.server.config.app.state.seen
    decision = {"outcome": "declined", "groups": {"gender": "female", "age_band": "25-44"}}
    response = httpx.post(url + LOAN, json=_body(aimsguard=decision))
    assert response.status_code == 200
    [event] = _events(guard, events, "exchange")
    assert event["system"] == "loan-assistant" and event["outcome"] == "declined"
    assert event["groups"] == {"gender": "female", "age_band": "25-44"}
    assert "aimsguard" not in seen[-1]["payload"] and seen[-1]["payload"]["messages"][0]["content"].startswith("Why")


def test_headers_named_in_the_policy_carry_the_decision_too(gateway, events) -> None:
    url, guard = gateway(_loan())
    headers = {"x-aimsguard-outcome": "approved", "x-aimsguard-group-gender": "male"}
    body = _body(aimsguard={"groups": {"age_band": "65-plus"}})  # the body and headers combine
    assert httpx.post(url + LOAN, json=body, headers=headers).status_code == 200
    [event] = _events(guard, events, "exchange")
    assert event["outcome"] == "approved" and event["groups"] == {"age_band": "65-plus", "gender": "male"}


@pytest.mark.parametrize(
    ("decision", "headers", "allowed"),
    [
        ({"outcome": "maybe"}, {}, "approved, declined, referred"),
        ({"groups": {"gender": "Jane Doe"}}, {}, "female, male, nonbinary, undisclosed"),
        ({"groups": {"religion": "x"}}, {}, "features: gender, age_band"),
        (None, {"x-aimsguard-group-age-band": "forty"}, "under-25, 25-44, 45-64, 65-plus"),
    ],
)
def test_a_value_outside_the_policy_is_a_400_naming_the_allowed_values(gateway, events, upstream, decision, headers, allowed) -> None:
    url, guard = gateway(_loan())
    seen = upstream.server.config.app.state.seen
    before = len(seen)
    body = _body(aimsguard=decision) if decision is not None else _body()
    response = httpx.post(url + LOAN, json=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert allowed in error["message"] and error["code"] in ("invalid_outcome", "invalid_group")
    for sent in ("maybe", "Jane Doe", "religion", "forty"):
        assert sent not in error["message"]  # what the client sent is never echoed
    [event] = _events(guard, events, "exchange")
    assert event["status"] == "rejected" and "groups" not in event and "outcome" not in event
    assert len(seen) == before  # nothing went upstream


def test_feedback_endpoint_accepts_labels_of_the_policy(gateway, events) -> None:
    url, guard = gateway(_loan())
    response = httpx.post(url + LOAN, json=_body(aimsguard={"outcome": "declined", "groups": {"gender": "female"}}))
    request_id = response.headers["x-aimsguard-request-id"]

    accepted = httpx.post(url + "/v1/feedback", json={"request_id": request_id, "label": "approved", "system": "loan-assistant"})
    assert accepted.status_code == 202
    assert accepted.json() == {"status": "accepted", "system": "loan-assistant", "request_id": request_id}
    # The system may also come from the path prefix, as for completions.
    by_path = httpx.post(url + "/systems/loan-assistant/v1/feedback", json={"request_id": request_id, "label": "declined"})
    assert by_path.status_code == 202
    feedback = _events(guard, events, "feedback", 2)
    assert [(f["system"], f["request_id"], f["label"]) for f in feedback] == [
        ("loan-assistant", request_id, "approved"),
        ("loan-assistant", request_id, "declined"),
    ]


@pytest.mark.parametrize(
    ("payload", "status", "code", "says"),
    [
        ({"request_id": "abc", "label": "granted", "system": "loan-assistant"}, 400, "invalid_label", "approved, declined, referred"),
        ({"request_id": "not an id!", "label": "approved", "system": "loan-assistant"}, 400, "invalid_request_id", "request_id"),
        ({"request_id": "abc", "label": "approved"}, 400, "feedback_not_configured", "support-bot"),  # the default system
        ({"request_id": "abc", "label": "approved", "system": "ghost"}, 404, "unknown_system", "ghost"),
        ({"request_id": "abc", "label": "approved", "comment": "free text"}, 400, "invalid_request", "only request_id"),
    ],
)
def test_feedback_that_cannot_be_used_is_refused_and_recorded(gateway, events, payload, status, code, says) -> None:
    url, guard = gateway(_loan())
    response = httpx.post(url + "/v1/feedback", json=payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and says in response.json()["error"]["message"]
    [rejected] = _events(guard, events, "feedback.rejected")
    assert rejected["error_code"] == code and rejected["system"] in ("loan-assistant", "support-bot", "_unknown")
    assert events.events("feedback") == []


def test_feedback_body_must_be_small_json(gateway, events) -> None:
    url, guard = gateway(_loan())
    response = httpx.post(url + "/v1/feedback", content=b"label=approved", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    huge = httpx.post(url + "/v1/feedback", json={"request_id": "abc", "label": "x" * 10_000})
    assert huge.status_code == 413
    assert [e["error_code"] for e in _events(guard, events, "feedback.rejected", 2)] == ["invalid_json", "request_too_large"]


def test_bias_monitor_evaluates_gateway_traffic_and_exports_gauges(gateway, events) -> None:
    url, guard = gateway(_loan(min_group_size=3, evaluate_every=12))
    request_ids = []
    for i in range(12):
        gender = "female" if i % 2 else "male"
        outcome = "approved" if gender == "male" or i % 4 == 1 else "declined"  # men 6/6, women 3/6
        response = httpx.post(url + LOAN, json=_body(aimsguard={"outcome": outcome, "groups": {"gender": gender}}))
        request_ids.append(response.headers["x-aimsguard-request-id"])
    evaluated = [e for e in _events(guard, events, "bias.evaluated", 2) if e["feature"] == "gender"]
    assert evaluated and evaluated[-1]["selection_rates"] == {"female": 0.5, "male": 1.0}
    assert evaluated[-1]["demographic_parity_ratio"] == 0.5
    breaches = {e["metric"]: e for e in _events(guard, events, "bias.breach") if e["feature"] == "gender"}
    assert set(breaches) == {"demographic_parity_ratio", "demographic_parity_difference"}  # the example's thresholds
    assert breaches["demographic_parity_ratio"]["value"] == 0.5 and breaches["demographic_parity_ratio"]["threshold"] == 0.8

    text = httpx.get(url + "/metrics").text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    ratio = [s.value for s in samples if s.name == "aimsguard_fairness_metric" and s.labels["metric"] == "demographic_parity_ratio"
             and s.labels["feature"] == "gender"]
    assert ratio == [0.5]

    # Ground truth later, through the SDK call.
    for request_id in request_ids:
        guard.record_feedback(request_id, "approved", system="loan-assistant")
    guard.flush()
    guard.bias.evaluate("loan-assistant")
    latest = [e for e in _events(guard, events, "bias.evaluated", 4) if e["feature"] == "gender"][-1]
    assert latest["labelled_sizes"] == {"female": 6, "male": 6, "nonbinary": 0, "undisclosed": 0}


@pytest.mark.anyio
async def test_sdk_carries_outcome_and_groups(make_guard, events) -> None:
    guard = make_guard(_loan())
    async with GuardedExchange(guard, "loan-assistant", outcome="referred", groups={"gender": "nonbinary"}) as ex:
        await ex.check_input("Why was I referred?")
        ex.record_decision(groups={"age_band": "under-25"})
        await ex.check_output("A person will look at your application.")
    with pytest.raises(RequestError, match="allowed: approved, declined, referred"):
        GuardedExchange(guard, "loan-assistant", outcome="granted")
    with pytest.raises(RequestError, match="no fairness section"):
        GuardedExchange(guard, "support-bot", outcome="approved")

    @guarded(guard, "loan-assistant")
    async def explain(prompt: str) -> str:
        return "Your application was approved."

    assert await explain("Explain my result", aimsguard={"outcome": "approved", "groups": {"gender": "female"}}) == (
        "Your application was approved."
    )
    exchanges = _events(guard, events, "exchange", 2)
    assert [(e["outcome"], e["groups"]) for e in exchanges] == [
        ("referred", {"gender": "nonbinary", "age_band": "under-25"}),
        ("approved", {"gender": "female"}),
    ]
    assert guard.record_feedback(exchanges[0]["request_id"], "declined", system="loan-assistant") == "loan-assistant"
    with pytest.raises(RequestError, match="allowed: approved, declined, referred"):
        guard.record_feedback(exchanges[0]["request_id"], "good", system="loan-assistant")


def test_openai_client_passes_the_decision_in_extra_body(make_guard, events, upstream) -> None:
    import openai

    from aimsguard.agent import guard_openai

    guard = make_guard(_loan())
    seen = upstream.server.config.app.state.seen
    client = guard_openai(openai.OpenAI(base_url=upstream.url + "/v1", api_key="x", max_retries=0), guard, "loan-assistant")
    decision = {"outcome": "approved", "groups": {"age_band": "45-64"}}
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Explain my result"}], extra_body={"aimsguard": decision})
    [event] = _events(guard, events, "exchange")
    assert event["outcome"] == "approved" and event["groups"] == {"age_band": "45-64"}
    assert "aimsguard" not in seen[-1]["payload"]
    client.close()


def test_fairness_policy_errors_name_the_key(tmp_path) -> None:
    from aimsguard.agent import PolicyError, parse_policy

    from ..support import policy_dict, test_registry

    data = policy_dict(tmp_path)
    data["systems"]["loan-assistant"]["fairness"]["positive_outcomes"] = ["granted"]
    data["systems"]["loan-assistant"]["fairness"]["window_events"] = 5
    with pytest.raises(PolicyError) as caught:
        parse_policy(data, registry=test_registry())
    message = str(caught.value)
    assert "systems.loan-assistant.fairness.window_events" in message and "greater than or equal to 10" in message
    data["systems"]["loan-assistant"]["fairness"]["window_events"] = 500
    with pytest.raises(PolicyError, match=r"systems\.loan-assistant\.fairness: .*positive_outcomes must be among outcomes"):
        parse_policy(data, registry=test_registry())
