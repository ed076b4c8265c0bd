"""The benchmarks, by the name configs and metrics files use.

Adding a benchmark: a module here with a `Benchmark` subclass (bench/base.py says what it may
override) and one line in `BENCHMARKS`. A spec `name:ARGUMENT` (`pairs:hh-rlhf`) passes the
argument to the class; the others take none.
"""

from __future__ import annotations

from .base import Benchmark, BenchItems, EvalError, Scoring
from .pairs import PairsBench
from .rewardbench import RewardBench
from .rmbench import RMBench

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


__all__ = ["BENCHMARKS", "Benchmark", "BenchItems", "EvalError", "Scoring", "get_bench"]
