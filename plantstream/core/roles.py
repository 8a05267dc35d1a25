"""Who may do what: the roles of people at the dashboard and the right each alarm action needs.

The dashboard checks a user's role before it sends a command; the worker checks the role the command
carries again, so a command from another sender is held to the same rules (docs/alarms.md).
"""

from __future__ import annotations

ROLES = ("viewer", "operator", "admin")
# what each role may do; an alarm action handler asks for its action's right, a page for "view"
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "operator": frozenset({"view", "ack", "shelve"}),
    "admin": frozenset({"view", "ack", "shelve", "admin"}),
}
# AlarmCommand.action -> the right it needs
ACTION_RIGHT = {
    "ACKNOWLEDGE": "ack",
    "SHELVE": "shelve",
    "UNSHELVE": "shelve",
    "REMOVE_FROM_SERVICE": "admin",
    "RETURN_TO_SERVICE": "admin",
}


def may(role: str, right: str) -> bool:
    return right in PERMISSIONS.get(role, frozenset())


def roles_with(right: str) -> list[str]:
    return [r for r in ROLES if may(r, right)]
