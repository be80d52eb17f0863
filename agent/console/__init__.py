"""The web console: reviewers answer handoffs, responders handle incidents and the stop
switch, and everyone with the right role reads the event log.

Server-rendered (Starlette + Jinja2), no JavaScript; mounted by the gateway at
``/console`` when ``console.enabled`` is set in the policy.
"""

from ._app import create_console
from ._auth import StaffUser, hash_password

__all__ = ["StaffUser", "create_console", "hash_password"]
