from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from aimsguard.agent import Guard, create_gateway, parse_policy
from aimsguard.collectors import InMemoryExporter

from .support import ServerThread, make_upstream, policy_dict, test_registry


@pytest.fixture(autouse=True)
def _structlog_as_it_was() -> Iterator[None]:
    """CLI commands configure structlog for their process; a test must not leave that to the next."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def events() -> InMemoryExporter:
    return InMemoryExporter()


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(make_upstream()) as server:
        yield server


class GuardFactory:
    def __init__(self, tmp_path: Path, events: InMemoryExporter, upstream_url: str) -> None:
        self.tmp_path = tmp_path
        self.events = events
        self.upstream_url = upstream_url
        self.guards: list[Guard] = []

    def __call__(self, mutate: Any = None, *, span_exporter: Any = None, **system_overrides: Any) -> Guard:
        data = policy_dict(self.tmp_path, self.upstream_url, **system_overrides)
        if mutate is not None:
            mutate(data)
        policy = parse_policy(data, registry=test_registry())
        guard = Guard(policy, registry=test_registry(), exporters=[self.events], span_exporter=span_exporter)
        self.guards.append(guard)
        return guard

    def close(self) -> None:
        for guard in self.guards:
            guard.close()


@pytest.fixture
def make_guard(tmp_path: Path, events: InMemoryExporter, upstream: ServerThread) -> Iterator[GuardFactory]:
    factory = GuardFactory(tmp_path, events, upstream.url + "/v1")
    yield factory
    factory.close()


@pytest.fixture
def gateway(make_guard: GuardFactory) -> Iterator[Any]:
    """Start a gateway over a real socket; call it with the same arguments as make_guard."""
    servers: list[ServerThread] = []

    def start(*args: Any, **kwargs: Any) -> tuple[str, Guard]:
        guard = make_guard(*args, **kwargs)
        server = ServerThread(create_gateway(guard)).__enter__()
        servers.append(server)
        return server.url, guard

    yield start
    for server in servers:
        server.__exit__()
