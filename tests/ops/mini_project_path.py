"""Import helper: the pipeline tests' miniature project builder (tests/pipeline/mini_project.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from mini_project import make_mini_project  # noqa: E402

__all__ = ["make_mini_project"]
