"""Ingest candles from any ccxt exchange into the :class:`CandleStore`.

One call, :func:`ingest_ccxt`, does for every requested symbol of one exchange and timeframe:

1. plan the window: from ``since`` (or, when resuming, the candle after the last stored one) to
   ``until``, never past the last *closed* candle (a candle whose open + timeframe > now is still
   forming and is never stored);
2. page through ``fetch_ohlcv`` with the exchange's page limit, ccxt's rate limiter, and bounded
   exponential backoff with jitter on transient failures (timeouts, 429/418, 5xx, dropped
   connections, malformed bodies);
3. only when *every* series is fully downloaded, upsert each into the store, rolling every file
   back to its exact previous bytes if any write fails.

So an ingest either completes or leaves the store untouched, and a re-run (after a crash, a kill
or a failure) resumes from what is stored, with no gaps and no duplicates (the store's upsert is
keyed by timestamp). Bad input (unknown exchange, symbol or timeframe, since >= until, nothing
to download) raises :class:`IngestError` with a one-line message before anything is written.
"""

from __future__ import annotations

import difflib
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from candlecast.common.time import as_utc
from candlecast.data.schema import SeriesId, timeframe_to_timedelta
from candlecast.data.store import CandleStore
from candlecast.exchange.errors import (
    ExchangeRequestError,
    UnknownExchangeError,
    one_line,
)
from candlecast.exchange.retry import BackoffPolicy, Retrier
from candlecast.exchange.source import Candle, OhlcvSource

log = logging.getLogger(__name__)

DEFAULT_PAGE_LIMIT = 500  # when neither the config nor ccxt's `features` give one
Now: TypeAlias = pd.Timestamp | datetime | Callable[[], pd.Timestamp | datetime] | None


class IngestError(ValueError):
    """An ingest could not be done; the message is one line naming exchange, symbol and cause."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message, limit=500))


def _parse_time(value: str, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} {value!r} is not an ISO date/time like '2024-01-31T00:00Z'"
        ) from error
    if stamp is pd.NaT:
        raise ValueError(f"{name} {value!r} is not an ISO date/time")
    return as_utc(stamp)


class CcxtIngestConfig(BaseModel):
    """What to ingest from where, and how patiently. Times are ISO strings, naive means UTC.

    ``since`` is inclusive and ``until`` exclusive (candle open times); ``until=None`` means up to
    the last closed candle. ``since`` may be omitted when the store already holds the series (the
    ingest then resumes after the last stored candle). ``page_limit=None`` uses the exchange's own
    maximum per ccxt. ``rate_limit_ms=None`` keeps ccxt's per-exchange rate limit (only lower it
    for a fake or a proxy). ``resume=False`` re-downloads the whole window (repairs edits by the
    exchange; the upsert makes it idempotent).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exchange: str = Field(pattern=r"^[a-z0-9_]+$")
    symbols: tuple[str, ...] = Field(min_length=1)
    timeframe: str = "1h"
    since: str | None = None
    until: str | None = None
    page_limit: int | None = Field(default=None, ge=1, le=100_000)
    max_retries: int = Field(default=5, ge=0, le=20)
    backoff_base_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=600)
    timeout_ms: int = Field(default=10_000, ge=100, le=300_000)
    rate_limit_ms: int | None = Field(default=None, ge=0, le=60_000)
    resume: bool = True

    @field_validator("symbols")
    @classmethod
    def _symbols_unified_and_unique(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        for symbol in symbols:
            SeriesId("x", symbol, "1m")  # raises naming the symbol if not 'BASE/QUOTE'
        duplicated = sorted({s for s in symbols if symbols.count(s) > 1})
        if duplicated:
            raise ValueError(f"symbols listed more than once: {duplicated}")
        return symbols

    @field_validator("timeframe")
    @classmethod
    def _timeframe_known(cls, timeframe: str) -> str:
        timeframe_to_timedelta(timeframe)
        return timeframe

    @field_validator("since", "until")
    @classmethod
    def _iso_time(cls, value: str | None, info: Any) -> str | None:
        if value is not None:
            _parse_time(value, info.field_name)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> CcxtIngestConfig:
        since, until = self.since_ts, self.until_ts
        if since is not None and until is not None and since >= until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError(
                f"backoff_base_s ({self.backoff_base_s}) must not exceed backoff_max_s "
                f"({self.backoff_max_s})"
            )
        return self

    @property
    def since_ts(self) -> pd.Timestamp | None:
        return None if self.since is None else _parse_time(self.since, "since")

    @property
    def until_ts(self) -> pd.Timestamp | None:
        return None if self.until is None else _parse_time(self.until, "until")

    def series(self) -> list[SeriesId]:
        return [SeriesId(self.exchange, s, self.timeframe) for s in self.symbols]


def ingest_config(**fields: Any) -> CcxtIngestConfig:
    """Build a :class:`CcxtIngestConfig`, turning validation errors into one-line IngestErrors."""
    try:
        return CcxtIngestConfig(**fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors()
        )
        raise IngestError(f"invalid ccxt ingest config: {problems}") from error


@dataclass(frozen=True)
class PageProgress:
    """Sent to the progress callback after every page."""

    series: SeriesId
    page: int
    candles: int  # closed candles kept so far for this series
    expected: int  # upper bound on this series' candles (window length / timeframe): a tqdm total
    last_timestamp: pd.Timestamp | None
    retries: int  # retries so far in this ingest (all series)


@dataclass(frozen=True)
class SeriesReport:
    """What one series' ingest did. ``fetched`` counts closed candles kept from the download;
    ``new_rows`` is how many rows the stored table grew by."""

    series: SeriesId
    window_start: pd.Timestamp | None  # first open time asked for; None: already up to date
    fetched: int
    new_rows: int
    pages: int
    retries: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    stored_rows: int  # rows in the store after the ingest


@dataclass(frozen=True)
class IngestReport:
    exchange: str
    timeframe: str
    now: pd.Timestamp
    series: tuple[SeriesReport, ...]
    setup_retries: int = 0  # retries while loading markets

    @property
    def fetched(self) -> int:
        return sum(s.fetched for s in self.series)

    @property
    def new_rows(self) -> int:
        return sum(s.new_rows for s in self.series)

    @property
    def pages(self) -> int:
        return sum(s.pages for s in self.series)

    @property
    def retries(self) -> int:
        return self.setup_retries + sum(s.retries for s in self.series)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (timestamps as ISO strings, series as keys)."""

        def clean(value: Any) -> Any:
            if isinstance(value, pd.Timestamp):
                return value.isoformat()
            if isinstance(value, SeriesId):
                return value.key
            return value

        return {
            "exchange": self.exchange,
            "timeframe": self.timeframe,
            "now": self.now.isoformat(),
            "fetched": self.fetched,
            "new_rows": self.new_rows,
            "pages": self.pages,
            "retries": self.retries,
            "setup_retries": self.setup_retries,
            "series": [{f.name: clean(getattr(s, f.name)) for f in fields(s)} for s in self.series],
        }


def _resolve_now(now: Now) -> pd.Timestamp:
    value = now() if callable(now) else now
    return as_utc(pd.Timestamp.now(tz="UTC") if value is None else value)


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)


def _open_source(config: CcxtIngestConfig, api_url: str | None) -> OhlcvSource:
    from candlecast.exchange.ccxt_source import CcxtOhlcvSource  # imports ccxt: seconds

    try:
        return CcxtOhlcvSource.create(
            config.exchange,
            timeout_ms=config.timeout_ms,
            rate_limit_ms=config.rate_limit_ms,
            api_url=api_url,
        )
    except UnknownExchangeError as error:
        raise IngestError(str(error)) from error


def _check_inputs(source: OhlcvSource, config: CcxtIngestConfig, retrier: Retrier) -> None:
    ex = config.exchange
    if not source.supports_ohlcv():
        raise IngestError(f"{ex}: this exchange has no fetch_ohlcv in ccxt; cannot ingest candles")
    timeframes = source.timeframes()
    if timeframes is not None and config.timeframe not in timeframes:
        raise IngestError(
            f"{ex}: timeframe {config.timeframe!r} is not offered; it offers {sorted(timeframes)}"
        )
    try:
        retrier.call(source.load_markets, f"{ex} load_markets")
    except ExchangeRequestError as error:
        raise IngestError(f"{ex}: could not load markets: {error}") from error
    known = source.symbols()
    for symbol in config.symbols:
        if symbol not in known:
            close = difflib.get_close_matches(symbol, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise IngestError(
                f"{ex}: unknown symbol {symbol!r} (not among its {len(known)} markets){hint}"
            )


@dataclass(frozen=True)
class _Plan:
    series: SeriesId
    segments: tuple[tuple[int, int], ...]  # [start_ms, stop_ms) windows to download
    stop_ms: int
    stored_rows: int


def _plan(
    series: SeriesId, store: CandleStore, config: CcxtIngestConfig, now: pd.Timestamp
) -> _Plan:
    step_ms = _ms(pd.Timestamp(0, tz="UTC") + series.step)
    # Exclusive bound on open times: the last candle we may store closed at or before `now`.
    stop_ms = _ms(now) - step_ms + 1
    if config.until_ts is not None:
        stop_ms = min(stop_ms, _ms(config.until_ts))
    stored = store.read(series)
    since = config.since_ts
    if config.resume and not stored.empty:
        first, last = _ms(stored["timestamp"].iloc[0]), _ms(stored["timestamp"].iloc[-1])
        segments = []
        if since is not None and _ms(since) < first:
            segments.append((_ms(since), min(first, stop_ms)))  # backfill before the stored range
        start = last + step_ms if since is None else max(_ms(since), last + step_ms)
        segments.append((start, stop_ms))
    elif since is None:
        raise IngestError(
            f"{series.exchange} {series.symbol} {series.timeframe}: nothing stored yet, so a start "
            "is needed: set since"
        )
    else:
        segments = [(_ms(since), stop_ms)]
    kept = tuple((a, b) for a, b in segments if a < b)
    return _Plan(series, kept, stop_ms, len(stored))


def _download(
    plan: _Plan,
    source: OhlcvSource,
    retrier: Retrier,
    limit: int,
    progress: Callable[[PageProgress], None] | None,
) -> tuple[dict[int, Candle], int]:
    """Every closed candle of the plan's segments, keyed by open ms; and the page count."""
    s = plan.series
    step_ms = _ms(pd.Timestamp(0, tz="UTC") + s.step)
    label = f"{s.exchange} {s.symbol} {s.timeframe}"
    candles: dict[int, Candle] = {}
    pages = 0
    last: int | None = None  # latest open time kept
    expected = sum(-(-(b - a) // step_ms) for a, b in plan.segments)
    for start_ms, stop_ms in plan.segments:
        cursor, asked_again = start_ms, False
        while cursor < stop_ms:
            at = cursor

            def fetch(at: int = at) -> list[Candle]:
                return source.fetch_ohlcv_page(s.symbol, s.timeframe, at, limit)

            page = retrier.call(
                fetch,
                f"{label} page {pages + 1} (since {pd.Timestamp(at, unit='ms', tz='UTC')})",
            )
            pages += 1
            fresh = [c for c in page if c[0] >= cursor]
            if not fresh:
                # Nothing at or after the cursor though closed candles may exist: either the end
                # of the exchange's data or a stale/duplicated page. Ask once more, then accept.
                if asked_again:
                    log.warning(
                        "%s: no candles from %s on; stopping this window",
                        label,
                        pd.Timestamp(cursor, unit="ms", tz="UTC"),
                    )
                    break
                retrier.pause(label, "empty_page", f"empty page at {cursor}")
                asked_again = True
                continue
            asked_again = False
            for candle in fresh:
                if candle[0] < stop_ms:
                    candles[candle[0]] = candle
                    last = candle[0] if last is None else max(last, candle[0])
            cursor = max(c[0] for c in fresh) + step_ms
            last_ts = None if last is None else pd.Timestamp(last, unit="ms", tz="UTC")
            log.info("%s: page %d, %d candles so far, last %s", label, pages, len(candles), last_ts)
            if progress is not None:
                progress(PageProgress(s, pages, len(candles), expected, last_ts, retrier.retries))
    return candles, pages


def download_candles(
    source: OhlcvSource,
    series: SeriesId,
    start_ms: int,
    stop_ms: int,
    retrier: Retrier,
    *,
    limit: int | None = None,
) -> list[Candle]:
    """The candles with open time in ``[start_ms, stop_ms)``, ascending, paged exactly like
    :func:`ingest_ccxt` (the exchange's page limit, retries with backoff, one re-ask of an empty
    page), without touching any store. ``stop_ms`` is the caller's bound on *closed* candles.
    Raises :class:`~candlecast.exchange.errors.ExchangeRequestError` when retries run out.

    The streaming trader backfills the candles it missed with this (``candlecast.trading.stream``).
    """
    if start_ms >= stop_ms:
        return []
    page = limit or source.max_page_limit(series.symbol) or DEFAULT_PAGE_LIMIT
    plan = _Plan(series, ((start_ms, stop_ms),), stop_ms, 0)
    candles, _ = _download(plan, source, retrier, page, None)
    return [candles[k] for k in sorted(candles)]


def _to_frame(series: SeriesId, candles: dict[int, Candle]) -> pd.DataFrame:
    rows = [candles[k] for k in sorted(candles)]
    frame = pd.DataFrame(rows, columns=["ms", "open", "high", "low", "close", "volume"])
    frame.insert(0, "timestamp", pd.to_datetime(frame.pop("ms"), unit="ms", utc=True))
    frame["exchange"], frame["symbol"], frame["timeframe"] = (
        series.exchange,
        series.symbol,
        series.timeframe,
    )
    return frame


class _Snapshot:
    """How to put one series file back exactly as it was (or absent) before a write."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.backup = path.with_name(f".{path.name}.ingest-backup")
        self.created_dirs: list[Path] = []
        if path.exists():
            self.backup.unlink(missing_ok=True)
            try:
                os.link(path, self.backup)  # O(1): the upsert replaces the name, not the inode
            except OSError:
                shutil.copy2(path, self.backup)
            self.existed = True
        else:
            self.existed = False
            for folder in [path.parent, *path.parent.parents]:
                if folder.exists():
                    break
                self.created_dirs.append(folder)
                if folder == root:
                    break

    def restore(self) -> None:
        if self.existed:
            self.backup.replace(self.path)
            return
        self.path.unlink(missing_ok=True)
        for folder in self.created_dirs:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break

    def discard(self) -> None:
        self.backup.unlink(missing_ok=True)


def _commit_all(store: CandleStore, frames: dict[SeriesId, pd.DataFrame]) -> dict[SeriesId, int]:
    """Upsert every frame; if any write fails, every touched file gets its old bytes back.

    Returns the stored row count per series. (A hard kill between two series' writes can still
    leave one series updated and the next not; each file is whole either way, and the next run
    resumes each series from its own last candle.)
    """
    snapshots: list[_Snapshot] = []
    sizes: dict[SeriesId, int] = {}
    try:
        for series, frame in frames.items():
            snapshots.append(_Snapshot(store.path(series), store.root))
            sizes[series] = store.upsert(series, frame)
    except BaseException:
        for snapshot in reversed(snapshots):
            snapshot.restore()
        raise
    finally:
        for snapshot in snapshots:
            snapshot.discard()
    return sizes


def ingest_ccxt(
    config: CcxtIngestConfig,
    store: CandleStore,
    *,
    source: OhlcvSource | None = None,
    api_url: str | None = None,
    now: Now = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    progress: Callable[[PageProgress], None] | None = None,
) -> IngestReport:
    """Download ``config``'s series and upsert them into ``store``, all or nothing.

    ``source`` defaults to a ccxt exchange built from the config (``api_url`` re-points its REST
    endpoints, for tests). ``now`` (a timestamp or a callable, read once) decides which candle is
    still open; ``sleep`` and ``rng`` drive the retry backoff. Raises :class:`IngestError` (one
    line, store untouched) on bad input or when a request still fails after ``max_retries``.
    """
    at = _resolve_now(now)
    policy = BackoffPolicy(config.max_retries, config.backoff_base_s, config.backoff_max_s)
    retrier = Retrier(policy, sleep=sleep, rng=rng if rng is not None else random.Random())
    plans = [_plan(series, store, config, at) for series in config.series()]
    src = source if source is not None else _open_source(config, api_url)
    _check_inputs(src, config, retrier)
    setup_retries = retrier.retries

    downloads: dict[SeriesId, tuple[dict[int, Candle], int, int]] = {}
    for plan in plans:
        s = plan.series
        limit = config.page_limit or src.max_page_limit(s.symbol) or DEFAULT_PAGE_LIMIT
        retries_before = retrier.retries
        try:
            candles, pages = _download(plan, src, retrier, limit, progress)
        except ExchangeRequestError as error:
            raise IngestError(
                f"{s.exchange} {s.symbol} {s.timeframe}: download failed, nothing written: {error}"
            ) from error
        if not candles and plan.stored_rows == 0:
            window = (
                f"from {pd.Timestamp(plan.segments[0][0], unit='ms', tz='UTC')} "
                if plan.segments
                else ""
            )
            raise IngestError(
                f"{s.exchange} {s.symbol} {s.timeframe}: the exchange returned no closed candles "
                f"{window}to {pd.Timestamp(plan.stop_ms, unit='ms', tz='UTC')}; nothing written"
            )
        downloads[s] = (candles, pages, retrier.retries - retries_before)

    frames = {s: _to_frame(s, c) for s, (c, _, _) in downloads.items() if c}
    sizes = _commit_all(store, frames)
    reports = []
    for plan in plans:
        s = plan.series
        candles, pages, retries = downloads[s]
        after = sizes.get(s, plan.stored_rows)
        reports.append(
            SeriesReport(
                series=s,
                window_start=(
                    pd.Timestamp(plan.segments[0][0], unit="ms", tz="UTC")
                    if plan.segments
                    else None
                ),
                fetched=len(candles),
                new_rows=after - plan.stored_rows,
                pages=pages,
                retries=retries,
                first=pd.Timestamp(min(candles), unit="ms", tz="UTC") if candles else None,
                last=pd.Timestamp(max(candles), unit="ms", tz="UTC") if candles else None,
                stored_rows=after,
            )
        )
        log.info(
            "%s: %d pages, %d candles fetched, %d new rows, %d retries",
            s.key,
            pages,
            len(candles),
            after - plan.stored_rows,
            retries,
        )
    return IngestReport(config.exchange, config.timeframe, at, tuple(reports), setup_retries)
