"""Operator controls: kill-switch and pause files, and graceful stop on SIGTERM/SIGINT.

* **Kill switch**: while the file exists the trader trades no more; when it first sees it, it
  cancels working orders and (``flatten_on_kill``) closes every position, then stops once flat.
  The file's text (if any) is recorded as the reason. ``candlecast trade kill`` writes it.
* **Pause**: while the file exists, signals are ignored (no entries, no signal exits); the risk
  engine's stops and limits are still enforced and fills still booked. Remove it to resume.
* **Graceful stop**: SIGTERM/SIGINT set a flag; the trader finishes the candle it is processing
  (its transaction commits), then exits with status 0.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType


def write_flag_file(path: str | Path, text: str = "") -> Path:
    """Create ``path`` (and its folder) holding ``text``; atomic (write + rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return target


def read_flag_file(path: str | Path) -> str | None:
    """The file's stripped text ('' if empty), or ``None`` when it does not exist."""
    try:
        return Path(path).read_text().strip()
    except FileNotFoundError:
        return None


def remove_flag_file(path: str | Path) -> bool:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return False
    return True


class StopFlag:
    """Set by SIGTERM/SIGINT (after :meth:`install`) or by calling :meth:`set`."""

    def __init__(self) -> None:
        self.is_set = False
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def set(self, name: str = "manual") -> None:
        self.is_set, self.signal_name = True, name

    def install(self) -> StopFlag:
        """Handle SIGTERM and SIGINT by setting the flag (main thread only)."""
        def handler(signum: int, frame: FrameType | None) -> None:
            self.set(signal.Signals(signum).name)

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, handler)
        return self

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def __bool__(self) -> bool:
        return self.is_set
