"""Runs protect their results: names stay inside the results folder, stages record themselves,
and nothing finished is replaced without being asked."""

from __future__ import annotations

import json
import shutil

import pytest

from patarm_kit import stages
from patarm_kit.chain import ChainError, notebook_path, run_chain, select_notebooks
from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.runs import run as results
from patarm_kit.runs.files import RunError, sha256_of
from patarm_kit.runs.run import OutputExistsError, Run, validate_run_name


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b", "/abs/path", "a\\b", "-flag", ".hidden", "x/../y", "a..b"])
def test_run_names_that_would_leave_the_results_folder_are_refused(name, tmp_path):
    with pytest.raises(RunError, match="run name"):
        Run.create(name, load_config("smoke"), results_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["cpu-20261128", "reference-cpu", "run_1", "a.b+c=d"])
def test_ordinary_run_names_are_accepted(name):
    assert validate_run_name(name) == name


def test_resume_needs_an_existing_run(tmp_path):
    with pytest.raises(RunError, match="no run to resume"):
        Run.create("missing", load_config("smoke"), results_dir=tmp_path, resume=True, must_exist=True)
    assert not (tmp_path / "missing").exists()


def test_a_run_is_not_continued_with_another_config(tmp_path):
    Run.create("r", load_config("smoke"), results_dir=tmp_path)
    before = (tmp_path / "r" / "manifest.json").read_bytes()
    with pytest.raises(RunError, match="another config.*seed"):
        Run.create("r", load_config("smoke", {"seed": 7}), results_dir=tmp_path, resume=True)
    assert (tmp_path / "r" / "manifest.json").read_bytes() == before


def test_a_half_written_manifest_is_one_clear_error(tmp_path):
    folder = tmp_path / "torn"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"config": {"seed": 0')
    with pytest.raises(RunError, match="manifest.json: unreadable manifest"):
        Run.open(folder)


def test_a_stage_records_inputs_outputs_and_facts(tmp_path):
    config = load_config("smoke")
    run = Run.create("r", config, results_dir=tmp_path)
    source = run.layout.pairs("train")
    source.parent.mkdir(parents=True)
    source.write_text('{"id": 1}\n')
    out = run.layout.preview_metrics
    with run.stage("preview", config, inputs=[source], outputs=[out]) as record:
        out.parent.mkdir(parents=True)
        out.write_text("{}\n")
        record.facts["judgments"] = 3
    entry = run.manifest()["stages"]["preview"]
    assert entry["status"] == "done" and entry["facts"] == {"judgments": 3}
    assert entry["inputs"] == {"pairs/train.jsonl": sha256_of(source)}
    assert entry["outputs"] == {"metrics/02_base_judge.json": sha256_of(out)}
    assert entry["config_fingerprint"] == config.fingerprint()


def test_a_finished_output_is_not_replaced_unless_forced(tmp_path):
    config = load_config("smoke")
    run = Run.create("r", config, results_dir=tmp_path)
    out = run.layout.preview_metrics
    out.parent.mkdir(parents=True)
    out.write_text("finished\n")
    with pytest.raises(OutputExistsError, match="02_base_judge.json already exists.*--force"):
        with run.stage("preview", config, outputs=[out]):
            pytest.fail("the stage body must not run")
    assert out.read_text() == "finished\n"
    assert "preview" not in run.manifest()["stages"]
    with run.stage("preview", config, outputs=[out], force=True):
        assert not out.exists()  # forced: the old output is gone before the new one is written
        out.write_text("new\n")
    assert run.manifest()["stages"]["preview"]["status"] == "done"


def test_a_failing_stage_is_recorded_as_failed(tmp_path):
    config = load_config("smoke")
    run = Run.create("r", config, results_dir=tmp_path)
    with pytest.raises(ValueError):
        with run.stage("preview", config):
            raise ValueError("boom")
    entry = run.manifest()["stages"]["preview"]
    assert entry["status"] == "failed" and entry["error"] == "ValueError: boom"


def test_a_stage_refuses_a_config_other_than_the_runs(tmp_path):
    run = Run.create("r", load_config("smoke"), results_dir=tmp_path)
    with pytest.raises(RunError, match="another config"):
        with run.stage("preview", load_config("smoke", {"seed": 3})):
            pytest.fail("the stage body must not run")


def test_profiles_may_only_name_notebooks_in_the_notebooks_folder(tmp_path):
    for name in ("../README", "/etc/passwd", "sub/01_data_pairing", ".hidden"):
        with pytest.raises(ChainError, match="not a notebook in"):
            notebook_path(name)
    config = load_config("smoke", {"notebooks": ["01_data_pairing", "../tests/evil"]})
    with pytest.raises(ChainError, match="evil"):
        select_notebooks(config, None, None)


def test_the_chain_refuses_a_finished_notebook_before_running_anything(tmp_path, monkeypatch):

    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    run = Run.create("done", load_config("smoke"), results_dir=tmp_path)
    executed = run.layout.notebook("01_data_pairing")
    executed.parent.mkdir(parents=True)
    executed.write_text('{"cells": []}')
    run.update("stages", "data", {"status": "done"})
    with pytest.raises(OutputExistsError, match="01_data_pairing.*--force"):
        run_chain("smoke", "done", only=["01_data_pairing"])
    assert executed.read_text() == '{"cells": []}'
    with pytest.raises(RunError, match="another config"):  # --set seed=7 on a finished run: refused first
        run_chain("smoke", "done", overrides={"seed": "7"}, only=["01_data_pairing"])
    assert executed.read_text() == '{"cells": []}'
    assert json.loads(run.layout.manifest.read_text())["stages"] == {"data": {"status": "done"}}


def test_eval_refuses_to_replace_an_existing_evaluation_unless_forced(tmp_path):
    from typer.testing import CliRunner

    from patarm_kit.cli import app

    out = tmp_path / "eval" / "length__rewardbench.json"
    args = ["eval", "--judge", "length", "--bench", "rewardbench", "--profile", "smoke", "--limit", "2", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    judgments = out.with_suffix(".judgments.jsonl")
    before = {path: path.read_bytes() for path in (out, judgments)}
    judgments.write_text("edited by hand\n")
    refused = CliRunner().invoke(app, [*args[:-2], "--limit", "3", "--out", str(out)])
    assert refused.exit_code == 2 and "already exists" in refused.output and "--force" in refused.output
    assert out.read_bytes() == before[out] and judgments.read_text() == "edited by hand\n"
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    assert judgments.read_bytes() == before[judgments]


def test_a_stage_command_works_on_an_existing_run_with_its_own_config(tmp_path):
    """`train-bt --run-dir R` without --profile uses R's config; a --set that would change it is refused."""
    from typer.testing import CliRunner

    from patarm_kit.cli import app

    run = Run.create("r", load_config("smoke", {"bt.max_steps": 1}), results_dir=tmp_path)
    refused = CliRunner().invoke(app, ["train-bt", "--run-dir", str(run.dir), "--set", "bt.max_steps=2"])
    assert refused.exit_code == 2 and "another config (differs in bt.max_steps)" in refused.output
    missing = CliRunner().invoke(app, ["train-bt", "--run-dir", str(run.dir)])  # the run's config; no pairs yet
    assert missing.exit_code == 2 and "pairs/train.jsonl" in missing.output, missing.output
    assert run.manifest()["stages"] == {}


def test_a_resumed_evaluation_judges_only_what_was_not_finished(run_copy, monkeypatch):
    """A killed eval stage (status running, one metrics file never written, a stray judgments file
    beside it): --resume judges that one evaluation again, reads the others back, and records the
    stage done with the same numbers; a second --resume reads the whole stage back."""
    from patarm_kit.evaluation import evaluate as evaluation
    from patarm_kit.runs.files import read_json
    from patarm_kit.runs.layout import RunLayout

    run, layout = Run.open(run_copy), RunLayout(run_copy)
    done = read_json(layout.benchmarks_summary)
    lost = layout.eval_metrics("random", "rewardbench")
    kept = {path: path.read_bytes() for path in layout.eval_dir.glob("*") if path != lost}
    lost.unlink()  # killed after the judgments were written, before the metrics file
    run.update("stages", "eval", {**run.manifest()["stages"]["eval"], "status": "running"})
    judged = []
    real = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda config, judge, bench, out, *a, **k: judged.append(out) or real(
        config, judge, bench, out, *a, **k))

    with pytest.raises(OutputExistsError):
        stages.evaluate(run)  # without --resume a half-finished stage still refuses
    resumed = stages.evaluate(run, resume=True)
    assert judged == [lost] and run.stage_done("eval")
    assert all(path.read_bytes() == data for path, data in kept.items() if path != RunLayout.judgments_of(lost))
    assert read_json(layout.benchmarks_summary) == done and resumed.table == done["table"]

    record = run.manifest()["stages"]["eval"]
    again = stages.evaluate(run, resume=True)  # recorded done: nothing judged, the stage record kept
    assert judged == [lost] and again.table == done["table"] and again.paired == done["paired"]
    assert run.manifest()["stages"]["eval"] == record


# ---------------------------------------------------------------- a finished stage 01 on resume


def finished_data_stage(name: str) -> tuple[Run, dict]:
    """A run whose stage 01 today's kit made (smoke profile), its pair files then left out as a committed run leaves them."""
    run = Run.create(name, load_config("smoke"))
    stages.data(run)
    shutil.rmtree(run.layout.pairs_dir)
    return run, run.manifest()["stages"]["data"]


def test_a_resumed_data_stage_brings_back_the_left_out_pair_files_as_recorded():
    """Resume makes stage 01's files again in a scratch folder and checks each against the sha256 the run
    recorded; the missing ones are put in place and the stage's record is not touched."""
    run, before = finished_data_stage("left-out")
    killed = run.dir / ".rebuilt-killed" / "pairs"  # what a restore killed midway leaves behind
    killed.mkdir(parents=True)
    made = stages.data(run, resume=True)
    assert run.manifest()["stages"]["data"] == before
    assert sorted(made.written) == sorted(k.removeprefix("pairs/") for k in before["outputs"] if k.startswith("pairs/"))
    assert all(sha256_of(path) == before["outputs"][f"pairs/{name}"] for name, path in made.written.items())
    assert not list(run.dir.glob(".rebuilt-*")), "the scratch folder is gone, and an earlier one left by a kill"


def test_a_run_whose_pairs_todays_kit_makes_otherwise_is_not_resumed():
    """reference-cpu was made before stage 01 decontaminated against the benches: today's kit writes
    other pair files, so resuming it would mix two kits; it refuses and changes nothing."""
    shutil.copytree(REPO_ROOT / "results" / "reference-cpu", results.RESULTS_DIR / "reference-cpu")
    run = Run.open(results.RESULTS_DIR / "reference-cpu")
    manifest = run.manifest_path.read_bytes()
    with pytest.raises(RunError, match="stage data makes pairs/.* other than it recorded .*nothing was changed"):
        stages.data(run, resume=True)
    assert run.manifest_path.read_bytes() == manifest and not run.layout.pairs_dir.exists()


def test_a_tampered_record_of_stage_01_is_caught_on_resume():
    run, _ = finished_data_stage("tampered")
    manifest = run.manifest()
    manifest["stages"]["data"]["outputs"]["pairs/dev.jsonl"] = "0" * 64
    run.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="pairs/dev.jsonl other than it recorded"):
        stages.data(run, resume=True)
    assert not run.layout.pairs_dir.exists()
