"""A run's benchmark results in the RewardBench leaderboard's own layout (`patarm-kit export RUN`).

The leaderboard reads, per model, a results JSON (`eval-set/<model>.json`: `model`, `model_type`,
`chat_template` and one key per subset, as allenai/reward-bench's runners save it with
`save_to_hub`) and a per-item scores JSON (`eval-set-scores/<model>.json`: columns `id`, `subset`,
`results`, plus `model` and `model_type`). RewardBench v1 goes to <out>/rewardbench/, RewardBench 2
to <out>/rewardbench2/; entry is by the leaderboard's issue form, nothing is uploaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from patarm_kit.judging.registry import parse_judge
from patarm_kit.report.figures import suite_metrics
from patarm_kit.runs.files import RunError, atomic_write_text
from patarm_kit.runs.layout import file_safe
from patarm_kit.runs.run import Run

FORMATS = ("rewardbench",)
LEADERBOARD_BENCHES = ("rewardbench", "rewardbench2")  # each to its own folder, as the two leaderboards keep them
MODEL_TYPES = {"base": "Generative RM", "adapter": "Generative RM", "pairwise": "Generative RM", "bt": "Seq. Classifier"}


def _model(run: Run, metrics: dict[str, Any]) -> tuple[str, str]:
    """The model name and type the leaderboard files carry: the backbone with the judge's name in the run."""
    kind = parse_judge(metrics["judge_spec"]).kind
    return f"{run.config().model.name} ({run.dir.name}: {metrics['judge']})", MODEL_TYPES.get(kind, f"Baseline ({kind})")


def _write(path: Path, payload: dict[str, Any]) -> Path:
    atomic_write_text(path, json.dumps(payload, indent=4, sort_keys=True) + "\n")  # as save_to_hub writes them
    return path


def export_rewardbench(run_dir: Path | str, out: Path | str) -> list[Path]:
    """Each judge's RewardBench (and RewardBench 2) results in the leaderboard layout under `out`."""
    run, out = Run.open(run_dir), Path(out)
    chosen = [m for m in suite_metrics(run.dir) if m["bench"] in LEADERBOARD_BENCHES]
    if not chosen:
        raise RunError(f"{run.dir}: no RewardBench or RewardBench 2 evaluation to export (eval/*__rewardbench*.json)")
    written = []
    for metrics in chosen:
        model, model_type = _model(run, metrics)
        folder = out / metrics["bench"]
        subsets = {name: facts["acc"] if "acc" in facts else facts["score"] for name, facts in metrics["subsets"].items()}
        written.append(_write(folder / "eval-set" / f"{file_safe(model)}.json",
                              {"model": model, "model_type": model_type, "chat_template": None, **subsets}))
        items = metrics["items"]
        written.append(_write(folder / "eval-set-scores" / f"{file_safe(model)}.json", {
            "model": model, "model_type": model_type, "id": [i["pair_id"] for i in items],
            "subset": [i["group"] for i in items], "results": [i["outcome"] for i in items]}))
    return written
