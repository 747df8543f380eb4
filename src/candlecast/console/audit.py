"""The control audit log: every pause/resume/kill request -- done or refused -- as one JSON line.

Appended with a single ``write`` on a file opened in append mode (a line is far below the size
the kernel appends atomically), so the dashboard and the chat bot may share one log. The
presented token is never part of an entry: only whether it was valid.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from candlecast.common.time import utc_now_iso


@dataclass(frozen=True)
class AuditEntry:
    time: str
    source: str  # "dashboard" | "telegram" | "alert-intake"
    client: str  # remote address or chat id
    action: str  # "pause" | "resume" | "kill" | "alert"
    accepted: bool
    detail: str  # the outcome, or why it was refused

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ControlAudit:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def record(self, source: str, client: str, action: str, accepted: bool, detail: str,
               when: datetime | None = None) -> AuditEntry:
        entry = AuditEntry(when.isoformat(timespec="milliseconds") if when is not None
                           else utc_now_iso("milliseconds"),
                           source, str(client)[:100], action[:40], accepted, detail[:500])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry.to_dict(), sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return entry

    def recent(self, n: int) -> list[dict[str, Any]]:
        """The newest ``n`` entries, newest last (lines that are not JSON are skipped)."""
        if not self.path.exists():
            return []
        out: deque[dict[str, Any]] = deque(maxlen=n)
        with self.path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            window = max(4096, n * 1024)  # an entry is a few hundred bytes
            handle.seek(max(0, size - window))
            if size > window:
                handle.readline()  # a partial first line
            for line in handle:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return list(out)
