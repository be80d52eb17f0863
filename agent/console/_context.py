"""What every console page needs: the signed-in user, rendering, forms, the store, failures.

Pages are plain async functions taking ``(console, request)``; this module holds the
shared steps so each page only says what it shows and what it changes.

    StoreUnavailable   the records store or event log failed: 503, counted, evented (fail closed)
    ActionRefused      the store refused a change (already claimed, wrong state): 409 with its reason
    (a missing record is 404, an incomplete form 422)
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import jinja2
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from aimsguard.collectors.records import RecordConflict, RecordNotFound, RecordsError

from .._guard import Guard
from .._policy import ConsoleRole
from ._auth import SESSION_USER, Authenticator, StaffUser
from ._csrf import CSRF_FIELD, csrf_token, verified_form
from ._metrics import ConsoleMetrics
from ._sessions import SESSION_ID, SessionRevocations

__all__ = [
    "REVIEWERS",
    "RESPONDERS",
    "ActionRefused",
    "Console",
    "EventReader",
    "NotSignedIn",
    "StoreUnavailable",
    "choice_field",
    "path_for",
    "text_field",
]

log = structlog.get_logger("aimsguard.console")

T = TypeVar("T")
EventReader = Callable[..., Iterator[dict[str, Any]]]
Page = Callable[["Console", Request], Awaitable[Response]]

_HERE = Path(__file__).resolve().parent
_FLASH = "flash"

# Who may use which area (admins may use all): reviewers answer handoffs; responders
# handle incidents, the stop switch and read the event log.
REVIEWERS = (ConsoleRole.REVIEWER,)
RESPONDERS = (ConsoleRole.RESPONDER,)


class NotSignedIn(HTTPException):
    def __init__(self) -> None:
        super().__init__(401, "Please sign in.")


class StoreUnavailable(HTTPException):
    def __init__(self, what: str) -> None:
        super().__init__(503, f"The {what} is unavailable right now; nothing was changed. Try again shortly.")


class ActionRefused(HTTPException):
    def __init__(self, reason: str) -> None:
        super().__init__(409, reason)


class Console:
    """The console's shared state: built once per app, never holding per-request data."""

    def __init__(self, guard: Guard, *, oversight: Any, read_events: EventReader | None) -> None:
        self.guard = guard
        self.auth = Authenticator(
            guard.policy.console, state=guard.state, monitor=guard.state_monitor, fail_mode=guard.policy.state.fail_modes.sign_in
        )
        self.sessions = SessionRevocations(
            guard.records, guard.policy.console.session_max_age_s,
            guard.state, guard.state_monitor, guard.policy.state.fail_modes.sessions,
        )
        self.metrics = ConsoleMetrics.for_registry(guard.metrics.registry if guard.metrics is not None else None)
        self.oversight = oversight
        self.read_events = read_events
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            finalize=_plain,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["when"] = format_time
        env.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v not in (None, "")})
        self.templates = Jinja2Templates(env=env, context_processors=[self._common_context])
        self.systems = sorted(guard.policy.systems)

    # -- the records store ---------------------------------------------------------

    @property
    def records(self) -> Any:
        store = self.guard.records
        if store is None:
            raise HTTPException(503, "No records store is configured in the policy, so there are no handoffs or incidents to show.")
        return store

    async def store_call(self, source: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a synchronous store (or event log) call off the event loop.

        A refused change is the user's to fix (404/409/422, with the store's reason); any
        other failure fails closed: nothing changed, 503, counted and evented.
        """
        try:
            return await run_in_threadpool(function, *args, **kwargs)
        except HTTPException:
            raise
        except RecordNotFound:
            raise HTTPException(404, "There is no such record.") from None
        except RecordConflict as exc:
            raise ActionRefused(f"Not possible now: {exc}.") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc) or "The form is not complete.") from None
        except (RecordsError, OSError) as exc:  # anything else is a bug, and gets a 500
            self.store_failed(source, exc)
            raise StoreUnavailable("records store" if source == "records" else "event log") from None

    def store_failed(self, source: str, exc: Exception) -> None:
        """Count and record a failed store (or event log) call."""
        self.metrics.store_failures.labels(source).inc()
        self.guard.events.emit("console.failed", source=source, error_type=type(exc).__name__)
        log.warning("console_store_failed", source=source, error_type=type(exc).__name__)

    async def act(self, action: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Take an oversight action: ``HumanOversight.<method>`` changes the store and writes
        the event (with the user's name) together."""
        if self.oversight is None:
            raise HTTPException(503, "No records store is configured in the policy, so this cannot be done.")
        return await self.counted(action, getattr(self.oversight, method), *args, **kwargs)

    async def counted(self, action: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A change through the records store, counted in ``aimsguard_console_actions_total``."""
        try:
            result = await self.store_call("records", function, *args, **kwargs)
        except HTTPException as exc:
            self.metrics.actions.labels(action, "refused" if exc.status_code < 500 else "failed").inc()
            raise
        self.metrics.actions.labels(action, "ok").inc()
        return result

    # -- users -------------------------------------------------------------------

    async def screen_session(self, request: Request) -> None:
        """Forget a session that was signed out (on any replica) or that carries no session
        id; runs before every page.

        Fails open when the records store cannot be read (counted, ``console.failed`` with
        ``source="sessions"``): an operator must still reach the stop switch during a
        database outage. Sessions signed out in this process are refused even then.
        """
        if SESSION_USER not in request.session:
            return
        session_id = request.session.get(SESSION_ID)
        if not isinstance(session_id, str):
            request.session.clear()
            return
        try:
            revoked = await self.sessions.is_revoked(session_id)
        except RecordsError as exc:
            self.store_failed("sessions", exc)
            revoked = False
        if revoked:
            request.session.clear()

    async def end_session(self, request: Request) -> None:
        """Sign out: the session id is revoked (here at once, everywhere through the store),
        then the cookie is cleared. If the store cannot be written, signing out still
        happens here; the failure is counted and recorded."""
        session_id = request.session.get(SESSION_ID)
        request.session.clear()
        if isinstance(session_id, str):
            try:
                await self.sessions.revoke(session_id)
            except RecordsError as exc:
                self.store_failed("sessions", exc)

    def require(self, request: Request, *roles: ConsoleRole) -> StaffUser:
        """The signed-in user, who must hold one of ``roles`` (admins hold all); 401/403 otherwise."""
        user = self.auth.identify(request)
        if user is None:
            self.metrics.refused.labels("unauthenticated").inc()
            raise NotSignedIn
        if roles and not user.may(*roles):
            self.metrics.refused.labels("forbidden").inc()
            raise HTTPException(403, f"Your role ({user.role.value}) cannot use this page.")
        request.state.user = user
        return user

    async def form(self, request: Request, user: StaffUser) -> FormData:
        """The POSTed form; session users must send this session's CSRF token."""
        return await verified_form(request, check_token=user.via == "session")

    # -- responses ------------------------------------------------------------------

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def redirect(self, request: Request, name: str, message: str | None = None, **path_params: Any) -> RedirectResponse:
        """303 to another page (post/redirect/get), with a one-time message for it."""
        if message:
            request.session.setdefault(_FLASH, []).append(message)
            request.session[_FLASH] = request.session[_FLASH][-5:]
        return RedirectResponse(path_for(request, name, **path_params), status_code=303)

    def _common_context(self, request: Request) -> dict[str, Any]:
        user = getattr(request.state, "user", None)
        messages = request.session.pop(_FLASH, []) if _FLASH in request.session else []
        return {
            "user": user,
            "reviewers": REVIEWERS,
            "responders": RESPONDERS,
            "csrf_field": CSRF_FIELD,
            "csrf_token": csrf_token(request),
            "messages": messages,
            "path_for": functools.partial(path_for, request),
            "systems": self.systems,
        }


def path_for(request: Request, name: str, /, **path_params: Any) -> str:
    """A console route's path (no scheme or host, so it works behind any proxy), wherever
    the console is mounted: the console's own routes, under the mount's root path."""
    return request.scope.get("root_path", "") + str(request.app.url_path_for(name, **path_params))


def format_time(value: Any) -> str:
    """Times in UTC, to the second, the same way on every page."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def text_field(form: FormData, name: str, *, limit: int, label: str | None = None) -> str:
    """A text field, trimmed; ``label`` makes it required. 422 when missing or too long."""
    value = form.get(name, "")
    text = value.strip() if isinstance(value, str) else ""
    if label and not text:
        raise HTTPException(422, f"Please fill in {label}.")
    if len(text) > limit:
        raise HTTPException(422, f"{(label or name).capitalize()} is too long (at most {limit} characters).")
    return text


def choice_field(form: FormData, name: str, choices: list[str] | tuple[str, ...], label: str) -> str:
    value = form.get(name)
    if value not in choices:
        raise HTTPException(422, f"Please choose {label}.")
    return str(value)


def _plain(value: Any) -> Any:
    """Enums (the store's statuses and severities) print as their value."""
    return value.value if isinstance(value, enum.Enum) else value
