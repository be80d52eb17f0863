"""Shared by the console tests: a policy with console users, and signing in a TestClient."""

from __future__ import annotations

import re
from typing import Any

import argon2
from starlette.testclient import TestClient

# Cheap argon2 parameters: the tests sign in often, and the strength is not what they test.
_FAST = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)

PASSWORDS = {"rita": "rita-reviews-1", "rob": "rob-responds-1", "ada": "ada-admin-pass"}
ROLES = {"rita": "reviewer", "rob": "responder", "ada": "admin"}
TOKEN = "t" * 20 + "-oncall-bot-token-0123456789"


def with_console(data: dict[str, Any], **console: Any) -> None:
    """Enable the console in a policy dict (a ``make_guard`` mutate)."""
    data["console"] = {
        "enabled": True,
        "session_secret": "s" * 40,
        "users": [{"name": name, "password_hash": _FAST.hash(PASSWORDS[name]), "role": role} for name, role in ROLES.items()],
        "tokens": [{"name": "oncall-bot", "token": TOKEN, "role": "responder"}],
        **console,
    }


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, name: str, prefix: str = "") -> str:
    """Sign ``name`` in through the login form; returns the session's CSRF token."""
    token = csrf_of(client.get(f"{prefix}/login").text)
    response = client.post(f"{prefix}/login", data={"csrf_token": token, "name": name, "password": PASSWORDS[name]}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client.get(f"{prefix}/").text)
