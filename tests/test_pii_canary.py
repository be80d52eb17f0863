"""Canary: conversations full of personal data through the gateway; no sink may hold any of it."""

import json
import random
import time

import httpx
import openai
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .support import records_policy



def _canaries(i: int, salt: int) -> dict[str, str]:
    return {
        "email": f"canary.{salt}.{i}@example.org",
        "phone": f"+44 20 7946 0{i % 1000:03d}",
        "ip": f"10.{salt % 250}.{i // 250}.{i % 250 + 1}",
    }


def test_no_personal_data_in_any_sink(gateway, events, upstream, capsys, tmp_path) -> None:
    spans = InMemorySpanExporter()

    def log_redacted_content(data):
        data["event_log"]["content"] = "redacted"  # the most a policy may log: must still hold no values
        # Every decision of every check queued for review: the queue must hold no values either.
        records_policy(data, tmp_path)
        data["systems"]["support-bot"]["review"] = {"rates": dict.fromkeys(["allow", "flag", "redact", "block", "escalate"], 1.0)}

    url, guard = gateway(log_redacted_content, span_exporter=spans)
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    salt = random.randrange(10_000, 99_999)
    upstream.server.config.app.state.seen.clear()
    conversations = 40
    values: list[str] = []
    for i in range(conversations):
        c = _canaries(i, salt)
        values += list(c.values())
        message = f"repeat after me: my email is {c['email']} and my phone number is {c['phone']}, from {c['ip']}."
        headers = {"x-aimsguard-conversation-id": f"canary-{salt}-{i}"}
        if i % 2:
            stream = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": message}], stream=True, extra_headers=headers)
            answer = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        else:
            answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": message}], extra_headers=headers).choices[0].message.content
        # The model saw placeholders; the user gets their own data back.
        assert answer == f"my email is {c['email']} and my phone number is {c['phone']}, from {c['ip']}.", answer
    leaked = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "leak:pii"}]).choices[0].message.content
    assert "dana.scully" not in leaked and "<EMAIL_ADDRESS>" in leaked
    values.append("dana.scully.canary@example.net")

    deadline = time.monotonic() + 10
    while len(events.events("exchange")) < conversations + 1 and time.monotonic() < deadline:
        guard.flush()
        time.sleep(0.05)
    guard.flush()
    guard.traces.force_flush()

    sinks = {
        "upstream requests": json.dumps(upstream.server.config.app.state.seen),
        "event log": "\n".join(p.read_text() for p in guard.event_log.directory.glob("*.jsonl")),
        "metrics": httpx.get(url + "/metrics").text,
        "spans": repr([(s.name, dict(s.attributes), [(e.name, dict(e.attributes)) for e in s.events]) for s in spans.get_finished_spans()]),
        "process output": "".join(capsys.readouterr()),
        "review queue": repr(guard.records.review_samples()),
    }
    assert len(events.events("exchange")) == conversations + 1
    assert "<EMAIL_ADDRESS_1>" in sinks["upstream requests"]  # the model got placeholders
    assert "<EMAIL_ADDRESS_1>" in sinks["review queue"]  # reviewers read what the event log holds
    for sink, text in sinks.items():
        found = [value for value in values if value in text]
        assert found == [], f"{sink} holds personal data: {found[:3]}"
    # ...and the event log still says what was found, by type.
    kinds = {f["kind"] for e in events.events("guardrail.verdict") for f in e["findings"]}
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "placeholder"} <= kinds
