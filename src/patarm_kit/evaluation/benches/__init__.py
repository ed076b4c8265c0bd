"""The benchmarks, by the name configs and metrics files use.

Adding a benchmark: a module here with a `Benchmark` subclass (benches/base.py says what it may
override) and one line in `BENCHMARKS`. A spec `name:ARGUMENT` (`pairs:hh-rlhf`) passes the
argument to the class; the others take none.
"""

from __future__ import annotations

from patarm_kit.config.schema import RunConfig
from patarm_kit.data.loading import LoadedSource
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.data.splits import split_of
from patarm_kit.evaluation.benches.base import Benchmark
from patarm_kit.evaluation.benches.pairs import PairsBench
from patarm_kit.evaluation.benches.rewardbench import RewardBench
from patarm_kit.evaluation.benches.rewardbench2 import RewardBench2
from patarm_kit.evaluation.benches.rmbench import RMBench
from patarm_kit.judging.judge import EvalError

BENCHMARKS: dict[str, type[Benchmark]] = {
    "rmbench": RMBench,
    "rewardbench": RewardBench,
    "rewardbench2": RewardBench2,
    "pairs": PairsBench,
}


def get_bench(spec: str) -> Benchmark:
    """The benchmark a spec names; an unknown one is an EvalError listing the known ones."""
    name, sep, argument = str(spec).partition(":")
    if name not in BENCHMARKS:
        known = ", ".join(cls.usage or cls.name for cls in BENCHMARKS.values())
        raise EvalError(f"bench {spec!r}: expected one of {known}")
    return BENCHMARKS[name](argument if sep else None)


def run_benches(config: RunConfig) -> list[str]:
    """The spec of every bench a run judges: eval.benches and the votes-curve bench."""
    specs = list(config.eval.benches) + ([config.eval.votes_curve_bench] if config.eval.votes_curve else [])
    return list(dict.fromkeys(specs))


def _held_out(bench: Benchmark, config: RunConfig) -> bool:
    """A `pairs:` bench over a training source of the run: its test split, which stage 01 makes."""
    return isinstance(bench, PairsBench) and bench.source_name in {s.name for s in config.data.sources if s.role == "train"}


def bench_pairs(config: RunConfig) -> dict[str, list[PreferencePair]]:
    """Every pair of every bench the run will judge, whole, except held-out test splits (which the
    split rule already keeps apart): stage 01 removes training pairs that share a prompt with any of them."""
    return {spec: bench.load_pairs(config)[0] for spec in run_benches(config)
            if not _held_out(bench := get_bench(spec), config)}


def bench_files(config: RunConfig, loaded: list[LoadedSource], benches: dict[str, list[PreferencePair]]
                ) -> dict[str, list[PreferencePair]]:
    """What each bench of the run judges (spec -> pairs), for stage 01 to write: the pairs `bench_pairs`
    read, or for a held-out bench its source's test split after decontamination."""
    fractions = config.data.split_fractions
    files = {}
    for spec in run_benches(config):
        bench = get_bench(spec)
        if _held_out(bench, config):
            source = next(s for s in loaded if s.spec.name == bench.source_name)
            files[spec] = [p for p in source.pairs if split_of(p, fractions) == "test"]
        else:
            files[spec] = benches[spec]
    return files


__all__ = ["BENCHMARKS", "bench_files", "bench_pairs", "get_bench", "run_benches", "base", "pairs", "rewardbench", "rewardbench2", "rmbench"]
