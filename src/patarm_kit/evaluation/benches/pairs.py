"""`pairs:SOURCE`: plain preference pairs as a benchmark (accuracy over pairs, no official rules).

For a training source of the profile only its held-out test split is judged, so a trained
judge is never scored on pairs it learned from; any other source (a file, a hub id) is judged whole.
Inside a run, stage 01 writes either into pairs/bench-pairs-<source>.jsonl (for a training source:
the run's test split of it, after decontamination and the source's `limit`), and evaluation reads that file.
"""

from __future__ import annotations

import dataclasses

from patarm_kit.config.schema import RunConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.data.pairs import PreferencePair, SourceReport
from patarm_kit.data.splits import split_of
from patarm_kit.evaluation.benches.base import Benchmark
from patarm_kit.judging.judge import EvalError


class PairsBench(Benchmark):
    """Held-out pairs of a training source, or every pair of another source."""

    name = "pairs"
    usage = "pairs:SOURCE"
    label = "held-out pairs"
    held_out = True

    def __init__(self, argument: str | None = None):
        if not argument:
            raise EvalError("bench 'pairs' needs a source: pairs:SOURCE (e.g. pairs:hh-rlhf)")
        self.source_name = argument
        self.spec = f"{self.name}:{argument}"
        self.label = f"held-out {argument}"

    def load_pairs(self, config: RunConfig) -> tuple[list[PreferencePair], SourceReport]:
        unlisted = SourceConfig(self.source_name, role="bench")  # not a source of the profile: judged whole
        spec = next((s for s in config.data.sources if s.name == self.source_name), unlisted)
        pairs, report = load_source(dataclasses.replace(spec, limit=None), config.data.data_dir, config.data.split_fractions)
        if spec.role == "train":
            pairs = [p for p in pairs if split_of(p, config.data.split_fractions) == "test"]
        return pairs, report
