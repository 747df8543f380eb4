"""The GX 1.x file context that holds the candle suite, validation definition and checkpoint.

Layout (``gx.get_context(mode="file", project_root_dir=<root>)`` creates ``<root>/gx/``)::

    <root>/gx/great_expectations.yml             config: pandas datasource "candles", asset
                                                 "candles", batch definition "whole_dataframe";
                                                 analytics off, progress bars off
    <root>/gx/expectations/candles.json          the suite (rebuilt from code by save_candle_suite)
    <root>/gx/validation_definitions/candles.json suite + batch definition
    <root>/gx/checkpoints/candles.json           result_format COMPLETE, index column gx_row_id
    <root>/gx/uncommitted/                       validation results, Data Docs (git-ignored)

``open_candle_context`` is idempotent: it reuses whatever is stored and only creates what is
missing, so the committed JSON is the source of truth at run time. ``save_candle_suite``
rewrites the stored suite from code (expectation ids derive from rule ids, so an unchanged suite
is rewritten byte for byte), and a test checks the two cannot drift. GX is imported lazily: it
takes seconds to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from candlecast.validation.suite import ROW_ID, SUITE_NAME, build_candle_suite

if TYPE_CHECKING:
    from great_expectations import Checkpoint, ExpectationSuite
    from great_expectations.data_context import FileDataContext

DATASOURCE_NAME = "candles"
ASSET_NAME = "candles"
BATCH_DEFINITION_NAME = "whole_dataframe"
VALIDATION_DEFINITION_NAME = "candles"
CHECKPOINT_NAME = "candles"
LOCAL_SITE_NAME = "local_site"
EXPORT_SITE_NAME = "candlecast_export"

# COMPLETE lists every unexpected row; gx_row_id ties each one back to an input row.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_ID],
    "return_unexpected_index_query": False,
}


@dataclass(frozen=True)
class CandleContext:
    """An opened file context with the objects the gate runs."""

    context: FileDataContext
    suite: ExpectationSuite
    checkpoint: Checkpoint


def _gx_context(context_root: str | Path) -> FileDataContext:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root = Path(context_root)
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=root)
    # No usage statistics (GX 1.24 also reads GX_ANALYTICS_ENABLED when this is unset) and no
    # tqdm bars in pipeline logs. Saved only when something changes, so reuse is read-only.
    if context.variables.analytics_enabled is not False or context.variables.progress_bars is None:
        context.variables.analytics_enabled = False
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def open_candle_context(context_root: str | Path) -> CandleContext:
    """Open (creating on first use) the candle file context under ``context_root``."""
    import great_expectations as gx
    from great_expectations.exceptions import DataContextError

    context = _gx_context(context_root)
    sources = context.data_sources.all()
    if DATASOURCE_NAME in sources:
        datasource = sources[DATASOURCE_NAME]
    else:
        datasource = context.data_sources.add_pandas(DATASOURCE_NAME)
    if ASSET_NAME in datasource.get_asset_names():
        asset = datasource.get_asset(ASSET_NAME)
    else:
        asset = datasource.add_dataframe_asset(ASSET_NAME)  # type: ignore[attr-defined]
    if BATCH_DEFINITION_NAME in [bd.name for bd in asset.batch_definitions]:
        batch_definition = asset.get_batch_definition(BATCH_DEFINITION_NAME)
    else:
        batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION_NAME)

    try:
        suite = context.suites.get(SUITE_NAME)
    except DataContextError:
        suite = _store_suite(context)
    try:
        validation = context.validation_definitions.get(VALIDATION_DEFINITION_NAME)
    except DataContextError:
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=VALIDATION_DEFINITION_NAME, data=batch_definition, suite=suite
            )
        )
    try:
        checkpoint = context.checkpoints.get(CHECKPOINT_NAME)
    except DataContextError:
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=CHECKPOINT_NAME,
                validation_definitions=[validation],
                result_format=RESULT_FORMAT,
                actions=[],
            )
        )
    return CandleContext(context=context, suite=suite, checkpoint=checkpoint)


def _store_suite(context: FileDataContext) -> ExpectationSuite:
    from great_expectations.exceptions import DataContextError

    try:
        context.suites.get(SUITE_NAME)
    except DataContextError:
        # GX mints random ids on create; the update below writes the rule-derived ones.
        context.suites.add(build_candle_suite())
    return context.suites.add_or_update(build_candle_suite())


def save_candle_suite(context_root: str | Path) -> ExpectationSuite:
    """(Re)build the suite from code and store it (byte-identical if the code is unchanged).

    Run after changing ``suite.py``; commit the rewritten ``gx/expectations/candles.json``.
    """
    return _store_suite(open_candle_context(context_root).context)


def stored_suite_json(context_root: str | Path) -> dict[str, Any]:
    """The suite as stored in the file context (for drift checks and reports)."""
    import json

    path = Path(context_root) / "gx" / "expectations" / f"{SUITE_NAME}.json"
    if not path.exists():
        raise FileNotFoundError(f"no stored candle suite at {path}; run save_candle_suite first")
    return json.loads(path.read_text(encoding="utf-8"))


def _url_to_path(url: str) -> Path:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)


def build_data_docs(context_root: str | Path, output_dir: str | Path | None = None) -> Path:
    """Render Data Docs (the suite and every stored validation result) and return index.html.

    Without ``output_dir`` the context's own site is built at
    ``<root>/gx/uncommitted/data_docs/local_site/index.html``. With it, the same site is rendered
    into ``output_dir`` (a site added in memory only; the stored config is not changed).
    """
    context = open_candle_context(context_root).context
    if output_dir is None:
        urls = context.build_data_docs(site_names=[LOCAL_SITE_NAME])
        return _url_to_path(urls[LOCAL_SITE_NAME])
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sites = dict(context.variables.data_docs_sites or {})
    sites[EXPORT_SITE_NAME] = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(out),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    context.variables.data_docs_sites = sites  # in memory only: never saved
    context.build_data_docs(site_names=[EXPORT_SITE_NAME])
    index = out / "index.html"
    if not index.exists():
        raise RuntimeError(f"GX did not write Data Docs to {index}")
    return index
