"""The console in a real browser (headless Debian chromium, driven by Playwright).

A client's request escalates through the real gateway; a reviewer signs in, claims it and
answers, and the client reads the person's answer from ``GET /v1/handoffs/{id}``. Then a
responder reports an incident, acknowledges and resolves it. Screenshots of every step
go to tests/artifacts/console/ (named by step) for people to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimsguard.agent import Guard, create_gateway

from ..support import ServerThread, records_policy
from .console_helpers import PASSWORDS, with_console

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "console"

if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow


@pytest.fixture
def served(make_guard: Any, tmp_path: Path) -> Iterator[tuple[str, Guard]]:
    def mutate(data: dict[str, Any]) -> None:
        with_console(data)
        records_policy(data, tmp_path)

    guard = make_guard(mutate)
    with ServerThread(create_gateway(guard)) as server:
        yield server.url, guard


@pytest.fixture
def page() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )
        try:
            # JavaScript off: the console must work without it.
            context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
            page = context.new_page()
            page.set_default_timeout(10_000)
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            yield page
            # Nothing the console serves may trip its own content security policy (or fail to load).
            assert problems == []
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots() -> Any:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return shot


def sign_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/console/")
    assert page.url.startswith(f"{base}/console/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/")
    assert page.get_by_text(f"Signed in as {name}").is_visible()


def test_a_reviewer_answers_an_escalated_request_and_the_client_receives_it(served: tuple[str, Guard], page: Any, shots: Any) -> None:
    base, _ = served
    client_auth = {"authorization": "Bearer client-key-7"}
    question = "I will take legal action over my last invoice. Reach me at jane.doe@example.com"
    response = httpx.post(
        f"{base}/v1/chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": question}]}, headers=client_auth, timeout=10
    )
    assert response.status_code == 200
    handoff_id = response.json()["aimsguard"]["handoff_id"]
    assert "passed your question to a member of our support team" in response.json()["choices"][0]["message"]["content"]

    page.goto(f"{base}/console/handoffs")
    shots(page, "reviewer-01-login")
    page.get_by_label("User name").fill("rita")
    page.get_by_label("Password").fill(PASSWORDS["rita"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/handoffs")  # back to the page asked for
    # The stylesheet loaded under the content security policy.
    assert page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor") == "rgb(20, 33, 61)"
    row = page.get_by_role("row").filter(has_text=handoff_id)
    assert "queued" in row.inner_text() and "legal matters go to a person" in row.inner_text()
    shots(page, "reviewer-02-queue")

    page.get_by_role("link", name=handoff_id).click()
    conversation = page.locator("ol.conversation").inner_text()
    assert "<EMAIL_ADDRESS_1>" in conversation and "jane.doe@example.com" not in page.content()
    shots(page, "reviewer-03-handoff")

    page.get_by_role("button", name="Claim this handoff").click()
    assert page.get_by_role("status").filter(has_text=f"You claimed handoff {handoff_id}").is_visible()
    shots(page, "reviewer-04-claimed")

    answer = "Our legal team has your case and will call you today before 5 pm."
    page.get_by_label("Your answer to the client").fill(answer)
    shots(page, "reviewer-05-answer-written")
    page.get_by_role("button", name="Send the answer").click()
    assert page.get_by_role("status").filter(has_text="Your answer was sent").is_visible()
    assert page.locator("blockquote.answer").inner_text() == answer
    shots(page, "reviewer-06-answered")

    # The client, with its own credentials, reads the person's answer.
    read = httpx.get(f"{base}/v1/handoffs/{handoff_id}", headers=client_auth, timeout=10)
    assert read.status_code == 200
    assert read.json()["status"] == "answered" and read.json()["answer"] == answer
    assert httpx.get(f"{base}/v1/handoffs/{handoff_id}", headers={"authorization": "Bearer someone-else"}, timeout=10).status_code == 404

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/console/login")


def test_a_responder_acknowledges_and_resolves_an_incident(served: tuple[str, Guard], page: Any, shots: Any) -> None:
    base, guard = served
    sign_in(page, base, "rob")
    shots(page, "responder-01-overview")
    page.get_by_role("link", name="Incidents", exact=True).click()
    page.get_by_label("AI system").select_option("support-bot")
    page.get_by_label("Title").fill("Assistant quoted a retired price for the Pro plan")
    page.get_by_label("Severity").select_option("high")
    page.get_by_label("What happened").fill("A customer forwarded the answer; the price list changed on the 1st.")
    page.get_by_role("checkbox", name="Serious incident").check()
    page.get_by_label("Art. 73 category").select_option("other")
    shots(page, "responder-02-report-form")
    page.get_by_role("button", name="Record the incident").click()
    assert page.get_by_text("Serious incident (EU AI Act Art. 73)").is_visible()
    incident_id = page.url.rsplit("/", 1)[1]
    deadline = guard.records.get_incident(incident_id).report_deadline
    assert deadline.strftime("%Y-%m-%d %H:%M:%S UTC") in page.locator("p.deadline").inner_text()
    shots(page, "responder-03-reported")

    page.get_by_role("button", name="Acknowledge").click()
    assert page.get_by_role("status").filter(has_text="You acknowledged the incident").is_visible()
    assert "acknowledged" in page.locator("dl.facts").inner_text()
    shots(page, "responder-04-acknowledged")

    cause = "The knowledge base still held last year's price list."
    action = "Replaced the price list, re-indexed the knowledge base and added a grounding rule for prices."
    page.get_by_label("Cause").fill(cause)
    page.get_by_label("Corrective action taken").fill(action)
    page.get_by_role("button", name="Resolve").click()
    assert page.get_by_role("status").filter(has_text="The incident is resolved").is_visible()
    assert page.locator("dd.cause").inner_text() == cause
    assert page.locator("dd.corrective-action").inner_text() == action
    assert "rob" in page.locator("dl.facts").inner_text()
    shots(page, "responder-05-resolved")

    # The stop switch and the event log, for the record.
    page.get_by_role("link", name="Systems", exact=True).click()
    page.get_by_label("Reason for stopping support-bot").fill("Drill: checking the stop switch")
    page.get_by_label("Yes, stop support-bot for all clients now").check()
    page.get_by_role("button", name="Stop support-bot").click()
    assert page.get_by_role("status").filter(has_text="support-bot is stopped").is_visible()
    assert guard.is_stopped("support-bot")
    shots(page, "responder-06-system-stopped")
    guard.flush()
    page.get_by_role("link", name="Event log", exact=True).click()
    page.get_by_label("Event kind").fill("incident.*")
    page.get_by_role("button", name="Show").click()
    kinds = page.locator("table.events tbody td:nth-child(2)").all_inner_texts()
    assert kinds == ["incident.resolved", "incident.acknowledged", "incident.opened"]
    shots(page, "responder-07-event-log")



@pytest.fixture
def served_with_keys(make_guard: Any, tmp_path: Path) -> Iterator[tuple[str, Guard]]:
    def mutate(data: dict[str, Any]) -> None:
        with_console(data)
        records_policy(data, tmp_path)
        data["systems"]["support-bot"]["callers"] = {"require_key": True}

    guard = make_guard(mutate)
    with ServerThread(create_gateway(guard)) as server:
        yield server.url, guard


def test_an_admin_creates_a_key_the_client_uses_it_and_revoking_ends_it(served_with_keys: tuple[str, Guard], page: Any, shots: Any) -> None:
    import openai

    base, guard = served_with_keys
    sign_in(page, base, "ada")
    page.get_by_role("link", name="API keys", exact=True).click()
    page.get_by_label("AI system").select_option("support-bot")
    page.get_by_label("Who or what it is for").fill("billing-service")
    page.get_by_label("Requests per minute").fill("3")
    shots(page, "admin-01-key-form")
    page.get_by_role("button", name="Create the key").click()
    key = page.locator("#new-key-value").inner_text().strip()
    assert key.startswith("ag-") and "shown only this once" in page.content()
    shots(page, "admin-02-key-shown-once")

    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    for _ in range(3):
        assert client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "How much is the Pro plan?"}]).choices
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])

    page.get_by_role("link", name="API keys", exact=True).click()
    assert key not in page.content()  # never shown again
    key_id = key.split("-")[1]
    page.get_by_role("button", name=f"Revoke key {key_id}").click()
    assert page.get_by_role("status").filter(has_text=f"Key {key_id} of support-bot is revoked").is_visible()
    assert "revoked" in page.get_by_role("row").filter(has_text=key_id).inner_text()
    shots(page, "admin-03-key-revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
