"""Loaders for the bundled real candle files in ``data/sample/`` (see its PROVENANCE.md).

Each file has quirks, handled here explicitly and nowhere else:

* ``bitfinex_30m/<COIN>.csv.gz``: header ``Date,<C>.open,<C>.close,<C>.high,<C>.low,<C>.volume``
  (open, CLOSE, high, low order), candle open times in UTC, oldest first, base-coin volume.
* ``coinbase_1h/Coinbase_BTCUSD_1h.csv.gz``: a comment on line 1, header on line 2, 12-hour
  stamps like ``2019-10-17 09-AM``, NEWEST first, two volumes (``volume_btc`` is the base volume
  we keep; ``volume`` is in USD).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from candlecast.data.schema import SeriesId, conform


class SampleDataError(ValueError):
    """A bundled file is missing, truncated or not in the expected format."""


@dataclass(frozen=True)
class SampleDataset:
    name: str
    exchange: str
    timeframe: str
    quote: str
    symbols: tuple[str, ...]

    def series(self, symbol: str) -> SeriesId:
        return SeriesId(self.exchange, symbol, self.timeframe)


DATASETS: dict[str, SampleDataset] = {
    "bitfinex_30m": SampleDataset(
        "bitfinex_30m",
        "bitfinex",
        "30m",
        "USD",
        ("BTC/USD", "ETH/USD", "EOS/USD", "LTC/USD", "XRP/USD"),
    ),
    "coinbase_1h": SampleDataset("coinbase_1h", "coinbase", "1h", "USD", ("BTC/USD",)),
}


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    if not path.exists():
        raise SampleDataError(f"sample file {path} does not exist")
    try:
        frame = pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except (EOFError, OSError, zlib.error, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SampleDataError(f"sample file {path} is malformed or truncated: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise SampleDataError(f"sample file {path} is empty") from exc
    if frame.empty:
        raise SampleDataError(f"sample file {path} has a header but no rows")
    return frame


def _numeric(frame: pd.DataFrame, path: Path, columns: dict[str, str]) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for target, source in columns.items():
        values = pd.to_numeric(frame[source], errors="coerce")
        bad = values.isna() & frame[source].notna()
        if bad.any():
            row = int(bad.idxmax())
            raise SampleDataError(
                f"sample file {path}: column {source!r} has a non-number {frame[source][row]!r} "
                f"at data row {row}"
            )
        out[target] = values
    return out


def load_bitfinex(path: Path, symbol: str) -> pd.DataFrame:
    base = symbol.split("/")[0]
    frame = _read_csv(path)
    expected = ["Date", *(f"{base}.{c}" for c in ("open", "close", "high", "low", "volume"))]
    if list(frame.columns) != expected:
        raise SampleDataError(
            f"sample file {path}: header {list(frame.columns)}, expected {expected}"
        )
    out = _numeric(
        frame, path, {c: f"{base}.{c}" for c in ("open", "high", "low", "close", "volume")}
    )
    out.insert(0, "timestamp", pd.to_datetime(frame["Date"], format="%Y-%m-%d %H:%M:%S", utc=True))
    return out


def load_coinbase(path: Path, symbol: str) -> pd.DataFrame:
    frame = _read_csv(path, skiprows=1)
    expected = ["date", "symbol", "open", "high", "low", "close", "volume_btc", "volume"]
    if list(frame.columns) != expected:
        raise SampleDataError(
            f"sample file {path}: header {list(frame.columns)}, expected {expected}"
        )
    wanted = symbol.replace("/", "")
    if not (frame["symbol"] == wanted).all():
        raise SampleDataError(f"sample file {path}: rows for a symbol other than {wanted}")
    try:
        stamps = pd.to_datetime(frame["date"], format="%Y-%m-%d %I-%p", utc=True)
    except ValueError as exc:
        raise SampleDataError(f"sample file {path}: unparseable date: {exc}") from exc
    out = _numeric(
        frame,
        path,
        {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume_btc"},
    )
    out.insert(0, "timestamp", stamps)
    # newest first in the file; the canonical table is oldest first
    return out.iloc[::-1].reset_index(drop=True)


def sample_path(sample_root: Path, dataset: SampleDataset, symbol: str) -> Path:
    base = symbol.split("/")[0]
    if dataset.name == "bitfinex_30m":
        return sample_root / dataset.name / f"{base}.csv.gz"
    return sample_root / dataset.name / f"Coinbase_{symbol.replace('/', '')}_1h.csv.gz"


def load_sample(sample_root: str | Path, dataset_name: str, symbol: str) -> pd.DataFrame:
    """Load one bundled series as a canonical candle table (rows as in the file, never dropped)."""
    if dataset_name not in DATASETS:
        raise SampleDataError(
            f"unknown sample dataset {dataset_name!r}; expected one of {sorted(DATASETS)}"
        )
    dataset = DATASETS[dataset_name]
    if symbol not in dataset.symbols:
        raise SampleDataError(
            f"symbol {symbol!r} is not in sample dataset {dataset_name}; "
            f"expected one of {list(dataset.symbols)}"
        )
    path = sample_path(Path(sample_root), dataset, symbol)
    loader = load_bitfinex if dataset.name == "bitfinex_30m" else load_coinbase
    frame = loader(path, symbol)
    frame["exchange"] = dataset.exchange
    frame["symbol"] = symbol
    frame["timeframe"] = dataset.timeframe
    return conform(frame)
