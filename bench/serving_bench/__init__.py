"""The serving benchmark's parts (``bench/bench_serving.py`` runs them; see its docstring):

* ``project``: the served model, a cached miniature project with the whole zoo and a champion;
* ``services``: ``bentoml serve`` processes (ours and the trivial service), readiness, memory;
* ``load``: the raw-socket keep-alive load generator, its statistics and the answer checks;
* ``scenarios``: what is measured, in order (the trader's replay, a fresh online row, the load
  rounds), returning the raw measurements;
* ``report``: the result JSON (targets, ratios, environment) and the markdown tables.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # bench/
REPO = HERE.parent
ENTRY = HERE / "bench_serving.py"
RESULTS = HERE / "results" / "serving.json"
CACHE = HERE / ".cache" / "serving"
MINI = CACHE / "mini"
MARKER = MINI / "bench_built.json"
MODELS = ["baselines", "lightgbm", "chronos", "transformer"]
SERIES = ("bitfinex", "BTC/USD", "30m")
