"""Determinism: the same profile, seed, data and machine give identical metrics files.

Two runs of the whole smoke chain (real model, real SFT, GRPO and Bradley-Terry training,
every judge on every benchmark) are compared file by file. The one thing that cannot be the
same twice is wall-clock time (seconds, tokens per second, start and finish stamps): those
keys are dropped before comparing and nothing else is.

This test is in the slow tier (`make test-all`). That target, like `make test`, first runs the
notebooks (nbval) into $PATARM_RESULTS_DIR; that smoke run is the first of the two when every
stage of it is recorded done, so the chain runs once more, not twice.

A refactoring that promises "behaviour unchanged" is checked the same way against a smoke run
made by the code before it: `PATARM_DETERMINISM_BASELINE=<that run's folder>` makes it the first,
and the recorded git commit (which must differ) is left out of the comparison with the times.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from patarm_kit.chain import notebook_stages, run_chain
from patarm_kit.config.loader import load_config
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import Run

WALL_CLOCK = re.compile(r"seconds|per_second|runtime|_time$|^started$|^finished$")  # _time: TRL's step_time
SAME_BYTES = ["eval/*.json", "metrics/04_benchmarks.json"]  # written without any time in them
SAME_BUT_TIMES = ["metrics/*.json", "eval/*.judgments.jsonl", "judgments/*.jsonl", "par/metrics.jsonl",
                  "sft/checks.json", "sft/check_judgments.jsonl"]
TRAINED = ["sft", "par", "bt"]  # adapters compared bit for bit


def without_wall_clock(value, *also: str):
    """`value` with every wall-clock entry (and the keys `also` names) removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_wall_clock(v, *also) for k, v in value.items() if not WALL_CLOCK.search(k) and k not in also}
    if isinstance(value, list):
        return [without_wall_clock(v, *also) for v in value]
    return value


def read_records(path: Path, *also: str):
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [without_wall_clock(json.loads(line), *also) for line in text.splitlines() if line.strip()]
    return without_wall_clock(json.loads(text), *also)


def files(run: Path, patterns: list[str]) -> list[str]:
    return sorted({str(p.relative_to(run)) for pattern in patterns for p in run.glob(pattern)})


def nbval_smoke_run() -> Path | None:
    """The complete smoke run nbval made earlier in this `make test-all`, if there is one.

    nbval executes the notebooks in place, so the run holds no executed copies: it is complete
    when every library stage of every notebook of the smoke chain is recorded done.
    """
    if not os.environ.get("PATARM_RESULTS_DIR"):
        return None  # results/interactive-smoke could be stale work from another commit
    folder = Path(os.environ["PATARM_RESULTS_DIR"]) / "interactive-smoke"
    if not (folder / "manifest.json").exists():
        return None
    config, manifest = load_config("smoke"), Run.open(folder).manifest()
    stages = [stage for notebook in config.notebooks for stage in notebook_stages(config, notebook)]  # those switched on
    done = all(manifest["stages"].get(stage, {}).get("status") == "done" for stage in stages)
    return folder if done and manifest["config_fingerprint"] == config.fingerprint() else None


@pytest.mark.slow
@pytest.mark.model
def test_two_smoke_runs_give_identical_metrics_files():
    baseline = os.environ.get("PATARM_DETERMINISM_BASELINE")
    first = Path(baseline) if baseline else nbval_smoke_run() or run_chain("smoke", "determinism-first").dir
    second = run_chain("smoke", "determinism-second").dir

    assert files(first, SAME_BYTES) == files(second, SAME_BYTES)
    assert len(files(first, SAME_BYTES)) >= 20, "every judge on every bench, and the stage table"
    for name in files(first, SAME_BYTES):
        if baseline:  # another commit: equal but for the commit it records
            assert read_records(first / name, "git") == read_records(second / name, "git"), name
        else:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name

    assert files(first, SAME_BUT_TIMES) == files(second, SAME_BUT_TIMES)
    for name in files(first, SAME_BUT_TIMES):
        assert read_records(first / name) == read_records(second / name), name

    for name in TRAINED:
        weights = [RunLayout(run).adapter(name) / "adapter_model.safetensors" for run in (first, second)]
        digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in weights]
        assert digests[0] == digests[1], f"{weights[0]}: training is not repeatable"


@pytest.mark.model
def test_the_smoke_chains_par_moves_its_adapter_so_its_determinism_means_something():
    """The smoke chain's PAR rewards nothing (its judgments are cut before their scores), so its adapter
    moves only by TRL's entropy bonus (configs/smoke.yaml); without it PAR's adapter was the warm-up's,
    and the test above compared the warm-up with itself. Reads the smoke run the notebooks made."""
    run = nbval_smoke_run() or run_chain("smoke", "par-moves").dir
    layout = RunLayout(run)
    metrics = [json.loads(line) for line in layout.par_metrics.read_text().splitlines() if line.strip()]
    assert any(m["grad_norm"] > 0 for m in metrics), "no step of PAR had a gradient"
    weights = [layout.adapter(name) / "adapter_model.safetensors" for name in ("sft", "par")]
    assert len({hashlib.sha256(path.read_bytes()).hexdigest() for path in weights}) == 2, "PAR left the warm-up unchanged"


def test_the_nbval_run_is_reused_only_when_every_stage_is_done(tmp_path, monkeypatch):
    monkeypatch.setenv("PATARM_RESULTS_DIR", str(tmp_path))
    config = load_config("smoke")
    run = Run.create("interactive-smoke", config, results_dir=tmp_path)
    stages = [stage for notebook in config.notebooks for stage in notebook_stages(config, notebook)]  # those switched on
    for stage in stages[:-1]:
        run.update("stages", stage, {"status": "done"})
    assert nbval_smoke_run() is None  # a chain stopped before its last stage is not reused
    run.update("stages", stages[-1], {"status": "done"})
    assert nbval_smoke_run() == run.dir
