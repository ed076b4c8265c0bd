"""The headless chain: papermill runs the notebooks into the run folder and names a failing cell."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patarm_kit.chain import LOCAL_KERNEL_MANAGER, NOTEBOOK_DIR, NOTEBOOK_STAGES, ChainError, notebook_path, run_chain
from patarm_kit.cli import app
from patarm_kit.config.loader import PROFILE_DIR, load_config
from patarm_kit.runs.layout import RunLayout


def test_chain_writes_manifest_and_executed_notebook(tmp_path, monkeypatch):
    from patarm_kit.runs import run as results  # RESULTS_DIR lives there

    run = run_chain("smoke", "chain-test", only=["01_data_pairing"])
    assert run.dir.parent == results.RESULTS_DIR
    manifest = run.manifest()
    assert manifest["notebooks"]["01_data_pairing"]["status"] == "done"
    assert manifest["stages"]["data"]["status"] == "done"
    assert manifest["stages"]["data"]["outputs"]["pairs/bench-rmbench.jsonl"]  # its sha256: what rmbench judges
    assert manifest["finished"] is not None
    assert manifest["data"]["llmbar"]["pairs"] == 419
    executed = json.loads((run.dir / "notebooks" / "01_data_pairing.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    from patarm_kit.report.verify import verify_run
    from patarm_kit.runs.files import sha256_of

    notebook = run.dir / "notebooks" / "01_data_pairing.ipynb"  # recorded, so an edit after the run is caught
    assert manifest["notebooks"]["01_data_pairing"]["outputs"] == {"notebooks/01_data_pairing.ipynb": sha256_of(notebook)}
    notebook.write_text(notebook.read_text().replace("01", "02", 1))
    assert [(d.file, d.field) for d in verify_run(run.dir).differences] == [("notebooks/01_data_pairing.ipynb", "(file)")]
    assert sum(1 for _ in open(run.dir / "pairs" / "bench-rmbench.jsonl")) == 798
    assert (run.dir / "figures" / "01_length_distributions.png").stat().st_size > 10_000


def test_chain_stops_at_the_failing_notebook_and_names_the_cell(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "same", "rejected": "same"}\n')
    overrides = {"data.sources": [{"name": str(bad)}]}
    with pytest.raises(ChainError, match=r"notebook 01_data_pairing failed at cell \d+ \(DataError: .*bad.jsonl: row 1"):
        run_chain("smoke", "chain-fail", overrides=overrides)


def test_chain_rejects_unknown_notebooks():
    result = CliRunner().invoke(app, ["run", "--profile", "smoke", "--run-name", "x", "--only", "99_nothing"])
    assert result.exit_code == 2 and "not in this profile's chain" in result.output


def test_the_chain_kernel_talks_over_socket_files_in_jupyters_runtime_folder(tmp_path, monkeypatch):
    """No TCP port; nothing written where the chain runs (papermill's cwd: the notebooks); no
    socket file left once the kernel has shut down."""
    import asyncio

    from traitlets import import_item

    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.chdir(tmp_path)
    manager = import_item(LOCAL_KERNEL_MANAGER)(kernel_name="python3")

    async def sockets_of_a_running_kernel() -> list[Path]:
        await manager.start_kernel()
        try:
            client = manager.client()
            client.start_channels()
            await client.wait_for_ready(timeout=60)
            client.stop_channels()
            sockets = sorted(Path(manager.ip).parent.glob(Path(manager.ip).name + "-*"))
            assert sockets and all(p.is_socket() for p in sockets), sockets
            return sockets
        finally:
            await manager.shutdown_kernel(now=True)

    sockets = asyncio.run(sockets_of_a_running_kernel())
    assert manager.transport == "ipc"
    assert len(sockets) == 5 and all(p.parent == runtime for p in sockets), sockets
    assert [p.name for p in tmp_path.iterdir()] == ["runtime"]
    assert not any(p.exists() for p in sockets)


@pytest.mark.slow
@pytest.mark.model
def test_the_ablation_chain_trains_the_controls_reads_both_readouts_and_verifies():
    """smoke-ablations end to end: verifiable pairs, PAR and its variants, the learning curve, both
    readouts, the primary comparison first in SUMMARY.md, and verify passing on the result."""
    from patarm_kit.report.verify import verify_run
    from patarm_kit.runs.files import read_json

    run = run_chain("smoke-ablations", "ablations")
    manifest = run.manifest()
    assert {"par", "par-shuffled", "par-format-only"} <= set(manifest["training"])
    assert manifest["training"]["par-shuffled"]["par_settings"]["shuffle_labels"] is True
    assert manifest["training"]["par-format-only"]["par_settings"]["mode"] == "format"
    assert manifest["data"]["verifiable-if"]["built_with"]["checker"]["package"] == "if-verifiable"
    assert [p.name for p in sorted(run.layout.par_curve.glob("*.json"))] == ["step-0000.json", "step-0001.json", "step-0002.json"]
    metrics = read_json(run.layout.eval_metrics("par-shuffled", "pairs:verifiable-if"))
    assert {"expected", "sampled_mean", "inputs_truncated"} <= metrics.keys()  # smoke-ablations sets eval.sampled_mean
    assert "sampled_mean" in read_json(run.layout.curve_metrics(2))
    summary = run.layout.summary.read_text()
    assert summary.index("## Primary comparison") < summary.index("## held-out verifiable-if")
    assert "Expected-score readout" in summary and "Sampled-mean readout" in summary
    assert verify_run(run.dir).ok


@pytest.mark.slow
@pytest.mark.model
def test_a_chain_killed_in_a_par_variant_resumes_where_it_stopped(tmp_path, kill_when_written):
    """smoke-ablations killed (the whole process group, kernel included) once its last PAR variant
    (the run's config keeps them in sorted order: format-only, then shuffled) has saved checkpoint 1:
    `--resume` re-executes notebook 03, reads the finished stages and the finished variant back
    (their records untouched), continues the last variant from its checkpoint, runs 04 and 05, and
    the run verifies."""
    import os
    import subprocess
    import sys

    from patarm_kit.config.loader import REPO_ROOT
    from patarm_kit.report.verify import verify_run
    from patarm_kit.runs.run import Run
    from patarm_kit.training.checkpoints import CHECKPOINT_COMPLETE

    results = tmp_path / "results"
    env = {**os.environ, "PATARM_RESULTS_DIR": str(results), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "patarm_kit.cli", "run", "--profile", "smoke-ablations", "--run-name", "killed"]
    marker = results / "killed" / "par-shuffled" / "checkpoints" / "checkpoint-1" / CHECKPOINT_COMPLETE
    first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # its own process group: the notebook kernel dies with it
    kill_when_written(first, marker, timeout=900, group=True)
    run = Run.open(results / "killed")
    before = run.manifest()
    assert before["stages"]["par-variants"]["status"] == "running" and "eval" not in before["stages"]
    finished = {name: before["stages"][name] for name in ("sft", "par", "learning-curve")}

    second = subprocess.run([*command, "--resume"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = run.manifest()
    assert {name: after["stages"][name] for name in finished} == finished  # read back, not made again
    assert after["training"]["par-format-only"] == before["training"]["par-format-only"]
    assert after["training"]["par-shuffled"]["resumed_from"].endswith("checkpoint-1")
    assert all(after["stages"][name]["status"] == "done" for name in ("par-variants", "bt", "eval", "figures"))
    executed = run.layout.notebook("03_par_training").read_text()  # the stages print into the notebook
    assert executed.count("recorded done: read back from its files (--resume)") == 3  # sft, par, learning-curve
    assert "variant format-only: recorded done, read back (--resume)" in executed
    report = verify_run(run.dir)
    assert report.ok, report.summary()


def test_the_notebook_files_are_in_run_order_and_old_names_still_resolve(tmp_path):
    readers = {"07_explore_a_run"}  # reads a finished run and runs no stage: a reader, not part of the chain
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")) == sorted([*NOTEBOOK_STAGES, *readers])
    assert not readers & set(NOTEBOOK_STAGES)
    assert list(NOTEBOOK_STAGES)[-1] == "06_figures"  # figures last: they draw every other stage's files
    for profile in sorted(PROFILE_DIR.glob("*.yaml")):
        chain = load_config(profile.stem).notebooks
        assert chain == sorted(chain), f"{profile.name}: notebooks out of their file order"
    # Runs made before the renumbering name their notebooks as they were
    assert notebook_path("05_figures") == NOTEBOOK_DIR / "06_figures.ipynb"
    assert notebook_path("06_downstream_rlhf") == NOTEBOOK_DIR / "05_downstream_rlhf.ipynb"


def test_a_run_made_before_the_renumbering_keeps_its_file_names(tmp_path):
    new, old = RunLayout(tmp_path / "new"), RunLayout(tmp_path / "old")
    for path in (old.figures_dir / "05_benchmark_bars.png", old.tables_dir / "05_benchmarks.csv",
                 old.figures_dir / "06_policy_rewards.png", old.root / "metrics" / "06_downstream.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("made before")
    assert old.figure("06_benchmark_bars").name == "05_benchmark_bars.png"
    assert old.figure_data("06_benchmark_bars").name == "05_benchmark_bars.csv"  # named as its figure
    assert old.table("06_benchmarks").name == "05_benchmarks.csv"
    assert old.figure("05_policy_rewards").name == "06_policy_rewards.png"
    assert old.downstream_summary.name == "06_downstream.json"
    assert new.figure("06_benchmark_bars").name == "06_benchmark_bars.png" and new.downstream_summary.name == "05_downstream.json"


def test_an_executed_notebook_keeps_final_text_bars_and_no_library_bars(monkeypatch, capsys):
    """A saved notebook keeps a widget bar at "0%" for good: under the chain the kit's own bars are text
    whose last frame says 100%, and the libraries' bars for sub-second steps are off in the kernel."""
    import os
    import subprocess
    import sys

    from patarm_kit.chain import KERNEL_ENVIRONMENT
    from patarm_kit.runs.notebooks import EXECUTING, progress

    monkeypatch.setenv(EXECUTING, "03_par_training")
    assert list(progress(range(3), desc="sft targets", unit="example")) == [0, 1, 2]
    shown = capsys.readouterr().out
    assert shown.rsplit("\r", 1)[-1].startswith("sft targets: 100%|") and "3/3" in shown
    probe = ("import datasets, huggingface_hub.utils as hub; from transformers.utils import logging; "
             "print(datasets.is_progress_bar_enabled(), hub.are_progress_bars_disabled(), logging.is_progress_bar_enabled())")
    kernel = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **KERNEL_ENVIRONMENT},
                            capture_output=True, text=True, check=True)
    assert kernel.stdout.split() == ["False", "True", "False"], kernel.stdout + kernel.stderr
    warn = "import warnings; warnings.warn('`torch.distributed.reduce_op` is deprecated, please use ReduceOp', FutureWarning)"
    quiet = subprocess.run([sys.executable, "-c", warn], env={**os.environ, **KERNEL_ENVIRONMENT}, capture_output=True, text=True)
    loud = subprocess.run([sys.executable, "-c", warn], env={**os.environ, "PYTHONWARNINGS": ""}, capture_output=True, text=True)
    assert quiet.stderr == "" and "FutureWarning" in loud.stderr
