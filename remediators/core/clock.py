"""One clock for every time decision, so the simulator can move time through real code paths.

Cooldowns, waits for a table to become ACTIVE and (later) approval expiries all read this
clock. In Lambda it is the system clock. The simulator switches it to simulated mode: time
still flows, `advance` jumps it forward, and `sleep` returns at once after advancing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["advance", "now", "sleep", "use_real_time", "use_simulated_time"]


class _Clock:
    offset = timedelta(0)
    simulated = False
    frozen_at: datetime | None = None


_CLOCK = _Clock()


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return (_CLOCK.frozen_at or datetime.now(UTC)) + _CLOCK.offset


def sleep(seconds: float) -> None:
    """Wait `seconds`; in simulated mode, advance the clock instead of blocking."""
    if _CLOCK.simulated:
        advance(timedelta(seconds=seconds))
    else:
        time.sleep(seconds)


def advance(delta: timedelta) -> None:
    """Jump simulated time forward (the simulator's `wait:` step)."""
    if not _CLOCK.simulated:
        raise RuntimeError("advance() needs simulated time: call use_simulated_time() first")
    _CLOCK.offset += delta


def use_simulated_time(frozen: bool = False) -> None:
    """Switch to simulated time, starting from now; `frozen`: time moves only by `advance`
    (deterministic runs such as the alarm-storm benchmark)."""
    _CLOCK.simulated = True
    _CLOCK.frozen_at = datetime.now(UTC) if frozen else None


def use_real_time() -> None:
    """Switch back to the system clock."""
    _CLOCK.offset, _CLOCK.simulated, _CLOCK.frozen_at = timedelta(0), False, None
