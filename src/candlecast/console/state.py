"""The console: every source the page and the chat bot read, the controls, and the token.

:func:`build_console` assembles one from the loaded params and the project root (the CLI's edge
passes the control token it read from the environment); :meth:`Console.snapshot` is the whole
page's data, the JSON the dashboard's ``/api/state`` answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candlecast.common.auth import ControlToken
from candlecast.common.time import utc_now_iso
from candlecast.common.uris import absolute_sqlite_uri
from candlecast.console.audit import ControlAudit
from candlecast.console.config import ConsoleConfig
from candlecast.console.controls import Controls
from candlecast.console.sources import (
    BacktestSource,
    OpsSource,
    RegistrySource,
    TraderSource,
)

if TYPE_CHECKING:
    from candlecast.config import Params


@dataclass
class Console:
    config: ConsoleConfig
    trader: TraderSource
    registry: RegistrySource | None
    ops: OpsSource
    backtest: BacktestSource
    controls: Controls
    token: ControlToken

    def snapshot(self) -> dict[str, Any]:
        trader = self.trader.snapshot()
        return {
            "generated_at": utc_now_iso(),
            "refresh_s": self.config.refresh_s,
            "trader": trader,
            "comparison": self.backtest.compare(self.trader.current_ticks()),
            "registry": self.registry.snapshot() if self.registry is not None
            else {"available": False, "reason": "no registry configured"},
            "ops": self.ops.snapshot(),
            "controls": {"enabled": self.token.configured, "token_env": self.token.env_var,
                         "audit": list(reversed(self.controls.audit.recent(
                             self.config.recent_rows)))},
        }


def build_console(params: Params, root: Path, token: ControlToken,
                  config: ConsoleConfig | None = None) -> Console:
    """The console over the project at ``root`` as ``params`` describe it."""
    config = config or params.console
    trade = params.trade
    trader = TraderSource(trade, root, config.recent_rows, config.max_plot_points)
    audit = ControlAudit(root / config.audit_log)
    registry = RegistrySource(absolute_sqlite_uri(params.mlflow.tracking_uri, root),
                              params.ensemble.registered_model, config.registry_cache_s)
    ops = OpsSource(root / params.ops.drift.report_dir,
                    root / params.ops.state_dir / "retrain" / "latest.json")
    backtest = BacktestSource(root / config.backtest_reports, tuple(s.key for s in trade.series),
                              config.backtest_strategy)
    controls = Controls(trader.pause_file, trader.kill_switch_file, audit)
    return Console(config, trader, registry, ops, backtest, controls, token)
