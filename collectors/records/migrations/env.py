"""Alembic environment of the records store: run by ``RecordsStore.upgrade()``, which hands
in an open connection (no alembic.ini, no URL here). For ``alembic revision --autogenerate``
during development, pass ``-x url=sqlite:///tmp.db`` with a config pointing here."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from aimsguard.collectors.records._models import Base
from aimsguard.collectors.records._store import VERSION_TABLE


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite can only ALTER by copying the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("run the records migrations through RecordsStore.upgrade(), or pass -x url=...")
    with create_engine(url).begin() as conn:
        _run(conn)
