"""Safe by default, one test per class of the issue "Safe by default on the newer commands": a careless
or unlucky user gets one `error:` line (exit 2) or a plain "nothing to do", and the run is left
byte-identical. The second class (two writers, one run) is tests/test_run_lock.py; the fifth's
summary and compare cases are in tests/test_summary.py."""

import json

import pytest
from typer.testing import CliRunner

from patarm_kit import stages
from patarm_kit.cli import app
from patarm_kit.report.verify import verify_run
from patarm_kit.runs.lock import lock_path, writer_lock
from patarm_kit.runs.run import Run

runner = CliRunner()


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(result, *words):
    """One `error:` line naming what is wrong, exit code 2."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- 1. a blank or odd path is not a place to write


@pytest.mark.parametrize("command", [
    ["eval", "--judge", "length", "--bench", "rmbench", "--out", ""],
    ["eval", "--bench", "ifeval", "--responses", "r.jsonl", "--out", " "],
    ["export", "RUN", "--out", ""],
    ["sft", "--run-dir", ""],
    ["downstream", "--run-dir", " "],
])
def test_a_blank_path_is_refused_and_the_working_directory_gets_nothing(command, small_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.jsonl").write_text('{"key": 1000, "response": "hi"}\n')
    before = snapshot(tmp_path)
    refused(runner.invoke(app, [str(small_run) if word == "RUN" else word for word in command]), "is empty")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [
    ["eval", "--judge", "length", "--bench", "rmbench", "--out", "RUN/eval/length-rmbench.json", "--force"],
    ["export", "RUN", "--out", "RUN/tables"],
    ["export", "RUN", "--out", "RUN"],
])
def test_a_command_outside_the_chain_never_writes_into_a_run(command, run_copy):
    before = snapshot(run_copy)
    refused(runner.invoke(app, [word.replace("RUN", str(run_copy)) for word in command]), "inside the run", "one writer each")
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------- 3. preconditions first


def test_a_switched_off_stage_says_nothing_to_do_and_writes_nothing(run_copy, tmp_path):
    before = snapshot(run_copy)
    result = runner.invoke(app, ["train-bt", "--run-dir", str(run_copy)])  # this run judges no BT
    assert result.exit_code == 0 and result.output.startswith("nothing to do: bt is not one of eval.judges in run run;")
    assert snapshot(run_copy) == before and not lock_path(run_copy).exists()

    new_run = tmp_path / "results" / "no-policies"
    result = runner.invoke(app, ["policies", "--run-dir", str(new_run), "--profile", "smoke", "--set", "policy.rewarders=[]"])
    assert result.exit_code == 0 and "nothing to do: policy.rewarders is empty" in result.output
    assert not new_run.exists() and not lock_path(new_run).exists()  # not even a run is made for it


def test_a_switched_off_stage_function_records_nothing(run_copy, capsys):
    run = Run.open(run_copy)
    before = snapshot(run_copy)
    assert stages.bt(run) is None
    assert "[bt] nothing to do: bt is not one of eval.judges" in capsys.readouterr().out
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("command, missing", [
    ("downstream", "policy/checker/adapter"),  # trained policies
    ("policies", "par/adapter"),  # the judge that rewards a policy
    ("train", "sft/adapter"),  # PAR's start
])
def test_a_missing_declared_input_is_refused_before_any_model_loads(command, missing, run_copy, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    for target in ("patarm_kit.judging.models.load_model", "patarm_kit.stages.evaluate_policy",
                   "patarm_kit.stages.train_policy", "patarm_kit.stages.train_par"):
        monkeypatch.setattr(target, no_model)
    before = snapshot(run_copy)
    line = refused(runner.invoke(app, [command, "--run-dir", str(run_copy)]), missing, "is not there")
    assert line.startswith(f"error: stage {'par' if command == 'train' else command} of run run:")
    assert snapshot(run_copy) == before  # no "running" or "failed" record either


def test_a_stage_left_running_by_a_killed_process_is_marked_interrupted_and_verify_says_so(run_copy, capsys):
    run = Run.open(run_copy)
    run.update("stages", "bt", {"status": "running", "started": "2026-12-06T00:00:00+00:00"})
    assert any("stages.bt" in str(d) and "status running" in str(d) for d in verify_run(run_copy).differences)
    with writer_lock(run_copy):  # the next writer: no one else can be running
        pass
    assert "stages.bt was left running by a stopped process; marked interrupted" in capsys.readouterr().err
    assert run.manifest()["stages"]["bt"]["status"] == "interrupted"
    assert any("stages.bt" in str(d) and "status interrupted" in str(d) for d in verify_run(run_copy).differences)


def test_a_notebook_with_nothing_to_do_is_refused_before_the_chain_starts():
    result = runner.invoke(app, ["run", "--profile", "smoke", "--run-name", "nothing", "--only", "05_downstream_rlhf",
                                 "--set", "policy.rewarders=[]"])
    refused(result, "notebook 05_downstream_rlhf has nothing to do", "policy.rewarders is empty")


# ---------------------------------------------------------------- 4. never write over an input


def test_ifeval_out_equal_to_the_responses_file_is_refused_even_with_force(tmp_path):
    responses = tmp_path / "responses.jsonl"
    responses.write_text('{"key": 1000, "response": "hi"}\n')
    before = responses.read_bytes()
    refused(runner.invoke(app, ["eval", "--bench", "ifeval", "--responses", str(responses), "--out", str(responses),
                                "--force"]), "this command reads", str(responses))
    derived = tmp_path / "scored.judgments.jsonl"  # the verdicts file beside --out scored.json
    derived.write_bytes(before)
    refused(runner.invoke(app, ["eval", "--bench", "ifeval", "--responses", str(derived), "--out", str(tmp_path / "scored.json"),
                                "--force"]), "this command reads", str(derived))
    assert responses.read_bytes() == before and derived.read_bytes() == before
    assert not (tmp_path / "scored.json").exists()


def test_eval_out_equal_to_the_benchs_own_pair_file_is_refused(tmp_path):
    pairs = tmp_path / "mine.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"}) for i in range(60)) + "\n")
    before = pairs.read_bytes()
    refused(runner.invoke(app, ["eval", "--judge", "length", "--bench", f"pairs:{pairs}", "--limit", "all", "--out", str(pairs),
                                "--force"]),
            "this command reads", str(pairs))
    assert pairs.read_bytes() == before


def test_a_stage_refused_on_a_new_run_folder_leaves_no_run_behind(tmp_path):
    new_run = tmp_path / "results" / "fresh"
    refused(runner.invoke(app, ["downstream", "--run-dir", str(new_run), "--profile", "smoke"]),
            "stage downstream of run fresh", "is not there")
    assert not new_run.exists()
