import logging

import structlog

from aimsguard.agent import GuardedExchange


def test_the_applications_structlog_settings_never_filter_the_audit_trail(make_guard, events) -> None:
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        guard = make_guard()
        with GuardedExchange(guard) as ex:
            ex.check_input_sync("hello")
        guard.flush()
        assert [e["event"] for e in events.events()] == ["policy.loaded", "exchange"]
    finally:
        structlog.configure(**previous)


def test_ids_are_random_version_4_uuids_in_hex() -> None:
    import uuid

    from aimsguard.agent._exchange import new_id

    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every other bit is random: each hex digit outside the version and variant takes many values.
    assert all(len({value[i] for value in ids}) >= 8 for i in range(32) if i not in (12, 16))
    assert {value[16] for value in ids} == set("89ab")
