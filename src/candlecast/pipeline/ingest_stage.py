"""`ingest` stage: candles from the bundled sample (offline default) or an exchange via ccxt."""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from candlecast.config import Params
from candlecast.data.ingest import PageProgress, ingest_ccxt
from candlecast.data.sample import load_sample
from candlecast.data.store import CandleStore
from candlecast.pipeline.paths import Paths

log = logging.getLogger(__name__)


def run_ingest(params: Params, paths: Paths) -> dict[str, object]:
    cfg = params.ingest
    store = CandleStore(paths.raw)
    if cfg.source == "sample":
        report: dict[str, object] = {
            "source": "sample",
            "dataset": cfg.sample_dataset,
            "series": {},
        }
        for series in tqdm(cfg.series, desc="ingest (sample)", unit="series"):
            candles = load_sample(paths.sample, cfg.sample_dataset, series.symbol)
            rows = store.upsert(series, candles)
            report["series"][series.key] = {  # type: ignore[index]
                "rows": rows,
                "first": str(candles["timestamp"].iloc[0]),
                "last": str(candles["timestamp"].iloc[-1]),
            }
            log.info("%s: %d candles stored", series.key, rows)
        return report
    bar = tqdm(desc=f"ingest ({cfg.exchange})", unit="page")

    def progress(page: PageProgress) -> None:
        bar.update(1)
        bar.set_postfix(series=page.series.symbol, candles=page.candles, retries=page.retries)

    try:
        result = ingest_ccxt(cfg.ccxt_config(), store, progress=progress)
    finally:
        bar.close()
    return {"source": "ccxt", **result.to_dict()}
