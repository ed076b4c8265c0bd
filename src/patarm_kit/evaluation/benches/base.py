"""What every benchmark does: load its pairs, ask for judgments, score them by its own rules.

A benchmark is a `Benchmark` subclass in its own module of this package, listed once in
`BENCHMARKS` (benches/__init__.py). Evaluation, tables and figures ask the benchmark, never its
name: the base class scores plain pairs (accuracy with a bootstrap interval), and RM-Bench or
RewardBench override only what their rules change.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patarm_kit.config.schema import RunConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.data.pairs import PreferencePair, SourceReport, draw_order, read_pairs
from patarm_kit.evaluation.stats import bootstrap_ci
from patarm_kit.judging.judge import (
    PAIRWISE_ORDERS,
    EvalError,
    JudgeRequest,
    Judgment,
    requests_for_pairs,
    voted_scores,
)
from patarm_kit.judging.outcome import pair_outcome, tie_value
from patarm_kit.runs.files import sha256_of
from patarm_kit.runs.layout import RunLayout


@dataclasses.dataclass
class BenchItems:
    """The pairs of one benchmark, and the group (domain or subset) each pair is scored in."""

    bench: str
    pairs: list[PreferencePair]
    groups: dict[str, str]
    files: dict[str, str]  # as recorded: key -> sha256
    paths: list[Path]  # the local files read


@dataclasses.dataclass(frozen=True)
class Scoring:
    """The rules of one evaluation, recorded in its metrics file so `recompute_metrics` can apply them again."""

    ties: str  # "half" or "zero": what an equal or invalid comparison is worth
    votes: int | None  # judgments per response to use (the first ones); None: all
    voting: str  # "mean" or "majority"
    pairwise: bool  # judgments are pairwise verdicts (side = order shown), not pointwise scores
    n_boot: int
    seed: int
    readout: str = "greedy"  # config.READOUTS: what judge.readout_score reads of each judgment


def outcome_interval(outcomes: Sequence[float], n_boot: int, seed: int) -> list[float | None]:
    """95% bootstrap interval of a mean outcome; [None, None] when there is nothing to resample."""
    return list(bootstrap_ci(outcomes, n_boot=n_boot, seed=seed)) if len(outcomes) else [None, None]


class Benchmark:
    """A benchmark of preference pairs; subclasses set the class attributes and override what differs.

    `spec` is how configs and metrics files name it (`rmbench`, `pairs:hh-rlhf`).
    """

    name: str = ""  # the registry key
    usage: str = ""  # how a spec is written, when it takes an argument (pairs:SOURCE)
    label: str = ""  # how figures and tables name it
    sources: tuple[str, ...] = ()  # data sources holding its pairs; the profile picks one, else the first
    pairwise: bool = True  # the pairwise judge (both orders of each pair) runs on it
    held_out: bool = False  # pairs held out from a training source (the score-shift figure reads them)
    style_matrix: bool = False  # metrics carry RM-Bench's 3x3 style matrices (figure 06_rmbench_matrices)

    def __init__(self, argument: str | None = None):
        if argument is not None:
            raise EvalError(f"bench {self.name!r} takes no argument (got {self.name}:{argument})")
        self.spec = self.name

    # ------------------------------------------------------------ loading

    def source(self, config: RunConfig) -> SourceConfig:
        """The profile's source for this benchmark (e.g. a hub copy, its bad_rows rule kept), else the first one named.
        A benchmark is judged whole: `limit` (per group) is evaluation's, not the source's."""
        spec = next((s for s in config.data.sources if s.name in self.sources), SourceConfig(self.sources[0]))
        return dataclasses.replace(spec, role="bench", limit=None)

    def load_pairs(self, config: RunConfig) -> tuple[list[PreferencePair], SourceReport]:
        """Every pair of the benchmark, from its source (outside a run; stage 01 writes them into one)."""
        return load_source(self.source(config), config.data.data_dir)

    def group(self, pair: PreferencePair) -> str:
        """The domain or subset a pair is scored (and limited) in."""
        return pair.source

    def unit(self, pair: PreferencePair) -> str:
        """What a limit counts and draws (by the hash of this key): a pair, unless the rules score several together."""
        return pair.id

    def load(self, config: RunConfig, limit: int | None, layout: RunLayout | None = None) -> BenchItems:
        """The benchmark's pairs: inside a run (`layout`) stage 01's file, else from its source;
        `limit` keeps that many per group (a deterministic, well-mixed draw)."""
        if limit is not None and limit < 1:
            raise EvalError(f"limit must be at least 1, not {limit}")
        if layout is None:
            pairs, report = self.load_pairs(config)
            files, paths = report.files, report.local_paths()
        else:
            path = layout.bench_pairs(self.spec)
            if not path.is_file():
                raise EvalError(f"{path} is missing: run notebook 01 (data pairing) for this run first")
            pairs, files, paths = read_pairs(path), {layout.relative(path): sha256_of(path)}, [path]
        if not pairs:
            raise EvalError(f"bench {self.spec}: no pairs to judge in {', '.join(files) or 'its source'}")
        if limit is not None:
            units: dict[str, dict[str, list[PreferencePair]]] = defaultdict(lambda: defaultdict(list))
            for pair in pairs:
                units[self.group(pair)][self.unit(pair)].append(pair)
            pairs = [p for group in sorted(units) for key in sorted(units[group], key=draw_order)[:limit]
                     for p in units[group][key]]
        return BenchItems(self.spec, pairs, {p.id: self.group(p) for p in pairs}, files, paths)

    def requests(self, pairs: Sequence[PreferencePair]) -> list[JudgeRequest]:
        """What a pointwise judge scores: both sides of each pair."""
        return requests_for_pairs(pairs)

    # ------------------------------------------------------------ scoring

    def pair_outcomes(self, judgments: Sequence[Judgment], pair_ids: Sequence[str], rules: Scoring) -> dict[str, float]:
        """Per-pair outcome in [0, 1]: 1 correct, 0 wrong, the tie value for equal or invalid."""
        voted = voted_scores(judgments, rules.voting, rules.votes, rules.readout)
        if rules.pairwise:
            tie = tie_value(rules.ties)
            return {pid: float(np.mean([tie if voted.get((pid, o)) is None else voted[(pid, o)] for o in PAIRWISE_ORDERS]))
                    for pid in pair_ids}
        return {pid: pair_outcome(voted.get((pid, "chosen")), voted.get((pid, "rejected")), rules.ties) for pid in pair_ids}

    def score(self, judgments: Sequence[Judgment], groups: Mapping[str, str], rules: Scoring) -> tuple[dict[str, float], dict[str, Any]]:
        """Per-pair outcomes and the benchmark's metrics: here accuracy over pairs with its interval."""
        outcomes = self.pair_outcomes(judgments, list(groups), rules)
        values = list(outcomes.values())
        return outcomes, {"acc": float(np.mean(values)), "n": len(values),
                          "ci95": {"acc": outcome_interval(values, rules.n_boot, rules.seed)}}

    # ------------------------------------------------------------ reporting

    def count(self, metrics: Mapping[str, Any]) -> int:
        """Items scored, as the table shows it."""
        return metrics["n"]

    def table_extras(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Columns of the benchmark table beyond accuracy (RM-Bench: easy, normal, hard)."""
        return {}

    def coverage(self, metrics: Mapping[str, Any]) -> str:
        """What part of the benchmark a metrics file covers, read from the file itself."""
        return f"{self.label} (n={metrics['n']}, not a benchmark of the paper)"
