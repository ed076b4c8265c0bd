"""The learning curve: the judge at each saved PAR checkpoint, read on dev pairs.

Each point judges the same dev pairs (never trained on, never a test item) under every readout
(config.READOUTS), so a change of the judgment distribution shows even where the greedy
judgment does not move.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from patarm_kit.config.rules import READOUTS, SAMPLED_MEAN_MIN
from patarm_kit.config.schema import RunConfig, SamplingConfig
from patarm_kit.data.pairs import read_pairs, subsample
from patarm_kit.evaluation.evaluate import compute_metrics, readout_field, readout_key
from patarm_kit.evaluation.warmup_checks import score_by_stated_side
from patarm_kit.judging.engine import close_shared_engines
from patarm_kit.judging.judge import SAMPLED_MEAN, read_judgments, requests_for_pairs, save_judgments
from patarm_kit.judging.models import ADAPTER_WEIGHTS
from patarm_kit.judging.registry import model_judge
from patarm_kit.runs.files import read_json, write_json
from patarm_kit.runs.layout import RunLayout
from patarm_kit.training.checkpoints import checkpoint_folders, checkpoint_is_complete

# ---------------------------------------------------------------- the learning curve (notebook 03)

CURVE_BENCH = "pairs:dev"  # the training sources' dev split: never trained on, never a test item


def curve_points(config: RunConfig, layout: RunLayout) -> list[tuple[int, Path | None]]:
    """(step, adapter) of the curve: the warm-up (or base model) at step 0, then each complete checkpoint."""

    start = layout.sft_adapter if config.sft.enabled else None
    saved = [(int(f.name.removeprefix("checkpoint-")), f) for f in checkpoint_folders(layout.par_checkpoints)
             if checkpoint_is_complete(f)]
    return [(0, start), *saved]


def curve_sampling(config: RunConfig) -> SamplingConfig:
    """How the curve draws its sampled-mean judgments: as PAR's rollouts (temperature, top_p,
    max_new_tokens), the distribution PAR trains; k = eval.sampled_mean.n where set, else the least k."""
    k = config.eval.sampled_mean.n if config.eval.sampled_mean else SAMPLED_MEAN_MIN
    return dataclasses.replace(config.par.rollouts, n=k)


def learning_curve(config: RunConfig, layout: RunLayout, n_pairs: int) -> list[dict[str, Any]]:
    """Dev accuracy under every readout at every point of `curve_points`; one metrics file per point.

    Greedy and expected read one judgment as eval.sampling makes it, which sits in one score band
    while PAR moves the judgment distribution; sampled-mean reads that distribution (`curve_sampling`),
    with the same seeds at every point, so points differ by the judge and not by the draw.
    The files have the evaluation format, so `verify` rebuilds their numbers from the judgments.
    """

    pairs = subsample(read_pairs(layout.pairs("dev")), n_pairs)
    groups = {pair.id: "dev" for pair in pairs}
    requests, draws = requests_for_pairs(pairs), curve_sampling(config)
    rows = []
    for step, adapter in curve_points(config, layout):
        print(f"[curve] step {step}: {layout.relative(adapter) if adapter else 'base model'}", flush=True)
        with adapter_only(adapter) as weights:
            judge = model_judge(config, config.eval.sampling, weights)
            judgments, samples = judge.judge(requests), judge.draw(requests, draws)
        metrics = compute_metrics(CURVE_BENCH, judgments, groups, config.eval.ties, 1, config.judge.voting, False,
                                  config.eval.n_boot, config.seed, samples)
        out = layout.curve_metrics(step)
        spec = f"adapter:{layout.relative(adapter)}" if adapter else "base"
        metrics.update(judge=f"{layout.par}@{step}", judge_spec=spec, step=step, config=config.to_dict(),
                       config_fingerprint=config.fingerprint(), judgments_file=RunLayout.judgments_of(out).name,
                       sampled_mean_sampling=dataclasses.asdict(draws))
        save_judgments([*judgments, *samples], RunLayout.judgments_of(out))
        write_json(out, metrics)
        rows.append(curve_row(metrics))
    close_shared_engines()  # PAR variants often follow in this process: they get the engine's memory and cores
    return rows


def recorded_curve(layout: RunLayout) -> list[dict[str, Any]]:
    """The learning curve's rows as its stage wrote them (one metrics file per point), for a resumed notebook."""
    return [curve_row(read_json(path)) for path in sorted(layout.par_curve.glob("step-*.json"))]


def curve_score_gaps(config: RunConfig, layout: RunLayout) -> list[dict[str, Any]]:
    """At each point of the learning curve, the sampled-mean judgments' mean score when they state the
    chosen side's verdicts and when they state the rejected side's (sft.score_by_stated_side): whether
    the judge has learned which facts deserve the higher score. Read from the curve's judgments files."""

    pairs = read_pairs(layout.pairs("dev"))  # the curve judged a sample of these; judgments name their pair
    rows = []
    for step, _ in curve_points(config, layout):
        judgments = RunLayout.judgments_of(layout.curve_metrics(step))
        if judgments.is_file():
            rows.append({"step": step, **score_by_stated_side(read_judgments(judgments, SAMPLED_MEAN), pairs)})
    return rows


@contextlib.contextmanager
def adapter_only(folder: Path | None) -> Iterator[Path | None]:
    """A checkpoint's adapter without the trainer's pickled state beside it (the kit loads no pickles)."""
    if folder is None or not (folder / "optimizer.pt").exists():
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="patarm-adapter-") as copy:
        for name in ("adapter_config.json", ADAPTER_WEIGHTS):
            shutil.copy2(folder / name, Path(copy) / name)
        yield Path(copy)


def curve_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """One point of the learning curve, as its table and figure show it: accuracy and interval under each
    readout (`acc`, `ci95`, `acc_expected`, ..., `ci95_sampled_mean`; None where a point did not measure it)."""
    row: dict[str, Any] = {"step": metrics["step"]}
    for readout in READOUTS:
        section = metrics if readout == "greedy" else metrics.get(readout_key(readout), {})
        row[readout_field("acc", readout)] = section.get("acc")
        row[readout_field("ci95", readout)] = section.get("ci95", {}).get("acc")
    return {**row, "invalid_share": metrics["invalid"]["share"], "n": metrics["n"]}
