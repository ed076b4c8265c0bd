"""Checkpoints that a killed run can trust: a marker written last into each complete checkpoint,
partial saves removed on resume, checkpoints carried across sessions; and the end of a training
(the adapter published with its card) and of a launched command (its processes leave together).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patarm_kit.judging.engine import close_shared_engines
from patarm_kit.judging.models import (
    ADAPTER_WEIGHTS,
    adapter_leftovers,
    adapter_staging,
    gathered_adapter_state,
    publish_adapter,
)
from patarm_kit.runs.env import now, wait_for_every_process
from patarm_kit.runs.files import atomic_write_text, read_json, write_json
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import Run
from patarm_kit.training.grpo import read_metrics

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


def training_done(run: Run, judge: str = "par") -> bool:
    """Whether the manifest records PAR training `judge` ("par", "par-<variant>") as finished, its adapter saved."""
    record = run.manifest().get("training", {}).get(judge, {})
    return record.get("status") == "done" and (run.layout.for_par(judge).par_adapter / ADAPTER_WEIGHTS).is_file()


def carry_checkpoints(run: Run, training: str, keep_adapters: bool) -> list[Path]:
    """Make a training's checkpoints small enough to commit, for a run made across working sessions
    on machines that keep only the repository (results/in-progress/README.md). `training` names its
    folder (`par`, `par-shuffled`, ...).

    What a stopped training left half-written goes first, as a resume would remove it. The latest
    complete checkpoint stays whole, so `--resume` continues from it bit for bit, unless the training
    is finished (recorded done, its adapter saved: nothing resumes from a checkpoint then). Older ones keep
    their adapter and trainer log where `keep_adapters` (the learning curve judges every PAR
    checkpoint), with a marker that lists what they keep, so they still count as complete; else
    they go. A finished training's stage recorded its checkpoints' files, so what goes is named in
    the manifest's `left_out`. Returns what it deleted."""
    layout = run.layout.for_par(training)
    finished = training_done(run, training)
    deleted = remove_partial_saves(layout)
    latest = None if finished else latest_checkpoint(layout.par_checkpoints)
    kept = {"adapter_config.json", ADAPTER_WEIGHTS, "trainer_state.json", CHECKPOINT_COMPLETE}
    for folder in checkpoint_folders(layout.par_checkpoints):
        if folder == latest:
            continue
        if not keep_adapters:
            shutil.rmtree(folder)
            deleted.append(folder)
            continue
        for path in sorted(folder.iterdir()):
            if path.name not in kept:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                deleted.append(path)
        marker = read_json(folder / CHECKPOINT_COMPLETE)
        files = {name: size for name, size in marker["files"].items() if (folder / name).is_file()}
        write_json(folder / CHECKPOINT_COMPLETE, {**marker, "files": files, "carried": "optimizer state dropped"})
    if finished:
        run.record_left_out(deleted)
    return deleted


def checkpoint_marker() -> Any:
    """A TrainerCallback that writes CHECKPOINT_COMPLETE into each checkpoint once every process has saved its part."""
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if kwargs.get("model") is not None:  # the trainer passes the model it saved
                complete_sharded_adapter(kwargs["model"], folder, state.is_world_process_zero)
            wait_for_every_process()  # sharded (DeepSpeed) checkpoints: every process has written its part
            if not state.is_world_process_zero:
                return
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
    complete_sharded_adapter(model, staged, trainer.accelerator.is_main_process)


def complete_sharded_adapter(model: Any, folder: Path, is_main_process: bool) -> None:
    """Under DeepSpeed ZeRO-3, write the adapter again with every one of its tensors.

    transformers saves a ZeRO-3 PEFT model from DeepSpeed's consolidated state with frozen parameters
    left out, so with `par.trainable_layers` the LoRA tensors of the frozen layers (the warm-up's,
    unchanged) were missing from the adapter and from every checkpoint: a judge loaded from them
    would lose its warm-up there. Gathering the adapter's tensors (a collective: every process calls
    this) and saving them through PEFT gives the adapter a run without ZeRO-3 saves. Elsewhere
    (no partitioned parameter) nothing is done.
    """
    state = gathered_adapter_state(model)
    if state is not None and is_main_process:
        model.save_pretrained(str(folder), state_dict=state, safe_serialization=True)


def finish_training(trainer: Any, run: Run, adapter_dir: Path, metrics_path: Path, key: str,
                    record: dict[str, Any], card: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """The end of every GRPO training (PAR, its variants, the policies), in one place.

    Every process saves its part of the adapter (a sharded model is gathered from all of them);
    the main process alone then drops the pickled training arguments (the manifest holds them as
    JSON), completes the run's training record under `key`, writes the adapter's card and
    publishes it; every process waits. The process group stays: a stage may train again in it (the
    policies, one per rewarder; PAR's variants); the command leaves it (`leave_process_group`).
    Returns the metrics log."""
    staged = adapter_staging(adapter_dir)
    save_trained_adapter(trainer, staged)
    metrics = read_metrics(metrics_path)
    if trainer.accelerator.is_main_process:
        (staged / "training_args.bin").unlink(missing_ok=True)
        record.update(status="done", finished=now(), global_step=trainer.state.global_step,
                      last_metrics=metrics[-1] if metrics else {})
        atomic_write_text(staged / "README.md", card(record))
        publish_adapter(staged, adapter_dir)
        run.update("training", key, record)
    trainer.accelerator.wait_for_everyone()
    return metrics


def leave_process_group() -> None:
    """The end of a command launched as several processes (`accelerate launch`): each process stops
    its judging engines, then all leave the process group together, while every rank is present (a
    rank that exits with gloo connections open can abort another: "terminate called without an
    active exception"). A judge's in-process vLLM engine (a policy's rewarder) made its groups
    inside this one and tears them down at its stop, so it stops first. One process: nothing to do."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    wait_for_every_process()
    close_shared_engines()
    if dist.is_initialized():  # vLLM's teardown may have left it already
        dist.destroy_process_group()
