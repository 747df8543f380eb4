"""Pause, resume and kill the trader from the console: the SAME files ``candlecast trade
pause|resume|kill`` write (``trade.pause_file``, ``trade.kill_switch_file`` under the project
root), so the trader cannot tell who asked. Every request is recorded in the audit log, the
refused ones too.

Who may ask is decided at the edge and passed in: the dashboard checks the control token
(:mod:`candlecast.common.auth`), the chat bot checks the chat id and that a control token is
configured on this machine at all (no token: no controls anywhere -- safe by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from candlecast.console.audit import ControlAudit
from candlecast.trading.ops import read_flag_file, remove_flag_file, write_flag_file

ACTIONS = ("pause", "resume", "kill")
MAX_REASON = 200


@dataclass(frozen=True)
class ControlResult:
    action: str
    accepted: bool
    message: str


@dataclass(frozen=True)
class Controls:
    """The trader's operator controls over its flag files."""

    pause_file: Path
    kill_switch_file: Path
    audit: ControlAudit

    def state(self) -> dict[str, object]:
        kill = read_flag_file(self.kill_switch_file)
        return {"paused": read_flag_file(self.pause_file) is not None,
                "kill_switch": kill is not None, "kill_reason": kill}

    def refuse(self, action: str, source: str, client: str, why: str) -> ControlResult:
        self.audit.record(source, client, action, False, why)
        return ControlResult(action, False, why)

    def execute(self, action: str, *, source: str, client: str, authorized: bool,
                refused_because: str = "not authorized", reason: str = "") -> ControlResult:
        """Carry out ``action`` if ``authorized`` (else refuse); recorded either way."""
        if action not in ACTIONS:
            return self.refuse(action, source, client, f"unknown action {action!r}")
        if not authorized:
            return self.refuse(action, source, client, refused_because)
        reason = " ".join(reason.split())[:MAX_REASON]
        if action == "kill" and not reason:
            return self.refuse(action, source, client, "a kill needs a reason")
        try:
            if action == "pause":
                write_flag_file(self.pause_file, "paused")
                message = f"paused: {self.pause_file.name} written; stops stay enforced"
            elif action == "resume":
                removed = remove_flag_file(self.pause_file)
                message = "resumed" if removed else "was not paused"
            else:
                write_flag_file(self.kill_switch_file, f"{reason} ({source} {client})")
                message = (f"kill switch engaged: {reason}; the trader cancels orders, "
                           "flattens and stops")
        except OSError as error:
            return self.refuse(action, source, client, f"failed: {error.strerror or error}")
        self.audit.record(source, client, action, True, message if action != "kill"
                          else f"kill: {reason}")
        return ControlResult(action, True, message)
