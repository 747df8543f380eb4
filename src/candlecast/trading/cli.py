"""``candlecast trade``: run the trader (paper by default) and operate it.

Mount with ``app.add_typer(trade_app, name="trade")``. Commands: ``run``, ``kill``, ``pause``,
``resume``, ``reset-kill``, ``status``. Settings come from ``params.yaml`` (``trade:``, ``risk:``,
``costs:``, ``backtest:``, ``features:`` when the loaded params have them, else defaults);
options override a few. Errors print one ``error: ...`` line and exit 1.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from candlecast.trading.config import TradeConfig

trade_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

RootOption = Annotated[Path, typer.Option("--root", help="Project root (holds params.yaml).")]
ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="Params file (default: <root>/params.yaml).")
]
StateOption = Annotated[Path | None, typer.Option("--state-db", help="Trader state (SQLite).")]
KillOption = Annotated[Path | None, typer.Option("--kill-switch-file", help="Kill-switch file.")]
PauseOption = Annotated[Path | None, typer.Option("--pause-file", help="Pause file.")]


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)


def _sections(root: Path, params_file: Path | None) -> dict[str, Any]:
    """The trade/risk/costs/backtest/features configs from params.yaml (defaults if absent)."""
    from candlecast.backtest.config import BacktestConfig, CostConfig
    from candlecast.features import FeatureConfig
    from candlecast.risk import RiskConfig

    path = params_file or root / "params.yaml"
    loaded: Any = None
    if path.exists():
        from candlecast.config import load_params

        loaded = load_params(path)
    elif params_file is not None:
        raise ValueError(f"params file {path} does not exist")
    defaults = {"trade": TradeConfig(), "risk": RiskConfig(), "costs": CostConfig(),
                "backtest": BacktestConfig(), "features": FeatureConfig()}
    if loaded is None:
        return defaults
    # params.yaml's `backtest:` is the backtest STAGE's section; its run settings are `.run`
    trade = loaded.trade.model_copy(update={"feast_config": loaded.feature_store.repo_config})
    return {"trade": trade, "risk": loaded.risk, "costs": loaded.costs,
            "backtest": loaded.backtest.run, "features": loaded.features}


def _override(config: TradeConfig, **fields: Any) -> TradeConfig:
    updates = {k: (str(v) if isinstance(v, Path) else v) for k, v in fields.items()
               if v is not None}
    return TradeConfig.model_validate({**config.model_dump(), **updates})


def _paths(root: Path, params: Path | None, state_db: Path | None, kill: Path | None,
           pause: Path | None) -> TradeConfig:
    config = _sections(root, params)["trade"]
    return _override(config, state_db=state_db, kill_switch_file=kill, pause_file=pause)


@trade_app.command("run")
def run(
    root: RootOption = Path(),
    params: ParamsOption = None,
    live: Annotated[bool, typer.Option("--live", help="Place real orders (needs keys in "
                                       "the environment and a confirmation).")] = False,
    confirm_live: Annotated[bool, typer.Option("--i-understand-live-trading",
                                               help="Confirm live trading.")] = False,
    replay: Annotated[bool, typer.Option("--replay", help="Replay stored candles (paper).")
                      ] = False,
    feed: Annotated[str | None, typer.Option(
        "--feed", help="Live candles: poll (REST after each close) | stream (WebSocket); "
        "default trade.feed.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on this port (default trade.metrics_port).")] = None,
    replay_start: Annotated[str | None, typer.Option(help="First replayed candle (ISO).")] = None,
    replay_end: Annotated[str | None, typer.Option(help="Replay end, exclusive (ISO).")] = None,
    replay_last: Annotated[int | None, typer.Option(help="Replay only the last N candles.")
                           ] = None,
    speed: Annotated[float, typer.Option(help="Replay speed-up vs real time (0: no waiting).")
                     ] = 0.0,
    service_url: Annotated[str | None, typer.Option(help="Signal service base URL.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="signal | predict")] = None,
    no_feast: Annotated[bool, typer.Option("--no-feast", help="Do not write features to "
                                           "the Feast online store.")] = False,
    max_candles: Annotated[int | None, typer.Option(help="Stop after N candles.")] = None,
    state_db: StateOption = None,
    kill_switch_file: KillOption = None,
    pause_file: PauseOption = None,
) -> None:
    """Run the trader: paper by default; `--live --i-understand-live-trading` for real orders."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from candlecast.trading.ops import StopFlag
    from candlecast.trading.session import ReplaySpec, build_trader

    stop = StopFlag().install()
    try:
        sections = _sections(root, params)
        config = _override(
            sections["trade"], state_db=state_db, kill_switch_file=kill_switch_file,
            pause_file=pause_file, service_url=service_url, signal_endpoint=endpoint,
            mode="live" if live else None, live_confirmed=True if confirm_live else None,
            write_features=False if no_feast else None, feed=feed, metrics_port=metrics_port)
        if replay and feed is not None:
            raise ValueError("--replay replays stored candles; it takes no --feed")
        if config.is_live and not live:
            raise ValueError("trade.mode is 'live' in the params, but live orders also need the "
                             "--live flag")
        if live and not config.live_confirmed:
            raise ValueError("--live needs --i-understand-live-trading (or trade.live_confirmed: "
                             "true in params.yaml)")
        spec = ReplaySpec(replay_start, replay_end, replay_last, speed) if replay else None
        trader = build_trader(config, root=root, risk=sections["risk"], costs=sections["costs"],
                              backtest=sections["backtest"], features=sections["features"],
                              replay=spec, stop=stop)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        stop.restore()
        _fail(exc)
    import os

    from candlecast.monitoring.alerts import notifier_from_env

    trader.notifier = notifier_from_env(os.environ)  # CANDLECAST_ALERT_WEBHOOK, if set
    server = None
    if config.metrics_port is not None:
        from candlecast.trading.metrics import serve_metrics

        server = serve_metrics(trader, config.metrics_port, config.metrics_host)
        typer.echo(f"metrics on http://{config.metrics_host}:{server.server_address[1]}/metrics",
                   err=True)
    # everything loaded so far leaves the collector's generations for the session: a full
    # collection would otherwise walk it (hundreds of ms) in the middle of some candle's tick
    gc.collect()
    gc.freeze()
    failure: RuntimeError | None = None
    try:
        summary = trader.run(max_ticks=max_candles)
    except RuntimeError as exc:  # the stream feed failed for good (e.g. its worker died)
        failure = exc
    finally:
        gc.unfreeze()
        if hasattr(trader.feed, "close"):
            trader.feed.close()  # the stream: unsubscribe, append the last candles
            with trader._tx():  # noqa: SLF001 - journal what the feed reported while closing
                pass
        if server is not None:
            server.shutdown()
            server.server_close()
        trader.store.close()
        stop.restore()
    if failure is not None:
        _fail(failure)
    typer.echo(json.dumps(summary.to_dict() | {"mode": config.mode}, default=str))


# kill, pause and resume: the same small shape (resolve the flag file from params, write or
# remove it, say so), three commands of one kind.
@trade_app.command("kill")
def kill(
    reason: Annotated[str, typer.Option(help="Recorded with the kill.")] = "manual kill",
    root: RootOption = Path(),
    params: ParamsOption = None,
    kill_switch_file: KillOption = None,
) -> None:
    """Engage the kill switch: the trader cancels orders, flattens (if configured) and stops."""
    from candlecast.trading.ops import write_flag_file

    try:
        config = _paths(root, params, None, kill_switch_file, None)
        path = write_flag_file(root / config.kill_switch_file, reason)
    except (ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f"kill switch engaged: {path}")


@trade_app.command("pause")
def pause(root: RootOption = Path(), params: ParamsOption = None,
          pause_file: PauseOption = None) -> None:
    """Pause: ignore signals (no new positions); stops and limits stay enforced."""
    from candlecast.trading.ops import write_flag_file

    try:
        config = _paths(root, params, None, None, pause_file)
        path = write_flag_file(root / config.pause_file, "paused")
    except (ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f"paused: {path}")


@trade_app.command("resume")
def resume(root: RootOption = Path(), params: ParamsOption = None,
           pause_file: PauseOption = None) -> None:
    """Resume after a pause (removes the pause file)."""
    from candlecast.trading.ops import remove_flag_file

    try:
        config = _paths(root, params, None, None, pause_file)
        removed = remove_flag_file(root / config.pause_file)
    except (ValueError, OSError) as exc:
        _fail(exc)
    typer.echo("resumed" if removed else "was not paused")


@trade_app.command("reset-kill")
def reset_kill(root: RootOption = Path(), params: ParamsOption = None,
               state_db: StateOption = None, kill_switch_file: KillOption = None) -> None:
    """Re-arm trading after a kill (the kill file must be removed first; trader not running)."""
    from candlecast.risk import RiskEngine, RiskState
    from candlecast.trading.ops import read_flag_file
    from candlecast.trading.store import StateStore

    try:
        config = _paths(root, params, state_db, kill_switch_file, None)
        if read_flag_file(root / config.kill_switch_file) is not None:
            raise ValueError(f"remove the kill switch file {root / config.kill_switch_file} "
                             "first")
        with StateStore(root / config.state_db) as store, store.transaction():
            account = store.get("account")
            if account is None:
                raise ValueError(f"no trader state in {root / config.state_db}")
            account.update(killed=False, kill_reason="")
            store.put("account", account)
            raw = store.get("risk_state")
            if raw is not None:
                state = RiskEngine().reset_kill_switch(RiskState.from_dict(raw))
                store.put("risk_state", state.to_dict())
            store.add_event("reset_kill", "kill switch reset by operator")
    except (ValueError, OSError, RuntimeError) as exc:
        _fail(exc)
    typer.echo("kill switch reset")


@trade_app.command("status")
def status(root: RootOption = Path(), params: ParamsOption = None,
           state_db: StateOption = None) -> None:
    """Print the stored state: account, positions, each symbol's policy target and reason,
    working orders (style, limit price, candles left), open orders, recent events (JSON)."""
    from candlecast.trading.ops import read_flag_file
    from candlecast.trading.store import feed_status, read_only

    try:
        config = _paths(root, params, state_db, None, None)
        store = read_only(root / config.state_db)
    except (ValueError, OSError) as exc:
        _fail(exc)
    try:
        ticks = store.frame("ticks")
        orders = store.frame("orders")
        events = store.frame("events").tail(10)
        books = {s: store.book(s) for s in config.symbols}
        equity = None if ticks.empty else float(ticks["equity"].iloc[-1])
        out = {
            "account": store.get("account"),
            "equity": equity,
            "candles_processed": len(ticks),
            "positions": {s: (b or {}).get("pos") for s, b in books.items()},
            "targets": {s: _target_view(b or {}, equity) for s, b in books.items()},
            "working_orders": store.working_orders(config.symbols),
            "open_orders": orders[orders["status"].isin(["working", "new", "open", "unknown"])]
            [["client_id", "symbol", "reason", "status", "style", "limit_price"]]
            .to_dict("records"),
            "kill_switch_file": read_flag_file(root / config.kill_switch_file) is not None,
            "paused": read_flag_file(root / config.pause_file) is not None,
            "recent_events": events[["wall_time", "kind", "message"]].to_dict("records"),
            "event_counts": store.event_counts(),
            "feed": feed_status(store),
        }
    finally:
        store.close()
    typer.echo(json.dumps(out, indent=2, default=lambda x: None if isinstance(x, float)
                          and math.isnan(x) else str(x)))


def _target_view(book: dict[str, Any], equity: float | None) -> dict[str, Any]:
    """The policy's last target for a symbol beside what is held (fractions of equity)."""
    pos, close = book.get("pos") or 0.0, book.get("last_close")
    held = (pos * close / equity if equity and close is not None and math.isfinite(close)
            else None)
    bars = book.get("bars", 0) or 0
    entry = book.get("entry_bar", -1)
    return {"target_position": book.get("target_position"),
            "policy_reason": book.get("policy_reason") or None,
            "position_fraction": held,
            "bars_held": bars - 1 - entry if entry is not None and entry >= 0 else 0}
