"""Databases for the records store tests: a SQLite file, or a fresh schema in the local PostgreSQL.

PostgreSQL tests are skipped only when the server is unreachable and CI is not "true"
(on CI a missing database is a failure, not a skip).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_DSN = os.environ.get("AIMSGUARD_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
PG_URL = os.environ.get("AIMSGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _pg_available() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_DSN, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database of that backend, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    import psycopg

    if not _pg_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {PG_DSN} (required on CI)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_DSN}")
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
