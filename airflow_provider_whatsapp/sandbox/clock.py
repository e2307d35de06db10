"""The sandbox's clock, which tests advance instead of sleeping, and the timestamp formats Graph uses."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SandboxClock:
    """The sandbox's notion of time: the monotonic clock plus an offset that tests can advance.

    Every delay of the sandbox (code lifetime, cooldowns, name review, connection, the 72 h register
    block, rate-limit windows) is measured on this clock, so a test skips hours with one call.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        # Anchors that map monotonic readings to wall-clock time for the ISO timestamps Graph sends.
        self._mono0 = time.monotonic()
        self._wall0 = time.time()

    def now(self) -> float:
        """Seconds on the sandbox clock (monotonic, plus every advance so far)."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward.

        :param seconds: how far; must not be negative.
        """
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds

    @property
    def offset(self) -> float:
        """Total seconds advanced so far."""
        return self._offset

    def wall(self, at: float | None = None) -> datetime:
        """The UTC wall-clock time of a sandbox-clock reading (default: now)."""
        reading = self.now() if at is None else at
        return datetime.fromtimestamp(self._wall0 + (reading - self._mono0), tz=UTC)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, seconds precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def graph_time(moment: datetime) -> str:
    """The timestamp format Graph uses in node fields, e.g. ``2026-08-01T10:00:00+0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
