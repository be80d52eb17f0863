"""Admin pages: the virtual API keys of each AI system (create, list, revoke).

A new key is shown once, in the answer to the form that made it (never through a redirect:
the session cookie is signed, not encrypted, so it must not carry the key); the store keeps
only its hash. Revoking ends the key on every replica within about a second.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .._policy import ConsoleRole
from ._context import Console, choice_field, text_field

__all__ = ["ROUTES"]

ADMINS = (ConsoleRole.ADMIN,)
_MAX_LIMIT = 2**31 - 1


def _limit(form: FormData, name: str, label: str) -> int | None:
    """A positive whole number, or None when left empty (no limit). 422 otherwise."""
    value = form.get(name, "")
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= _MAX_LIMIT:
        raise HTTPException(422, f"{label} must be a whole number of at least 1 (or empty for no limit).")
    return int(text)


async def _page(console: Console, request: Request, *, created: Any = None, secret: str | None = None, status_code: int = 200) -> Response:
    keys = await console.store_call("records", console.records.list_keys)
    by_system = {system: [k for k in keys if k.system == system] for system in console.systems}
    return console.render(
        request, "keys.html", status_code=status_code, keys_by_system=by_system, created=created, secret=secret,
        require_key={s: console.guard.system(s).callers.require_key for s in console.systems},
    )


async def keys(console: Console, request: Request) -> Response:
    console.require(request, *ADMINS)
    return await _page(console, request)


async def create(console: Console, request: Request) -> Response:
    user = console.require(request, *ADMINS)
    form = await console.form(request, user)
    system = choice_field(form, "system", console.systems, "the AI system")
    name = text_field(form, "name", limit=200)
    rpm = _limit(form, "rpm", "Requests per minute")
    tokens_per_day = _limit(form, "tokens_per_day", "Tokens per day")
    key, secret = await console.counted(
        "key.create", console.records.create_key, system=system, by=user.name, name=name, rpm=rpm, tokens_per_day=tokens_per_day
    )
    # The name stays in the store (it may name a person); the event has the id and the limits.
    console.guard.events.emit("key.created", key_id=key.id, system=system, rpm=rpm, tokens_per_day=tokens_per_day, by=user.name)
    return await _page(console, request, created=key, secret=secret)


async def revoke(console: Console, request: Request) -> Response:
    user = console.require(request, *ADMINS)
    await console.form(request, user)
    key_id = str(request.path_params["key_id"])
    key = await console.counted("key.revoke", console.records.revoke_key, key_id, by=user.name)
    await console.guard.callers.announce_revocation()
    console.guard.events.emit("key.revoked", key_id=key.id, system=key.system, by=user.name)
    return console.redirect(request, "keys", f"Key {key.id} of {key.system} is revoked: every replica refuses it within about a second.")


ROUTES = [
    ("/keys", keys, "keys"),
    ("/keys/create", create, "keys_create", ("POST",)),
    ("/keys/{key_id}/revoke", revoke, "key_revoke", ("POST",)),
]
