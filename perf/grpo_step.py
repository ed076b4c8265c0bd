"""Seconds per PAR (GRPO) pair-step, today's path against the old one, measured in one run.

A pair-step is one preference pair judged on both sides and trained on: the unit of PAR's
work, so paths with different `par.pairs_per_step` compare fairly. Each path runs a few real
GRPO steps with the profile's PAR settings on the real model and the profile's training
pairs, through the same `build_trainer` as `train_par`, in its own subprocess, so each gets a
clean memory peak and neither slows the other. A step is split into:
- generation: the rollouts (TRL's `_generate`);
- sync: copying the trained weights into a separate generation engine (0 with transformers
  generate, which samples from the trained model itself);
- update: the rest (log-probabilities, loss, backward pass, optimizer, rewards).
The first `--warmup` steps of each path are run but not counted (first-call allocations).

"old" is the path the kit took before the update work: one pair per step, 2 micro-batches,
LoRA trained in every layer (OLD_PATH below). "new" is the profile as it stands. Peak memory is
the peak resident set size (resource.getrusage): torch tensors live outside Python's
allocator, so tracemalloc would not see them. Timing needs a quiet machine. Not a test.

    .venv/bin/python perf/grpo_step.py --profile cpu --json
    .venv/bin/python perf/grpo_step.py --profile cpu --set par.trainable_layers=4
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The PAR settings of the kit's cpu profile before the cheaper update (commit 3c42505).
OLD_PATH = {"par.pairs_per_step": "1", "par.gradient_accumulation_steps": "2", "par.trainable_layers": "null",
            "par.completion_only_logprobs": "false", "par.use_vllm": "false"}


def time_calls(obj: Any, name: str, seconds: list[float]) -> None:
    """Replace obj.<name> by a wrapper that appends each call's duration to `seconds`."""
    method: Callable[..., Any] = getattr(obj, name)

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(obj, name, timed)


def measure_path(profile: str, overrides: dict[str, str], steps: int, warmup: int) -> dict[str, Any]:
    """Run `warmup + steps` GRPO steps in this process; seconds per step and per pair-step, split."""
    from patarm_kit.config.loader import load_config
    from patarm_kit.data.loading import load_sources
    from patarm_kit.data.stage import write_stage_pairs
    from patarm_kit.judging.engine import cpu_seconds
    from patarm_kit.training.grpo import metrics_callback, read_metrics
    from patarm_kit.training.par import build_trainer, training_pairs

    total = warmup + steps
    config = load_config(profile, {**overrides, "par.max_steps": str(total), "par.save_steps": str(total + 1),
                                   "par.n_pairs": "null"})
    par = config.par
    with tempfile.TemporaryDirectory() as tmp:
        written = write_stage_pairs(load_sources(config.data.sources, config.data.data_dir),
                                    config.data.split_fractions, Path(tmp) / "pairs")
        pairs = training_pairs(config, written["train.jsonl"])[: total * par.pairs_per_step]
        metrics_path = Path(tmp) / "metrics.jsonl"
        started = time.perf_counter()
        trainer = build_trainer(config, pairs, Path(tmp) / "out", callbacks=[metrics_callback(metrics_path)])
        startup = time.perf_counter() - started
        generation: list[float] = []
        sync: list[float] = []
        time_calls(trainer, "_generate", generation)
        engine = getattr(trainer, "vllm_generation", None)
        if engine is not None:
            time_calls(engine, "sync_weights", sync)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        import torch

        threads = torch.get_num_threads()  # after the trainer (and any engine it started) is built
        cpu_before = cpu_seconds()
        trainer.train()
        cpu_per_step = (cpu_seconds() - cpu_before) / total
        rows = read_metrics(metrics_path)

    sync = sync or [0.0] * len(rows)  # sync runs inside _generate: take it out of generation
    per_step = [
        {"step": row["step"], "seconds": row["seconds_per_step"], "generation": gen - syn, "sync": syn,
         "update": row["seconds_per_step"] - gen, "reward_mean": row["par/reward_mean"],
         "parse_rate": row["par/parse_rate"], "completion_tokens_mean": row["par/completion_length_mean"]}
        for row, gen, syn in zip(rows, generation, sync, strict=True)
    ]
    counted = per_step[warmup:]

    def mean(key: str) -> float:
        return statistics.fmean(step[key] for step in counted)

    return {
        "settings": {"pairs_per_step": par.pairs_per_step, "completions_per_step": 2 * par.pairs_per_step * par.rollouts.n,
                     "gradient_accumulation_steps": par.gradient_accumulation_steps,
                     "trainable_layers": par.trainable_layers,
                     "completion_only_logprobs": par.completion_only_logprobs, "trainable_parameters": trainable, "torch_threads": threads,
                     "rollout_engine": "vllm" if par.use_vllm else "transformers", "rollouts": vars(par.rollouts)},
        "s_per_step": round(mean("seconds"), 2),
        "s_per_pair_step": round(mean("seconds") / par.pairs_per_step, 2),
        "split_s_per_pair_step": {key: round(mean(key) / par.pairs_per_step, 2) for key in ("generation", "sync", "update")},
        "cpu_s_per_step": round(cpu_per_step, 1),
        "startup_s": round(startup, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "steps": [{key: round(value, 3) if isinstance(value, float) else value for key, value in step.items()}
                  for step in per_step],
    }


def run_path(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one path in a fresh subprocess (its own memory peak, no state shared with the other)."""
    command = [sys.executable, __file__, "--only", name, "--profile", args.profile, "--steps", str(args.steps),
               "--warmup", str(args.warmup), *(f"--set={item}" for item in args.overrides)]
    print(f"[grpo_step] measuring the {name} path: {args.warmup} + {args.steps} steps", file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=2, help="steps counted per path")
    parser.add_argument("--warmup", type=int, default=1, help="steps run first and not counted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value (new path)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--only", choices=("old", "new"), help=argparse.SUPPRESS)  # one path, in a subprocess
    args = parser.parse_args()

    if args.only:
        from patarm_kit.config.loader import parse_overrides

        overrides = parse_overrides(args.overrides) if args.only == "new" else dict(OLD_PATH)
        print(json.dumps(measure_path(args.profile, overrides, args.steps, args.warmup)))
        return

    old, new = run_path("old", args), run_path("new", args)
    result = {
        "profile": args.profile,
        "old_s_per_pair_step": old["s_per_pair_step"],
        "new_s_per_pair_step": new["s_per_pair_step"],
        "ratio": round(old["s_per_pair_step"] / new["s_per_pair_step"], 2),
        "old": old,
        "new": new,
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }
    if not args.json:
        print(f"old {old['s_per_pair_step']} s per pair-step, new {new['s_per_pair_step']}: "
              f"{result['ratio']}x", file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
