"""Seconds per PAR (GRPO) step, split into generation, reward and update, and peak memory.

Runs a few real GRPO steps with the profile's PAR settings on the real model and the
profile's training pairs, through the same `build_trainer` as `train_par`. "update" is the
rest of the step: log-probabilities, loss, backward pass and optimizer. The machine is shared,
so it also prints CPU seconds per step and the load average: wall time grows with other jobs,
CPU time much less. Peak memory is the peak resident set size (resource.getrusage): torch
tensors live outside Python's allocator, so tracemalloc would not see them. Not a test.

    .venv/bin/python benchmarks/grpo_step.py --profile cpu --steps 2
    .venv/bin/python benchmarks/grpo_step.py --profile cpu --set par.rollouts.n=2
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patarm_kit.config import load_config, parse_overrides
from patarm_kit.data import load_sources, write_stage_pairs
from patarm_kit.train import metrics_callback, build_trainer, read_metrics, training_pairs


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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args()

    overrides = {**parse_overrides(args.overrides), "par.max_steps": str(args.steps),
                 "par.save_steps": str(args.steps + 1), "par.n_pairs": "null"}
    config = load_config(args.profile, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        written = write_stage_pairs(load_sources(config.data.sources, config.data.data_dir),
                                    config.data.split_fractions, Path(tmp) / "pairs")
        pairs = training_pairs(config, written["train.jsonl"])[: args.steps * config.par.pairs_per_step]
        metrics_path = Path(tmp) / "metrics.jsonl"
        trainer = build_trainer(config, pairs, Path(tmp) / "out", callbacks=[metrics_callback(metrics_path)])
        generation: list[float] = []
        reward: list[float] = []
        time_calls(trainer, "_generate", generation)
        time_calls(trainer, "_calculate_rewards", reward)
        cpu_before = cpu_seconds()
        trainer.train()
        cpu_per_step = (cpu_seconds() - cpu_before) / args.steps
        rows = read_metrics(metrics_path)

    steps = [
        {
            "step": row["step"],
            "seconds": round(row["seconds_per_step"], 1),
            "generation": round(gen, 1),
            "reward": round(rew, 3),
            "update": round(row["seconds_per_step"] - gen - rew, 1),
            "completion_tokens_mean": row["par/completion_length_mean"],
            "parse_rate": row["par/parse_rate"],
        }
        for row, gen, rew in zip(rows, generation, reward, strict=True)
    ]
    par = config.par
    print(json.dumps({
        "profile": config.profile,
        "model": config.model.name,
        "dtype": config.model.dtype,
        "pairs_per_step": par.pairs_per_step,
        "rollouts": vars(par.rollouts),
        "completions_per_step": 2 * par.pairs_per_step * par.rollouts.n,
        "judge_prompt_budget": [config.judge.max_prompt_tokens, config.judge.max_response_tokens],
        "steps": steps,
        "mean_seconds_per_step": round(statistics.fmean(s["seconds"] for s in steps), 1),
        "cpu_seconds_per_step": round(cpu_per_step, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
