"""The benchmarks, by the name configs and metrics files use.

Adding a benchmark: a module here with a `Benchmark` subclass (benches/base.py says what it may
override) and one line in `BENCHMARKS`. A spec `name:ARGUMENT` (`pairs:hh-rlhf`) passes the
argument to the class; the others take none.
"""

from __future__ import annotations

from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.evaluation.benches.base import Benchmark
from patarm_kit.evaluation.benches.pairs import PairsBench
from patarm_kit.evaluation.benches.rewardbench import RewardBench
from patarm_kit.evaluation.benches.rmbench import RMBench
from patarm_kit.judging.judge import EvalError

BENCHMARKS: dict[str, type[Benchmark]] = {
    "rmbench": RMBench,
    "rewardbench": RewardBench,
    "pairs": PairsBench,
}


def get_bench(spec: str) -> Benchmark:
    """The benchmark a spec names; an unknown one is an EvalError listing the known ones."""
    name, sep, argument = str(spec).partition(":")
    if name not in BENCHMARKS:
        known = ", ".join(cls.usage or cls.name for cls in BENCHMARKS.values())
        raise EvalError(f"bench {spec!r}: expected one of {known}")
    return BENCHMARKS[name](argument if sep else None)


def bench_pairs(config: RunConfig) -> dict[str, list[PreferencePair]]:
    """Every pair of every bench the run will judge (eval.benches and the votes-curve bench), whole:
    stage 01 removes training pairs that share a prompt with any of them. A `pairs:` bench over a
    training source of the run is its test split, which the split rule already keeps apart."""

    train_sources = {s.name for s in config.data.sources if s.role == "train"}
    specs = list(config.eval.benches) + ([config.eval.votes_curve_bench] if config.eval.votes_curve else [])
    benches = {}
    for spec in dict.fromkeys(specs):
        bench = get_bench(spec)
        if not (isinstance(bench, PairsBench) and bench.source_name in train_sources):
            benches[spec] = bench.load_pairs(config)[0]
    return benches


__all__ = ["BENCHMARKS", "bench_pairs", "get_bench", "base", "pairs", "rewardbench", "rmbench"]
