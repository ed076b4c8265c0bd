"""`patarm-kit export RUN --format rewardbench`: each judge's results in the RewardBench leaderboard's layout."""

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.config.loader import load_config
from patarm_kit.evaluation.evaluate import evaluate
from patarm_kit.runs.run import Run
from test_rewardbench2 import MIRROR

runner = CliRunner()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_export_writes_the_leaderboard_results_and_scores_layout(small_run, tmp_path):
    before = snapshot(small_run)
    result = runner.invoke(app, ["export", str(small_run), "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    assert snapshot(small_run) == before  # the run is only read
    metrics = json.loads((small_run / "eval" / "length__rewardbench.json").read_text())
    model = f"{Run.open(small_run).config().model.name} ({small_run.name}: length)"  # the backbone, and the judge in the run
    files = sorted(p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*.json"))
    assert len(files) == 4 and all(f.startswith("rewardbench/eval-set") for f in files)  # length and random, results and scores
    results = json.loads(next((tmp_path / "export" / "rewardbench" / "eval-set").glob("*length*.json")).read_text())
    assert results == {"model": model, "model_type": "Baseline (length)", "chat_template": None,
                       **{name: facts["acc"] for name, facts in metrics["subsets"].items()}}
    scores = json.loads(next((tmp_path / "export" / "rewardbench" / "eval-set-scores").glob("*length*.json")).read_text())
    assert scores["id"] == [i["pair_id"] for i in metrics["items"]] and scores["results"] == [i["outcome"] for i in metrics["items"]]
    assert len(scores["subset"]) == len(scores["id"]) and scores["model_type"] == "Baseline (length)"


def test_export_writes_rewardbench2_beside_v1(tmp_path):
    (tmp_path / "data" / "reward-bench-2").mkdir(parents=True)
    (tmp_path / "data" / "reward-bench-2" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MIRROR))
    config = load_config("smoke", {"data.data_dir": str(tmp_path / "data"), "eval.n_boot": 50})
    run = Run.create("rb2", config, results_dir=tmp_path / "runs")
    metrics = evaluate(config, "length", "rewardbench2", run.layout.eval_metrics("length", "rewardbench2"), None)
    result = runner.invoke(app, ["export", str(run.dir), "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    (results_file,) = (tmp_path / "export" / "rewardbench2" / "eval-set").glob("*.json")
    results = json.loads(results_file.read_text())
    assert {k: results[k] for k in metrics["subsets"]} == {k: f["score"] for k, f in metrics["subsets"].items()}
    assert set(results) == {"model", "model_type", "chat_template", "Factuality", "Focus", "Math", "Precise IF", "Safety", "Ties"}


def test_export_refuses_before_writing(small_run, tmp_path):
    inside = runner.invoke(app, ["export", str(small_run), "--out", str(small_run / "export")])
    assert inside.exit_code == 2 and "inside the run" in inside.output and not (small_run / "export").exists()
    unknown = runner.invoke(app, ["export", str(small_run), "--out", str(tmp_path / "x"), "--format", "mteb"])
    assert unknown.exit_code == 2 and "--format 'mteb'" in unknown.output and not (tmp_path / "x").exists()
    bare = Run.create("bare", load_config("smoke"), results_dir=tmp_path / "runs").dir  # no evaluation yet
    none = runner.invoke(app, ["export", str(bare), "--out", str(tmp_path / "y")])
    assert none.exit_code == 2 and "no RewardBench or RewardBench 2 evaluation to export" in none.output
    damaged = Path(shutil.copytree(small_run, tmp_path / "damaged"))
    (damaged / "eval" / "length__rewardbench.json").unlink()  # recorded by its eval stage: an incomplete run
    refused = runner.invoke(app, ["export", str(damaged), "--out", str(tmp_path / "z")])
    assert refused.exit_code == 2 and "length__rewardbench.json: recorded by the eval stage but missing" in refused.output
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
