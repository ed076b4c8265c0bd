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
    assert stdout.count(" steps; last step: reward") == 1, f"the closing line, once for the launch:\n{stdout[-2000:]}"


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


def test_deepspeed_on_this_cpu_says_nothing_into_the_kits_output():
    """DeepSpeed logs "Setting accelerator to CPU ..." on stdout at import where it finds no GPU (a notebook
    cell would show it); the kit drops that one line, and DeepSpeed still takes its CPU accelerator."""
    code = "import {}deepspeed; from deepspeed.accelerator import get_accelerator; print(get_accelerator()._name)"
    env = {key: value for key, value in os.environ.items() if key != "DS_ACCELERATOR"}  # detected, as a user's shell has it
    alone, with_kit = (subprocess.run([sys.executable, "-c", code.format(first)], capture_output=True, text=True,
                                      env=env, check=True) for first in ("", "patarm_kit, "))
    assert "Setting accelerator to CPU" in alone.stdout, "DeepSpeed no longer says it: drop the filter in patarm_kit/__init__"
    assert with_kit.stdout == "cpu\n" and "Setting accelerator" not in with_kit.stderr


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


# ---------------------------------------------------------------- the README's GPU block, end to end

STAND_IN_HUB = Path(__file__).parent / "stand_in_hub"
README_BLOCK = "## The paper's scale on GPUs"


def readme_gpu_commands() -> list[str]:
    """The command lines of the README's GPU block, continuation lines joined, comments left out."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text[text.index(README_BLOCK):]
    block = block[block.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    joined = block.replace("\\\n", " ")
    lines = [line.split(" # ")[0] for line in joined.splitlines() if not line.lstrip().startswith("#")]  # comments out
    return [" ".join(line.split()) for line in lines if line.strip()]


# What the tier runs of the block, and why it leaves the rest: installing, the hub, and a vLLM
# server on GPU 0 beside training on GPUs 1-7 have no CPU stand-in.
NOT_ON_CPU = ("pip install", "unset HF_", "R=", "CUDA_VISIBLE_DEVICES=", "--run-name qwen3-8b-server")


def hub_rows() -> list[tuple[str, dict, list[dict]]]:
    """Each hub dataset the qwen3 profiles read: its id, the arguments the kit passes, and rows in its own layout."""
    from patarm_kit.judging.prompts import format_judgment

    answers = [("How do I brew tea?", "Heat water to 80 C, steep the leaves three minutes, then pour.", "Tea is a drink."),
               ("Name a prime number.", "Seven is prime: its only divisors are one and seven.", "Nine."),
               ("Translate 'bonjour'.", "'Bonjour' means 'hello' (or 'good day') in French.", "It is a word.")]
    rl = [{"prompt": [{"role": "user", "content": f"{q} ({n})"}], "chosen": good, "rejected": bad, "id": f"rl-{n}"}
          for n, (q, good, bad) in enumerate(answers * 4)]
    sft = [{"messages": [{"role": "user", "content": f"Judge this answer to: {q}"},
                         {"role": "assistant", "content": format_judgment([("Correct", "states a true fact")],
                                                                          "It answers the question.", 8 - n % 3)}]}
           for n, (q, _, _) in enumerate(answers * 2)]
    reward_bench = [{"prompt": q, "chosen": good, "rejected": bad, "chosen_model": "a", "rejected_model": "b",
                     "subset": subset, "id": n}
                    for n, ((q, good, bad), subset) in enumerate(zip(answers, ["alpacaeval-easy", "mt-bench-med", "llmbar-natural"]))]
    rm_bench = [{"id": n, "prompt": q, "chosen": [good, good + " Indeed.", good + " Sure."],
                 "rejected": [bad, bad + " Maybe.", bad + " Hm."], "domain": domain}
                for n, ((q, good, bad), domain) in enumerate(zip(answers, ["chat", "code", "safety-refuse"]))]
    reward_bench_2 = [{"id": n, "prompt": q, "chosen": [good], "rejected": [bad, bad + " No.", bad + " Eh."],
                       "num_correct": 1, "total_completions": 4, "subset": subset}
                      for n, ((q, good, bad), subset) in enumerate(zip(answers, ["Factuality", "Focus", "Math"]))]
    return [
        ("AIJian/PaTaRM", {"data_files": "rl_train_mix_41.7k.jsonl", "split": "train"}, rl),
        ("AIJian/PaTaRM", {"data_files": "sft_train_35.6k.jsonl", "split": "train"}, sft),
        ("allenai/reward-bench", {"split": "filtered"}, reward_bench),
        ("THU-KEG/RM-Bench", {"split": "train"}, rm_bench),
        ("allenai/reward-bench-2", {"split": "test"}, reward_bench_2),
    ]


def stand_in_hub(folder: Path) -> str:
    """$PATARM_STAND_IN_HUB for tests/stand_in_hub/sitecustomize.py: each dataset's rows in a file of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, (path, expects, rows) in enumerate(hub_rows()):
        file = folder / f"{number}-{path.replace('/', '--')}.jsonl"
        file.write_text("".join(json.dumps(row) + "\n" for row in rows))
        entries.append({"path": path, "expects": expects, "file": str(file)})
    return json.dumps(entries)


def chain_settings(stand_ins: dict[str, Path]) -> list[str]:
    """`--set` keys for the README's run-making lines: the model stand-in (the data stand-ins are the
    hub's, above) and sizes a CPU runs in minutes. Every other setting is the profile's own."""
    settings = {
        "model.name": str(stand_ins["model"]),
        "judge.kv_cache_gib": "1", "judge.batch_size": "4", "judge.preview_pairs": "2",
        "judge.preview": "{n: 2, max_new_tokens: 16}",
        "sft.n_pairs": "4", "sft.max_steps": "2", "sft.batch_size": "2", "sft.n_check_pairs": "2",
        "sft.checks": "{n: 2, max_new_tokens: 16}",
        "par.n_pairs": "4", "par.max_steps": "2", "par.pairs_per_step": "2", "par.save_steps": "1",
        "par.rollouts": "{n: 2, max_new_tokens: 16}", "par.gradient_accumulation_steps": "1",
        "bt.n_pairs": "4", "bt.max_steps": "2", "bt.batch_size": "2", "bt.max_length": "512",
        "eval.limit": "2", "eval.n_boot": "50", "eval.sampling": "{max_new_tokens: 16}",
        "eval.pairwise_sampling": "{max_new_tokens: 16}", "eval.votes_curve": "[1, 2]",
        "eval.votes_curve_sampling": "{n: 2, max_new_tokens: 16}", "eval.votes_curve_limit": "2",
        "policy.n_prompts": "4", "policy.max_steps": "1", "policy.prompts_per_step": "2",
        "policy.rollouts": "{n: 2, max_new_tokens: 16}", "policy.gradient_accumulation_steps": "1",
        "policy.judge_sampling": "{n: 1, temperature: 0.0, max_new_tokens: 16}",
        "policy.ifeval": "{n: 1, temperature: 0.0, max_new_tokens: 16}", "policy.ifeval_limit": "4",
    }
    return [f"--set '{key}={value}'" for key, value in settings.items()]


def test_the_readme_gpu_block_runs_on_stand_ins(stand_ins, tmp_path):
    """Every command of the README's GPU block that a CPU can run, as written there, but for 2
    processes instead of 8 and the stand-ins: data, SFT on the paper's file, PAR (DDP, and ZeRO-3 for
    14B), BT, the benchmarks, the policies, downstream, figures, and `verify`."""
    from test_train import free_port

    results = tmp_path / "results"
    commands = []
    for line in readme_gpu_commands():
        if any(marker in line for marker in NOT_ON_CPU):
            continue
        line = line.replace("$R", f"{results}/qwen3-8b").replace(" results/", f" {results}/")
        line = line.replace("--num_processes 8", f"--num_processes 2 --main_process_port {free_port()}")
        if line.startswith("patarm-kit run "):  # a chain line states the run's settings: the same --set as it was made with
            line += " " + " ".join(chain_settings(stand_ins))
        commands.append(line)
    ran = " ".join(commands)
    for step in ("01_data_pairing", "cli sft", "cli train ", "deepspeed_zero3", "cli train-bt", "04_benchmark_eval",
                 "cli policies", "patarm-kit downstream", "06_figures", "patarm-kit verify"):
        assert step in ran, f"the README's GPU block no longer has {step!r}"
    env = {**environment(stand_ins), "PATARM_RESULTS_DIR": str(results), "PYTHONPATH": str(STAND_IN_HUB),
           "PATARM_STAND_IN_HUB": stand_in_hub(tmp_path / "hub"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for command in commands:
        done = subprocess.run(command, shell=True, executable="/bin/bash", cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    manifest = json.loads((results / "qwen3-8b" / "manifest.json").read_text())
    assert manifest["profile"] == "qwen3-8b" and manifest["config"]["model"]["name"] == str(stand_ins["model"])
    sft, bt = manifest["stages"]["sft"]["facts"], manifest["stages"]["bt"]["facts"]
    policies = [manifest["training"][f"policy-{rewarder}"] for rewarder in manifest["config"]["policy"]["rewarders"]]
    assert [sft["num_processes"], bt["num_processes"], manifest["training"]["par"]["num_processes"]] == [2, 2, 2]
    assert len(policies) == 3 and all(policy["num_processes"] == 2 and policy["status"] == "done" for policy in policies)
    assert sft["data"]["source"].startswith("hub:AIJian/PaTaRM@main/sft_train_35.6k.jsonl")
    assert manifest["stages"]["figures"]["status"] == "done" and manifest["stages"]["downstream"]["status"] == "done"
