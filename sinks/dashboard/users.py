"""Dashboard users: a YAML file of names, roles and argon2id password hashes, and what each role may do.

    users:
      - {name: alice, role: operator, password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."}

`plantstream users add NAME --role operator` writes entries (the password is read from the terminal or
stdin, never from the command line). The file is read again when it changes, so adding or removing a
user needs no restart. Hashes use argon2-cffi's defaults (argon2id, RFC 9106 low-memory profile).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from plantstream.core.errors import SinkError
from plantstream.core.roles import PERMISSIONS, ROLES  # the worker checks commands against the same rights

_hasher = PasswordHasher()
# verified against when the name is unknown, so a wrong name takes as long as a wrong password
_DUMMY_HASH = _hasher.hash("plantstream: no such user")


class UsersFileError(SinkError, ValueError):
    pass


@dataclass(frozen=True)
class User:
    """Who is at the page: a signed-in person, the shared token (a machine client), or `local` (no
    authentication configured, loopback only)."""

    name: str
    role: str
    via: str  # session | token | local

    def can(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, frozenset())

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "via": self.via, "can": sorted(PERMISSIONS.get(self.role, ()))}


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _hasher.hash(password)


def parse(text: str, source: str) -> dict[str, tuple[str, str]]:
    """The file's text -> name -> (role, hash); UsersFileError naming the entry and the fix."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UsersFileError(
            f"{source}: not valid YAML ({err}); fix the file or write it with `plantstream users add`"
        ) from None
    entries = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UsersFileError(f"{source}: expected a top-level 'users:' list; see `plantstream users add --help`")
    out: dict[str, tuple[str, str]] = {}
    for i, e in enumerate(entries):
        where = f"{source}: users[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
            raise UsersFileError(f"{where}: each user needs a name")
        name, role, h = e["name"], e.get("role"), e.get("password_hash")
        if role not in ROLES:
            raise UsersFileError(f"{where} ({name}): role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(h, str) or not h.startswith("$argon2"):
            raise UsersFileError(
                f"{where} ({name}): password_hash must be an argon2 hash; set it with `plantstream users add {name}`"
            )
        if name in out:
            raise UsersFileError(f"{where}: user {name!r} is listed twice")
        out[name] = (role, h)
    return out


class UsersFile:
    """The users, re-read when the file's modification time changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._users: dict[str, tuple[str, str]] = {}
        self.load()

    def load(self) -> dict[str, tuple[str, str]]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            raise UsersFileError(
                f"dashboard users file {self.path} does not exist; create it with `plantstream users add NAME "
                "--role operator` or unset pipeline.dashboard.users_file"
            ) from None
        with self._lock:
            if mtime != self._mtime:
                self._users = parse(self.path.read_text(), str(self.path))
                self._mtime = mtime
            return self._users

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password is theirs (argon2 verify, constant time per hash), else None."""
        try:
            users = self.load()
        except UsersFileError:
            users = self._users  # a broken edit in progress: keep the last good list
        role, h = users.get(name, ("", _DUMMY_HASH))
        try:
            _hasher.verify(h, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return User(name, role, "session") if role else None

    def role_of(self, name: str) -> str | None:
        """The user's current role (None: removed), so a session follows edits of the file."""
        try:
            users = self.load()
        except UsersFileError:
            users = self._users
        got = users.get(name)
        return got[0] if got else None


def upsert(path: str | os.PathLike[str], name: str, role: str, password: str) -> None:
    """Add a user or change their role and password (the file is created with mode 600)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    p = Path(path)
    users = [] if not p.exists() else (yaml.safe_load(p.read_text()) or {}).get("users") or []
    entry = {"name": name, "role": role, "password_hash": hash_password(password)}
    users = [u for u in users if u.get("name") != name] + [entry]
    write(p, users)


def remove(path: str | os.PathLike[str], name: str) -> bool:
    p = Path(path)
    if not p.exists():
        return False
    users = (yaml.safe_load(p.read_text()) or {}).get("users") or []
    kept = [u for u in users if u.get("name") != name]
    write(p, kept)
    return len(kept) < len(users)


def write(p: Path, users: list[dict[str, Any]]) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"users": users}, f, sort_keys=False)
    tmp.replace(p)
