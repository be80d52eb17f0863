"""The console app: routes, sign-in, the overview, error pages and middleware.

``create_console(guard)`` returns a Starlette app the gateway mounts at ``/console``
(``console.enabled`` in the policy). Everything is rendered on the server with Jinja2
(autoescaped) and works without JavaScript; every change is a POSTed form with a CSRF
token, answered with a redirect (post/redirect/get).
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from aimsguard.collectors import read_events as default_reader

from .._guard import Guard
from .._oversight import HumanOversight
from . import _effectiveness, _events, _handoffs, _incidents, _keys, _review, _systems
from ._auth import SESSION_USER
from ._context import Console, EventReader, NotSignedIn, Page, path_for
from ._csrf import CsrfRejected, rotate_csrf_token, verified_form
from ._headers import SecurityHeadersMiddleware
from ._sessions import SESSION_ID

__all__ = ["create_console"]

log = structlog.get_logger("aimsguard.console")

_HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "aimsguard_console"


def create_console(
    guard: Guard, *, oversight: Any = None, read_events: EventReader | None = None, cookie_path: str = "/"
) -> Starlette:
    """The console for a loaded policy.

    ``oversight`` takes the actions (default: ``HumanOversight(guard)`` when the guard has
    a records store); ``read_events`` reads the event log (default:
    ``aimsguard.collectors.read_events``). Both are arguments so tests and other
    deployments can hand in their own. ``cookie_path`` is where the app is mounted, so
    the session cookie is sent to the console only.
    """
    config = guard.policy.console
    if oversight is None and guard.records is not None:
        oversight = HumanOversight(guard)
    if read_events is None:
        read_events = default_reader
    console = Console(guard, oversight=oversight, read_events=read_events)
    secret = config.session_secret.get_secret_value() if config.session_secret else _process_secret()

    def page(handler: Page) -> Any:
        async def endpoint(request: Request) -> Response:
            await console.screen_session(request)
            return await handler(console, request)

        return endpoint

    def route(path: str, handler: Page, name: str, methods: tuple[str, ...] = ("GET",)) -> Route:
        return Route(path, page(handler), name=name, methods=list(methods))

    routes = [
        route("/", overview, "overview"),
        route("/login", login_page, "login"),
        route("/login", login, "login_submit", ("POST",)),
        route("/logout", logout, "logout", ("POST",)),
        *[route(*spec) for spec in _handoffs.ROUTES],
        *[route(*spec) for spec in _review.ROUTES],
        *[route(*spec) for spec in _effectiveness.ROUTES],
        *[route(*spec) for spec in _incidents.ROUTES],
        *[route(*spec) for spec in _systems.ROUTES],
        *[route(*spec) for spec in _events.ROUTES],
        *[route(*spec) for spec in _keys.ROUTES],
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc, NotSignedIn):
            target = path_for(request, "login")
            if request.method == "GET":
                target += "?next=" + _quote_path(request)
            return RedirectResponse(target, status_code=303)
        if isinstance(exc, CsrfRejected):
            console.metrics.refused.labels("csrf").inc()
            guard.events.emit("console.refused", reason="csrf", path=request.url.path)
        return console.render(request, "error.html", status_code=exc.status_code, status=exc.status_code, detail=exc.detail)

    return _ConsoleApp(
        secure=config.secure_cookies,
        routes=routes,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                path=cookie_path,
                max_age=config.session_max_age_s,
                same_site="lax",
                https_only=config.secure_cookies,
            ),
        ],
        exception_handlers={HTTPException: http_error},
    )


class _ConsoleApp(Starlette):
    """The console's Starlette app, with the security headers outside everything else:
    as a listed middleware they would sit inside ServerErrorMiddleware, and 500 pages
    would go out without them."""

    def __init__(self, *, secure: bool, **kwargs: Any) -> None:
        self._secure = secure
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeadersMiddleware(super().build_middleware_stack(), hsts=self._secure)


@functools.cache
def _process_secret() -> str:
    """One random session secret per process, for policies that set none (said once)."""
    log.warning("console_session_secret_random", hint="set console.session_secret to keep sessions across restarts and workers")
    return secrets.token_urlsafe(32)


def _quote_path(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return quote(target, safe="")


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: only a path inside this console, never another site."""
    home = path_for(request, "overview")
    if not target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(home) or target.startswith("//") or "\\" in target:
        return home
    return target


# -- pages ---------------------------------------------------------------------------


async def overview(console: Console, request: Request) -> Response:
    user = console.require(request)
    summary: dict[str, Any] = {"store": console.guard.records is not None}
    if summary["store"]:
        records = console.records
        queued = await console.store_call("records", records.queued_counts)
        claimed = await console.store_call("records", records.list_handoffs, status="claimed", limit=1000)
        unresolved = [
            *await console.store_call("records", records.list_incidents, status="open", limit=1000),
            *await console.store_call("records", records.list_incidents, status="acknowledged", limit=1000),
        ]
        stopped = await console.store_call("records", records.stopped_systems)
        summary.update(
            queued=sum(queued.values()),
            mine=sum(1 for h in claimed if h.claimed_by == user.name),
            open_incidents=unresolved,
            stopped=sorted(stopped),
        )
    return console.render(request, "overview.html", summary=summary)


async def login_page(console: Console, request: Request) -> Response:
    if console.auth.identify(request) is not None:
        return RedirectResponse(_safe_next(request, request.query_params.get("next")), status_code=303)
    return console.render(request, "login.html", next=request.query_params.get("next", ""), error=None, name="")


async def login(console: Console, request: Request) -> Response:
    # The login form carries a CSRF token too (login CSRF: signing a victim into the attacker's account).
    form = await verified_form(request)
    name, password, target = str(form.get("name", ""))[:64], str(form.get("password", ""))[:1024], str(form.get("next", ""))
    address = console.auth.client_address(request)
    result = await console.auth.login(name, password, address)
    console.metrics.logins.labels(result.outcome).inc()
    # A mistyped name may be anything (an e-mail address): only configured names are recorded.
    known = name.strip() if console.auth.is_user(name.strip()) else None
    console.guard.events.emit("console.login", user=known, outcome=result.outcome)
    if result.user is None:
        headers = {}
        if result.outcome == "throttled":
            wait = result.retry_after_s
            when = f"{wait} second(s)" if wait < 120 else f"about {round(wait / 60)} minutes"
            error, status = f"Too many failed sign-ins. Try again in {when}.", 429
            headers["retry-after"] = str(wait)
        elif result.outcome == "unavailable":
            error, status = "Signing in is unavailable right now. Try again shortly.", 503
        else:
            error, status = "Wrong user name or password.", 401
        # The name as typed, whether or not it exists (autoescaped): re-filling only known
        # names would tell which exist.
        response = console.render(request, "login.html", status_code=status, next=target, error=error, name=name)
        response.headers.update(headers)
        return response
    request.session.clear()
    request.session[SESSION_USER] = result.user.name
    request.session[SESSION_ID] = secrets.token_urlsafe(24)  # what signing out revokes
    rotate_csrf_token(request)
    log.info("console_login", user=result.user.name)
    return RedirectResponse(_safe_next(request, target), status_code=303)


async def logout(console: Console, request: Request) -> Response:
    user = console.require(request)
    await console.form(request, user)
    await console.end_session(request)
    console.guard.events.emit("console.logout", user=user.name)
    return RedirectResponse(path_for(request, "login"), status_code=303)

