"""MLflow tracking set-up and the lineage every model and report carries."""

from candlecast.tracking.lineage import Lineage, file_digest, git_commit
from candlecast.tracking.mlflow_setup import configure_mlflow

__all__ = ["Lineage", "configure_mlflow", "file_digest", "git_commit"]
