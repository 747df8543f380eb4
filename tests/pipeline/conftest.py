"""Fixtures of the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from mini_project import make_mini_project


@pytest.fixture(scope="module")
def mini_project(tmp_path_factory, repo_root) -> Path:
    return make_mini_project(repo_root, tmp_path_factory.mktemp("mini"))
