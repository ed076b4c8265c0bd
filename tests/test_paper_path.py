"""The paper's path on this CPU (`make test-paper`, and in `make test-all`).

The `qwen3-8b` profile's own settings, trained as the README's GPU block trains them (its run made
first by `patarm-kit run ... --only 01_data_pairing`, then `accelerate launch` with the shipped
configs), with only the model, the data and the sizes swapped for stand-ins made here: a random
2-layer Qwen3 (`judging.models.make_stand_in_qwen3`) and a small pairs file. Two processes over
gloo, DeepSpeed ZeRO-2 and ZeRO-3 included (DeepSpeed's CPU accelerator; `make test-paper` installs
it with requirements-paper.txt).

Two of the stand-in settings keep the comparison meaningful. The random model never writes a
score, so PAR's reward is 0 for every rollout: TRL's entropy bonus (`par.entropy_coef`) gives every
step a gradient, and the adapters move. Rollouts are sampled by transformers, so that every launch
config draws the same rollouts and their adapters can be compared tensor by tensor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from patarm_kit.config.loader import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.paper]

TOPICS = ["bake bread", "fix a bike chain", "learn chess", "plant tomatoes", "write a cover letter", "brew tea"]


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, Path]:
    """The stand-in model and training pairs, and a results folder for the module's runs."""
    from patarm_kit.judging.models import make_stand_in_qwen3

    root = tmp_path_factory.mktemp("paper")
    model, _ = make_stand_in_qwen3(root / "qwen3-stand-in", seed=0)
    pairs = root / "pairs.jsonl"
    rows = [{"id": f"toy-{i}", "prompt": f"How do I {topic}? (question {i})",
             "chosen": f"To {topic}, start small and practise a little every day.", "rejected": f"I cannot help with {topic}."}
            for i, topic in enumerate(TOPICS * 4)]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {"model": model, "pairs": pairs, "results": root / "results"}


def environment(stand_ins: dict[str, Path]) -> dict[str, str]:
    return {**os.environ, "PATARM_RESULTS_DIR": str(stand_ins["results"]), "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}


def stand_in_settings(stand_ins: dict[str, Path], max_steps: int) -> list[str]:
    """`--set` keys: the model and data stand-ins, and sizes a CPU runs in seconds."""
    settings = {
        "model.name": str(stand_ins["model"]),
        "data.sources": f"[{{name: {stand_ins['pairs']}, role: train}}]",
        "data.split_fractions": "{train: 0.5, dev: 0.25, test: 0.25}",
        "eval.benches": f"['pairs:{stand_ins['pairs']}']", "eval.votes_curve_bench": f"pairs:{stand_ins['pairs']}",
        "sft.enabled": "false",  # the paper's SFT file is the hub's; PAR starts from a fresh adapter here
        "par.n_pairs": "4", "par.max_steps": str(max_steps), "par.pairs_per_step": "2", "par.save_steps": "1",
        "par.rollouts.n": "2", "par.rollouts.max_new_tokens": "16", "par.gradient_accumulation_steps": "1",
        "par.use_vllm": "false", "par.entropy_coef": "0.05",
        "par.trainable_layers": "1",  # LoRA in the top layer only: ZeRO-3 once saved adapters without the frozen one
        "judge.kv_cache_gib": "1",
    }
    return [argument for key, value in settings.items() for argument in ("--set", f"{key}={value}")]


def new_run(stand_ins: dict[str, Path], name: str, max_steps: int = 2) -> Path:
    """The README's first line: the run made by its data stage, in one process."""
    command = [sys.executable, "-m", "patarm_kit.cli", "run", "--profile", "qwen3-8b", "--run-name", name,
               "--only", "01_data_pairing", *stand_in_settings(stand_ins, max_steps)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=environment(stand_ins), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return stand_ins["results"] / name


def launch(stand_ins: dict[str, Path], accelerate_config: str, *arguments: str, **popen: object) -> subprocess.Popen:
    """`accelerate launch --config_file configs/accelerate/<config>.yaml --num_processes 2 -m patarm_kit.cli ...`"""
    from test_train import free_port

    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO_ROOT / "configs" / "accelerate" / f"{accelerate_config}.yaml"), "--num_processes", "2",
               "--main_process_port", str(free_port()), "-m", "patarm_kit.cli", *arguments]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=environment(stand_ins), text=True, **popen)


def train(stand_ins: dict[str, Path], accelerate_config: str, run_dir: Path, *options: str) -> None:
    process = launch(stand_ins, accelerate_config, "train", "--run-dir", str(run_dir), *options,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stdout[-2000:] + stderr[-4000:]


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def assert_same_adapter(got: dict, expected: dict, what: str) -> None:
    """Every tensor present, equal within bf16 rounding (the ZeRO stages keep bf16 weights and save them)."""
    import torch

    assert sorted(got) == sorted(expected), f"{what}: tensors missing {sorted(set(expected) - set(got))[:4]}"
    for name in expected:
        assert torch.allclose(got[name].float(), expected[name].float(), rtol=2 ** -8, atol=1e-7), f"{what}: {name}"


@pytest.fixture(scope="module")
def plain_run(stand_ins) -> Path:
    """Two processes, data parallel (configs/accelerate/ddp.yaml), as the README trains 8B."""
    run_dir = new_run(stand_ins, "ddp")
    train(stand_ins, "ddp", run_dir)
    return run_dir


@pytest.mark.parametrize("stage", ["deepspeed_zero2", "deepspeed_zero3"])
def test_zero_stages_save_the_adapter_a_plain_multi_process_run_saves(stand_ins, plain_run, stage):
    run_dir = new_run(stand_ins, stage)
    train(stand_ins, stage, run_dir)
    expected = adapter_tensors(plain_run / "par" / "adapter")
    assert len(expected) == 16, "q, k, v and o, A and B, in both layers: frozen ones included"
    assert any(t.abs().max() > 0 for name, t in expected.items() if ".layers.1." in name and "lora_B" in name), \
        "the trained layer moved"
    assert_same_adapter(adapter_tensors(run_dir / "par" / "adapter"), expected, stage)
    for step in (1, 2):  # every checkpoint, which the learning curve loads as a judge
        folder = f"par/checkpoints/checkpoint-{step}"
        assert_same_adapter(adapter_tensors(run_dir / folder), adapter_tensors(plain_run / folder), f"{stage} {folder}")
    record = json.loads((run_dir / "manifest.json").read_text())["training"]["par"]
    assert record["num_processes"] == 2 and record["status"] == "done"


def kill_the_job(run_dir: Path) -> int:
    """SIGKILL every process of a launch on `run_dir`: the launcher and its ranks (torchrun starts
    each rank in a session of its own, so killing the launcher's group would leave them running)."""
    import psutil

    job = [p for p in psutil.process_iter(["cmdline"]) if str(run_dir) in " ".join(p.info["cmdline"] or [])]
    for process in job:
        process.kill()
    psutil.wait_procs(job, timeout=30)
    return len(job)


def test_a_zero3_training_killed_after_a_checkpoint_resumes_to_the_same_adapter(stand_ins):
    import time

    whole = new_run(stand_ins, "zero3-whole", max_steps=4)
    train(stand_ins, "deepspeed_zero3", whole)
    killed = new_run(stand_ins, "zero3-killed", max_steps=4)
    process = launch(stand_ins, "deepspeed_zero3", "train", "--run-dir", str(killed),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker, deadline = killed / "par" / "checkpoints" / "checkpoint-1" / "checkpoint_complete.json", time.monotonic() + 600
    while not marker.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kill_the_job(killed) >= 3, "the launcher and its two ranks"
    process.wait()
    assert marker.is_file() and not (killed / "par" / "adapter").exists(), "killed after a checkpoint, before the end"
    train(stand_ins, "deepspeed_zero3", killed, "--resume")
    assert_same_adapter(adapter_tensors(killed / "par" / "adapter"), adapter_tensors(whole / "par" / "adapter"),
                        "resumed from a ZeRO-3 checkpoint")
    steps = [json.loads(line)["step"] for line in (killed / "par" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 4
