"""The README's recipes "Your own data" and "Your own model", run on files written here."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from typer.testing import CliRunner

from patarm_kit import stages
from patarm_kit.cli import app
from patarm_kit.config.loader import PROFILE_DIR, REPO_ROOT, load_config
from patarm_kit.data.loading import load_source
from patarm_kit.data.pairs import read_pairs
from patarm_kit.data.splits import count_pairs
from patarm_kit.runs.files import sha256_of
from patarm_kit.runs.run import Run

EXAMPLE_PROFILE = PROFILE_DIR / "example-own-data.yaml"
EXAMPLE_FILE = "data/examples/own-pairs.jsonl"  # as the profile names it: from the repository root


def readme_block(heading: str, language: str) -> str:
    """The first ```language block under `heading` in README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def write_pairs(path, n: int):
    """n small pairs of our own: a short right answer against a wrong one."""
    rows = [{"id": f"q{i}", "prompt": f"What is {i} plus {i + 1}? Answer with the number.",
             "chosen": str(2 * i + 1), "rejected": str(2 * i + 2), "task": "math" if i % 2 else "instruction"}
            for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_the_readme_shows_the_shipped_own_data_profile_and_its_example_loads_from_anywhere(tmp_path, monkeypatch):
    assert yaml.safe_load(readme_block("### Your own data", "yaml")) == yaml.safe_load(EXAMPLE_PROFILE.read_text())
    config = load_config("example-own-data")
    assert [(s.name, s.role) for s in config.data.sources] == [(EXAMPLE_FILE, "train")]
    assert config.eval.benches == [f"pairs:{EXAMPLE_FILE}"] and config.eval.limit_for(f"pairs:{EXAMPLE_FILE}") is None
    monkeypatch.chdir(tmp_path)  # the chain runs notebooks in notebooks/: a profile's relative path is the repository's
    pairs, report = load_source(config.data.sources[0], fractions=config.data.split_fractions)
    assert list(report.files) == [str(REPO_ROOT / EXAMPLE_FILE)]  # absolute: verify finds it from anywhere
    splits = count_pairs(pairs, config.data.split_fractions)["split"]
    assert len(pairs) == 24 and min(splits[s] for s in ("train", "dev", "test")) >= 1, splits


def test_own_data_recipe_trains_on_its_train_split_and_benches_its_test_split(tmp_path):
    started = time.monotonic()
    mine = write_pairs(tmp_path / "mine.jsonl", 40)
    profile = tmp_path / "my-data.yaml"  # the README's recipe, with this file's path in its four places
    profile.write_text(readme_block("### Your own data", "yaml").replace(EXAMPLE_FILE, str(mine)))
    bench = f"pairs:{mine}"
    config = load_config(str(profile), {"eval.judges": ["length", "random"], "eval.paired": [["length", "random"]],
                                        "eval.n_boot": 50})
    assert config.profile == "my-data" and config.eval.primary["bench"] == bench

    run = Run.create("own-data", config, results_dir=tmp_path / "runs")
    stages.data(run)  # stage 01: validated, split by prompt, the bench's test split written
    layout, fractions = run.layout, config.data.split_fractions
    split = count_pairs(read_pairs(layout.pairs("train")) + read_pairs(layout.pairs("dev")) + read_pairs(layout.pairs("test")),
                        fractions)["split"]
    held_out = read_pairs(layout.bench_pairs(bench))
    assert sum(split.values()) == 40 and held_out and len(held_out) == split["test"]
    assert {p.id for p in held_out} == {p.id for p in read_pairs(layout.pairs("test"))}
    assert run.manifest()["data"][str(mine)]["files"] == {str(mine.resolve()): sha256_of(mine)}  # what verify re-checks

    result = stages.evaluate(run)  # the length and random judges: no model
    metrics = json.loads(layout.eval_metrics("length", bench).read_text())
    assert metrics["n"] == len(held_out) and metrics["bench"] == bench
    assert len(result.results) == 2

    # The recipe's model-free check: a file no source names is judged whole.
    out = tmp_path / "length.json"
    done = CliRunner().invoke(app, ["eval", "--judge", "length", "--bench", bench, "--limit", "all", "--profile", "smoke",
                                    "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads(out.read_text())["n"] == 40
    print(f"own data: {time.monotonic() - started:.1f} s")


@pytest.mark.model
def test_own_model_recipe_judges_with_a_local_model_folder_on_transformers(tmp_path):
    from patarm_kit.config.schema import ModelConfig
    from patarm_kit.judging.models import materialize_bundled

    started = time.monotonic()
    folder = materialize_bundled("smollm2-135m-instruct", ModelConfig().cache_dir)  # the bundled SmolLM2 as a plain folder
    assert (folder / "model.safetensors").is_file() and folder.is_absolute()
    mine = write_pairs(tmp_path / "mine.jsonl", 3)
    out = tmp_path / "check.json"
    done = CliRunner().invoke(app, [
        "eval", "--judge", "base", "--bench", f"pairs:{mine}", "--limit", "1", "--profile", "smoke",
        "--set", f"model.name={folder}", "--set", "judge.engine=hf", "--set", "eval.sampling.max_new_tokens=8",
        "--out", str(out)])
    assert done.exit_code == 0, done.output
    metrics = json.loads(out.read_text())
    assert metrics["config"]["model"]["name"] == str(folder)
    assert metrics["engine"]["engine"] == "hf" and metrics["n"] == 1
    judgments = [json.loads(line) for line in (tmp_path / "check.judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 2  # both sides of the one pair, 8 tokens each
    print(f"own model: {time.monotonic() - started:.1f} s")
