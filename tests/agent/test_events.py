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
