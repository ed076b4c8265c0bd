"""Checkpoints that a killed run can trust: a marker written last into each complete checkpoint,
partial saves removed on resume, and the trained adapter published with its card.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import RunConfig
from patarm_kit.judging.models import (
    adapter_leftovers,
)
from patarm_kit.runs.env import package_versions
from patarm_kit.runs.files import atomic_write_text, read_json, write_json
from patarm_kit.runs.layout import RunLayout
from patarm_kit.training.grpo import METRIC_PREFIX, REWARD_KEY

CHECKPOINT_COMPLETE = "checkpoint_complete.json"  # written last into a checkpoint folder
_CHECKPOINT_FOLDER = re.compile(r"checkpoint-(\d+)")  # transformers' name for the checkpoint of step N


# ---------------------------------------------------------------- checkpoints


def checkpoint_folders(checkpoints: Path) -> list[Path]:
    """The checkpoint-N folders in `checkpoints`, oldest step first, complete or not."""
    found = [p for p in checkpoints.glob("checkpoint-*") if p.is_dir() and _CHECKPOINT_FOLDER.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")))


def checkpoint_is_complete(folder: Path) -> bool:
    """The marker is there and every file it lists has the size it had when the checkpoint was finished."""
    try:
        files = read_json(folder / CHECKPOINT_COMPLETE)["files"]
        return all((folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The complete checkpoint of the latest step (what training resumes from); half-saved ones never count."""
    complete = [folder for folder in checkpoint_folders(checkpoints) if checkpoint_is_complete(folder)]
    return complete[-1] if complete else None


def checkpoint_marker() -> Any:
    """A TrainerCallback that writes CHECKPOINT_COMPLETE into each checkpoint once every process has saved its part."""
    import torch.distributed as dist
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if dist.is_available() and dist.is_initialized():
                dist.barrier()  # sharded (DeepSpeed) checkpoints: every process has written its part
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            files = {p.relative_to(folder).as_posix(): p.stat().st_size
                     for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CHECKPOINT_COMPLETE}
            write_json(folder / CHECKPOINT_COMPLETE, {"step": state.global_step, "files": files})

    return MarkComplete()


def remove_partial_saves(layout: RunLayout) -> list[Path]:
    """Delete what a stopped PAR training left half-written: checkpoints without their marker, the
    adapter's staging folder, temporary files of atomic writes. Returns what it deleted."""
    stale = [folder for folder in checkpoint_folders(layout.par_checkpoints) if not checkpoint_is_complete(folder)]
    stale += adapter_leftovers(layout.par_adapter) + sorted(layout.par_dir.glob(".*.tmp"))
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return stale


def save_trained_adapter(trainer: Any, staged: Path) -> None:
    """The trained adapter alone into `staged`, on every process (a sharded model is gathered from all).

    With par.beta > 0 TRL keeps a frozen copy of the loaded warm-up beside it (adapter "ref", the KL's
    reference); saving would write it as a second adapter, so it is dropped once training is over."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
    trainer.save_model(str(staged))


def write_adapter_card(adapter_dir: Path, config: RunConfig, record: dict[str, Any]) -> None:
    """A short README next to the adapter: what it was trained from, on what, and how it went."""
    last, par, versions = record["last_metrics"], config.par, package_versions()
    lines = [
        "# PaTaRM judge adapter (PAR reward, GRPO, LoRA)",
        "",
        f"- base model: `{config.model.name}`",
        f"- starting adapter: `{record['start_adapter'] or 'none (fresh LoRA)'}`",
        f"- data: {record['n_pairs']} pairs from `{record['data']}`",
        f"- profile: `{config.profile}` (config fingerprint `{record['config_fingerprint']}`)",
        f"- PAR: {par.mode}, format weight {par.format_weight}; {record['global_step']} steps x "
        f"{par.pairs_per_step} pairs x 2 sides x {par.rollouts.n} rollouts, lr {par.learning_rate}",
        f"- last step: reward {last.get(REWARD_KEY)}, pair accuracy {last.get(METRIC_PREFIX + 'pair_accuracy')}, "
        f"parse rate {last.get(METRIC_PREFIX + 'parse_rate')}, {last.get('seconds_per_step')} s/step",
        f"- finished {record['finished']}; trl {versions['trl']}, peft {versions['peft']}, torch {versions['torch']}",
        "",
        "Load: `patarm_kit.models.load_model(config.model, adapter=<this folder>)`.",
        "Per-step metrics: `../metrics.jsonl`; settings: the run's manifest.json, `training.par`.",
    ]
    atomic_write_text(adapter_dir / "README.md", "\n".join(lines) + "\n")
