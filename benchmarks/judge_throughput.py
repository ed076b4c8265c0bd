"""Judging throughput: the same requests batched and one at a time, with the real model.

Prints tokens per second for both and their ratio, measured in one run (the machine is
shared and noisy; compare ratios, not absolute numbers). Not a test: run it by hand.

    .venv/bin/python benchmarks/judge_throughput.py --requests 64 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from patarm_kit.config import SourceConfig, load_config
from patarm_kit.data import load_source
from patarm_kit.judge import Judge, requests_for_pairs
from patarm_kit.models import load_model
from patarm_kit.rubrics import load_rubrics


def measure(judge: Judge, requests: list) -> dict[str, float]:
    started = time.perf_counter()
    judgments = judge.judge(requests, n_samples=1, progress=False)
    seconds = time.perf_counter() - started
    tokens = sum(j.completion_tokens for j in judgments)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    config = load_config(args.profile)
    model, tokenizer = load_model(config.model)
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=args.requests // 2), config.data.data_dir)
    requests = requests_for_pairs(pairs)[: args.requests]
    # Greedy decoding with a fixed length budget, so both modes do the same work.
    base = dataclasses.replace(config.judge, temperature=0.0, max_new_tokens=args.max_new_tokens)
    rubrics = load_rubrics(config.judge.rubric_file)
    batched = measure(Judge.from_model(model, tokenizer, dataclasses.replace(base, batch_size=args.batch_size), rubrics), requests)
    single = measure(Judge.from_model(model, tokenizer, dataclasses.replace(base, batch_size=1), rubrics), requests)
    print(json.dumps({
        "model": config.model.name, "dtype": config.model.dtype, "requests": len(requests),
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "batched": batched, "one_at_a_time": single,
        "ratio_batched_over_single": batched["tokens_per_second"] / single["tokens_per_second"],
    }, indent=2))


if __name__ == "__main__":
    main()
