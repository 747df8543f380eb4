"""`package` stage: the served model (champion, else the reported fallback) into a built bento.

Thin: composes the service's config from params.yaml (``serving:`` plus the features, feature
service, MLflow store and risk engine of their own sections) and calls
:func:`candlecast.serving.package.package_service` (docs/serving.md).
"""

from __future__ import annotations

import logging

from candlecast.config import Params
from candlecast.pipeline.paths import Paths
from candlecast.serving.config import compose_serving_config
from candlecast.serving.package import package_service

log = logging.getLogger(__name__)


def serving_config(params: Params, paths: Paths):
    return compose_serving_config(
        params.serving,
        features=params.features,
        feature_service=params.feature_store.feature_service,
        tracking_uri=params.mlflow.tracking_uri,
        risk=params.risk,
        project_root=paths.root,
        feature_store_config=params.feature_store.repo_config,
    )


def run_package(params: Params, paths: Paths) -> dict[str, object]:
    summary = package_service(serving_config(params, paths), paths.root)
    log.info("packaged %s serving %s (%s)", summary["bento_tag"], summary["model_version"],
             summary["model_source"])
    return summary
