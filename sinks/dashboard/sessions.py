"""Sign-in sessions with expiry, and the rate limit on failed sign-ins. Pure state with an injectable clock.

A session id is 256 random bits, kept only in an HttpOnly, SameSite=Strict cookie and in this process's
memory (a restarted dashboard asks everyone to sign in again). A session ends after `idle_s` without a
request or `max_s` after sign-in, whichever comes first, or at sign-out.

Failed sign-ins are limited per client address and per user name: after `max_failures` within `window_s`,
further attempts are refused (HTTP 429 with Retry-After) until the oldest failure leaves the window, so a
password cannot be guessed quickly from one address, nor one user's from many.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass
class Session:
    name: str
    created: float
    last_seen: float


class SessionStore:
    def __init__(self, idle_s: float, max_s: float, clock: Clock = time.monotonic) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, name: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._expire(now)
            self._sessions[sid] = Session(name, now, now)
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session (its idle timer restarted), or None when unknown or expired."""
        if not sid:
            return None
        now = self.clock()
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            if now - s.last_seen > self.idle_s or now - s.created > self.max_s:
                del self._sessions[sid]
                return None
            s.last_seen = now
            return s

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def end_user(self, name: str) -> None:
        with self._lock:
            for sid in [k for k, s in self._sessions.items() if s.name == name]:
                del self._sessions[sid]

    def _expire(self, now: float) -> None:
        for sid, s in list(self._sessions.items()):
            if now - s.last_seen > self.idle_s or now - s.created > self.max_s:
                del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLimiter:
    def __init__(self, max_failures: int = 5, window_s: float = 300.0, clock: Clock = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        """Seconds until an attempt for these keys (client address, user name) is allowed; 0: now."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for k in keys:
                q = self._prune(k, now)
                if q is not None and len(q) >= self.max_failures:
                    wait = max(wait, q[0] + self.window_s - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for k in keys:
                self._fails.setdefault(k, deque()).append(now)

    def succeeded(self, name_key: str) -> None:
        """A correct password clears that user's failures (not the address's: a guesser who also owns one
        account must not reset their budget by signing in)."""
        with self._lock:
            self._fails.pop(name_key, None)

    def _prune(self, key: str, now: float) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q
