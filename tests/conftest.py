"""Shared fixtures: the optional real-data folder and small generated image sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from image_sets import write_shape_set

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real-image folder: $FORAMFLOW_SHARED_DATA or ../shared/data beside the checkout."""
    return Path(os.environ.get("FORAMFLOW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not available at {path} (set FORAMFLOW_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shape_set(tmp_path_factory) -> Path:
    """40 images each of three shape classes (32×32 PNG), shared by the whole session."""
    return write_shape_set(tmp_path_factory.mktemp("shapes"))
