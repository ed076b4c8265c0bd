"""PAR training: TRL's GRPOTrainer with LoRA, one (pair, side) judge prompt per dataset row.

How a step is laid out. The dataset holds the two rows of each pair next to each other
(chosen, then rejected), pairs in a seeded random order. TRL's `RepeatSampler` with
`shuffle_dataset=False` takes `2 * pairs_per_step` consecutive rows per step and repeats each
row `num_generations` times, so one step always judges both sides of `pairs_per_step` whole
pairs, and a GRPO group is the n rollouts of one (pair, side).

Many processes. TRL hands each process a consecutive slice of the step's completions and
calls the reward function on that slice only; the slice border can cut a pair in two (for
example one pair per step on two GPUs: chosen on GPU 0, rejected on GPU 1). Rather than rely
on batch sizes that keep pairs whole, the reward function gathers (pair_id, side, score) from
every process, computes PAR on the whole step with `par.rewards_for_batch`, and returns its
own slice. The gather is a no-op on one process, so both cases run the same code.

Prompts are built by `Judge.prompt_text`, the exact chat-formatted text (with the same
truncation) the judge sees at evaluation, and passed to TRL as plain text.

Crash safety. A run killed at any moment resumes (`resume=True`) from what was written whole:
- a checkpoint counts once its marker file (`checkpoint_complete.json`, written after every
  other file of the checkpoint, listing them with their sizes) is there; resume takes the
  newest complete checkpoint and deletes checkpoint folders without a marker;
- the final adapter is saved into a staging folder and renamed into place when complete;
- `par/metrics.jsonl` is append-only and a line counts once its newline is written: a last
  line without one (the write was cut) is dropped with a warning and cut off the file on
  resume; a damaged line before the last one is an error naming the file and the line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import shutil
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig
from .data import DataError, PreferencePair, read_pairs, sha256_of
from .engine import engine_environment, reload_in_place, vllm_package
from .judge import Judge, requests_for_pairs
from .judges import prompt_judge
from .layout import RunLayout
from .models import ADAPTER_WEIGHTS, ModelError, adapter_leftovers, adapter_staging, load_model, lora_config, publish_adapter
from .par import completion_text, pair_accuracy, rewards_for_batch
from .prompts import evaluation_text, parse_judgment
from .results import Run, atomic_write_text, now, package_versions, read_json, write_json

METRIC_PREFIX = "par/"
REWARD_KEY = METRIC_PREFIX + "reward_mean"
CHECKPOINT_COMPLETE = "checkpoint_complete.json"  # written last into a checkpoint folder
_CHECKPOINT_FOLDER = re.compile(r"checkpoint-(\d+)")  # transformers' name for the checkpoint of step N
_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")  # a transformer layer's parameters, in every decoder the kit loads
_WORD = re.compile(r"\w+")


@dataclass
class ParResult:
    """What a PAR training run left behind, for notebook 03."""

    adapter: Path
    checkpoints: Path
    metrics_path: Path
    metrics: list[dict[str, Any]]
    global_step: int
    n_pairs: int
    resumed_from: Path | None = None
    start_adapter: Path | None = None


# ---------------------------------------------------------------- data


def training_pairs(config: RunConfig, path: Path) -> list[PreferencePair]:
    """A seeded sample of `par.n_pairs` pairs from `path`, cut to whole steps of `pairs_per_step`.

    TRL drops a step that is not full, so a remainder would never be trained on anyway.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebook 01 (data pairing) for this run first")
    pairs = read_pairs(path)
    wanted = len(pairs) if config.par.n_pairs is None else min(config.par.n_pairs, len(pairs))
    sample = random.Random(config.seed).sample(pairs, wanted)
    if config.par.shuffle_labels:
        sample = shuffled_labels(sample, config.seed)
    whole_steps = len(sample) // config.par.pairs_per_step * config.par.pairs_per_step
    if whole_steps == 0:
        raise ConfigError(f"par.pairs_per_step={config.par.pairs_per_step} but only {len(sample)} training pairs")
    return sample[:whole_steps]


def shuffled_labels(pairs: Sequence[PreferencePair], seed: int) -> list[PreferencePair]:
    """The control's pairs: chosen and rejected swapped in a seeded half, so a label says nothing."""
    rng = random.Random(f"shuffle-labels/{seed}")
    swap = set(rng.sample(range(len(pairs)), len(pairs) // 2))
    return [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen) if i in swap else p for i, p in enumerate(pairs)]


def prompt_rows(pairs: Sequence[PreferencePair], judge: Judge) -> list[dict[str, str]]:
    """One row per (pair, side), the two sides of a pair adjacent: prompt text, pair_id, side."""
    rows = []
    for request in requests_for_pairs(pairs):
        text, _ = judge.prompt_text(request)
        rows.append({"prompt": text, "pair_id": request.pair_id, "side": request.side})
    return rows


def _check_plain_tokenization(tokenizer: Any, text: str) -> None:
    """TRL tokenizes text prompts with special tokens on; the judge at evaluation does not.

    For SmolLM2 and Qwen3 that is the same; a tokenizer that adds a BOS token would train on
    prompts the evaluated judge never sees, so we stop instead.
    """
    if tokenizer(text)["input_ids"] != tokenizer(text, add_special_tokens=False)["input_ids"]:
        raise ModelError(
            "the tokenizer adds special tokens to the already chat-formatted prompt, so training "
            "prompts would differ from evaluation prompts; use a model whose tokenizer does not"
        )


# ---------------------------------------------------------------- rewards


def _gather_from_processes(local: list[Any]) -> tuple[list[list[Any]], int]:
    """Every process's list in process order, and this process's index (one process: itself)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [local], 0
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return parts, dist.get_rank()


def evaluation_first_word(text: str) -> str | None:
    """The first word of a judgment's <evaluation> section, lower-cased; None without a (complete, non-empty) one.

    SFT's evaluations open with one word per score band ("Weak", "Partly", "Handles"), so the
    spread of first words shows whether rollouts still differ in what they say or collapse onto
    one band. The section is the parser's (`prompts.evaluation_text`: outside a <think> block).
    """
    section = evaluation_text(text)
    word = _WORD.search(section) if section else None
    return word.group(0).lower() if word else None


def score_entropy(scores: Sequence[int | None]) -> float | None:
    """Shannon entropy (bits) of the valid scores' distribution over 1..10; None without one.

    0 when every rollout gives the same score, log2(10) = 3.32 when all ten are equally common.
    """
    counts = Counter(s for s in scores if s is not None)
    total = sum(counts.values())
    if not total:
        return None
    return -sum(n / total * math.log2(n / total) for n in counts.values()) + 0.0  # + 0.0: no -0.0


def rollout_metrics(
    pair_ids: Sequence[str], sides: Sequence[str], scores: Sequence[int | None],
    rewards: Sequence[float], lengths: Sequence[int], first_words: Sequence[str | None],
) -> dict[str, float | None]:
    """What one step's rollouts say about the judge; a group is the rollouts of one (pair, side).

    A tie (equal mean scores, or a side without any valid score) gives PAR's binary reward
    nothing to separate the sides by; falling score entropy and a growing top band share are
    the judge collapsing onto one score.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for index, key in enumerate(zip(pair_ids, sides)):
        groups.setdefault(key, []).append(index)
    group_stds = [statistics.pstdev([rewards[i] for i in members]) for members in groups.values()]
    accuracies = [
        pair_accuracy([scores[i] for i in groups.get((pid, "chosen"), [])],
                      [scores[i] for i in groups.get((pid, "rejected"), [])])
        for pid in dict.fromkeys(pair_ids)
    ]
    scored = [a for a in accuracies if a is not None]
    bands = Counter(word for word in first_words if word is not None)
    return {
        "reward_mean": statistics.fmean(rewards),
        "pair_accuracy": statistics.fmean(scored) if scored else None,  # pairs with a valid score on both sides
        "parse_rate": sum(s is not None for s in scores) / len(scores),
        "completion_length_mean": statistics.fmean(lengths),
        "group_reward_std_mean": statistics.fmean(group_stds),
        "zero_std_group_share": sum(std == 0 for std in group_stds) / len(group_stds),
        "tie_rate": sum(a is None or a == 0.5 for a in accuracies) / len(accuracies),  # 0.5: equal means
        "score_entropy": score_entropy(scores),
        # judgments with an evaluation section; TRL's log_metric takes floats only, so not the whole counter
        "band_top_share": bands.most_common(1)[0][1] / bands.total() if bands else None,
        "band_count": float(len(bands)),
    }


def make_gathered_par_reward(mode: str, format_weight: float) -> Callable[..., list[float]]:
    """A TRL reward function that computes PAR over the whole step, across processes.

    Each process parses its own completions, all processes exchange (pair_id, side, score,
    length, evaluation's first word), each computes the same rewards and metrics for the whole
    step and returns its slice. The metrics go to TRL's `log_metric`, so they appear in every log line.
    """

    def par_reward(
        prompts: list[Any], completions: list[Any], completion_ids: list[list[int]],
        pair_id: list[str], side: list[str], log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        texts = [completion_text(c) for c in completions]
        local = [
            (pid, s, parse_judgment(text).score, len(ids), evaluation_first_word(text))
            for pid, s, text, ids in zip(pair_id, side, texts, completion_ids, strict=True)
        ]
        parts, rank = _gather_from_processes(local)
        pair_ids, sides, scores, lengths, first_words = zip(*(row for part in parts for row in part))
        rewards = rewards_for_batch(pair_ids, sides, scores, mode, format_weight)
        if log_metric is not None:
            for name, value in rollout_metrics(pair_ids, sides, scores, rewards, lengths, first_words).items():
                if value is not None:
                    log_metric(METRIC_PREFIX + name, value)
        start = sum(len(part) for part in parts[:rank])
        return rewards[start:start + len(local)]

    par_reward.__name__ = f"par_{mode}"  # TRL logs each reward under its function's name
    return par_reward


# ---------------------------------------------------------------- trainer pieces


def grpo_args(config: RunConfig, output_dir: Path, rows_per_step: int | None = None) -> Any:
    """GRPOConfig with every setting whose TRL default has moved between versions set from `config.par`.

    One optimizer step judges `pairs_per_step` pairs (`rows_per_step` = 2 * pairs_per_step
    dataset rows; a policy's step reads its own number of prompts): rows * par.rollouts.n
    completions, shared by the processes and the gradient-accumulation micro-batches. The
    process count comes from WORLD_SIZE, which every launcher (accelerate, torchrun,
    deepspeed) sets. Without a GPU the trainer runs on CPU; several CPU processes then join
    over gloo (configs/accelerate/cpu_2proc.yaml). Dropout is off (`lora_dropout_in_use` records it).
    """
    import torch
    from trl import GRPOConfig

    par = config.par
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))
    rows = rows_per_step or 2 * par.pairs_per_step
    completions = rows * par.rollouts.n
    per_device, remainder = divmod(completions, num_processes * par.gradient_accumulation_steps)
    if remainder or per_device == 0:
        raise ConfigError(
            f"{rows} rows x {par.rollouts.n} rollouts = {completions} completions per step must divide "
            f"evenly over {num_processes} processes x par.gradient_accumulation_steps="
            f"{par.gradient_accumulation_steps}"
        )
    args = GRPOConfig(
        output_dir=str(output_dir),
        use_cpu=not torch.accelerator.is_available(),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=par.gradient_accumulation_steps,
        num_generations=par.rollouts.n,
        shuffle_dataset=False,  # pairs stay adjacent; training_pairs already shuffled them (seeded)
        max_steps=par.max_steps,
        learning_rate=par.learning_rate,
        lr_scheduler_type=par.lr_scheduler_type,
        beta=par.beta,
        entropy_coef=par.entropy_coef or 0.0,
        loss_type=par.loss_type,
        scale_rewards=par.scale_rewards,
        epsilon=par.epsilon,
        num_iterations=par.num_iterations,
        mask_truncated_completions=par.mask_truncated_completions,
        # Dropout off (TRL sets p=0 on every nn.Dropout of the policy, LoRA's lora_dropout included):
        # with it on, the loss and its gradients are taken on a randomly perturbed policy, not the one
        # that sampled. SFT keeps lora.dropout.
        disable_dropout=True,
        max_completion_length=par.rollouts.max_new_tokens,
        temperature=par.rollouts.temperature,
        top_p=par.rollouts.top_p,
        top_k=0,  # as the judge at evaluation: nucleus sampling only, no hidden top-k
        bf16=par.bf16,
        gradient_checkpointing=par.gradient_checkpointing,
        use_vllm=par.use_vllm,
        vllm_mode=par.vllm_mode,
        vllm_gpu_memory_utilization=par.vllm_gpu_memory_utilization,
        vllm_max_model_length=config.judge.max_model_len,
        vllm_importance_sampling_correction=par.vllm_importance_sampling,
        save_strategy="steps",
        save_steps=par.save_steps,
        logging_steps=par.logging_steps,
        report_to=par.report_to or "none",
        seed=config.seed,
    )
    if args.world_size != num_processes:
        raise RuntimeError(f"WORLD_SIZE is {num_processes} but the trainer sees {args.world_size} processes")
    return args


def metrics_callback(path: Path, step_key: str = REWARD_KEY) -> Any:
    """A TrainerCallback appending one JSON line per logged step to `path`, with seconds per step.

    A step's log line is the one holding `step_key` (PAR's reward; TRL's "reward" for a policy).

    Defined inside a function so that importing this module does not import transformers.
    """
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        def __init__(self) -> None:
            self.started, self.seconds = 0.0, []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self.started)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs or step_key not in logs:
                return  # other processes, and the end-of-training summary line
            row = {"step": state.global_step, "seconds_per_step": statistics.fmean(self.seconds or [0.0]), **logs}
            self.seconds = []
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")

    return MetricsFile()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The step records of an append-only metrics file; a record counts once its newline is written.

    A last line without a newline is a write that was cut (a crash, a kill): it is dropped with
    a warning, even when it parses, and `train_par(resume=True)` cuts it off the file. A line
    before it that is not a JSON object with a `step` is damage we cannot repair: an error.
    """
    if not path.is_file():
        return []
    complete, newline, torn = path.read_bytes().rpartition(b"\n")
    if torn.strip():
        line_number = complete.count(b"\n") + len(newline) + 1
        warnings.warn(f"{path}: line {line_number} has no newline (its write was cut); it is ignored", stacklevel=2)
    rows = []
    for number, line in enumerate(complete.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:  # JSON errors and undecodable bytes
            raise DataError(f"{path}: line {number}: not valid JSON ({err}); the file is damaged") from None
        if not isinstance(row, dict) or "step" not in row:
            raise DataError(f"{path}: line {number}: not a step record (a JSON object with a 'step'); the file is damaged")
        rows.append(row)
    return rows


def _keep_metrics_up_to(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint (all of them without one): those steps run again."""
    if not path.is_file():
        return
    rows = [row for row in read_metrics(path) if row["step"] <= step]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


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


def lora_dropout_in_use(model: Any) -> float:
    """The largest dropout probability of the model's LoRA dropout modules (0.0 when none drops), for the record."""
    from torch import nn

    return max((m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout) and ".lora_dropout." in name),
               default=0.0)


def train_top_layers_only(model: Any, n_top: int) -> dict[str, int]:
    """Freeze every trainable weight below the top `n_top` transformer layers.

    Autograd then stops the backward pass at the lowest layer that still trains, and the
    frozen layers keep no activations for it: the update costs about one forward pass plus a
    backward through `n_top` layers instead of through all of them. Works the same on a fresh
    LoRA adapter and on a loaded (SFT) one. Returns layer and parameter counts for the record.
    """
    n_layers = model.config.num_hidden_layers
    if n_top > n_layers:
        raise ConfigError(f"par.trainable_layers={n_top} but {model.config.name_or_path} has {n_layers} layers")
    lowest = n_layers - n_top
    for name, param in model.named_parameters():
        found = _LAYER_INDEX.search(name)
        if param.requires_grad and (found is None or int(found.group(1)) < lowest):
            param.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError(f"par.trainable_layers={n_top} leaves no trainable weights (are the LoRA targets in those layers?)")
    return {"layers": n_layers, "trained_layers": n_top, "trainable_parameters": sum(p.numel() for p in trainable)}


def project_completion_tokens_only(enabled: bool) -> None:
    """Choose whether TRL's fused LM head skips the prompt positions on CPU (process-wide).

    TRL 1.16 computes per-token log-probabilities with a chunked LM-head kernel. On Triton
    devices it projects only the positions it scores (the completion); elsewhere it projects
    every position, prompt included, so that shapes stay fixed for compilers such as Neuron's,
    and masks the prompt afterwards. CPUs compile nothing here, and the vocabulary projection
    of the prompt, forward and backward in fp32, was most of a PAR step's update on 2 cores
    (`benchmarks/grpo_step.py`). TRL decides this with `_use_triton` in `trl.trainer.utils`
    (and only there: the kernels' own choice of code path is untouched), so we answer "yes"
    for CPU tensors. The scored log-probabilities are the same (tests/test_train.py).
    """
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton

    def compact_on_cpu(device: Any) -> bool:
        return device.type == "cpu" or _use_triton(device)

    trl_utils._use_triton = compact_on_cpu if enabled else _use_triton


def _with_lora_delta(layer: Any, weight: Any) -> Any:
    """`weight` (the layer's base weight) plus its active adapters' deltas: summed in fp32, cast once, a new tensor."""
    import torch

    with torch.no_grad():
        total = weight.float()
        for adapter in layer.active_adapters:
            if adapter in layer.lora_A:
                total = total + layer.get_delta_weight(adapter).float()  # PEFT's delta: scaling, fan_in_fan_out
        return total.to(weight.dtype)


def served_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """The weights a rollout engine serves for a PEFT LoRA `model`, under checkpoint names; the model is only read.

    TRL's `_iter_named_params` (trl/generation/vllm_generation.py, PEFT branch) merges the adapter
    into the base weights in place (`merge_adapter`), yields them and unmerges (`unmerge_adapter`).
    In bf16 that round trip rounds twice and does not give the base back: one merge/unmerge with an
    SFT-sized adapter changed 2.1% of SmolLM2's LoRA-wrapped base weights (up to 0.0078), and with the
    adapter moving between syncs, as in training, 12.5% after 16 syncs, so the "frozen" base drifted.
    Here each LoRA-wrapped weight is built out of place: base in fp32 plus PEFT's own delta of each
    active adapter, cast once to the base dtype. Other parameters are yielded as they are. Names as
    TRL makes them: "base_model.model." and ".base_layer" removed, LoRA parameters and
    modules_to_save originals left out, "modules_to_save.default." and checkpoint wrappers stripped.
    """
    from peft.tuners.lora import LoraLayer

    lora_layers = {}
    for module in model.modules():
        if isinstance(module, LoraLayer):
            if module.merged or module.lora_variant or any(module.lora_bias.values()):
                raise NotImplementedError("served_weights handles unmerged plain LoRA only (no DoRA/variants, no lora_bias)")
            lora_layers[id(module.get_base_layer().weight)] = module
    for name, param in model.named_parameters():
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if model.prefix in name or "original_module" in name:
            continue
        name = name.replace("_checkpoint_wrapped_module.", "").replace("modules_to_save.default.", "")
        layer = lora_layers.get(id(param))
        yield name, param.data if layer is None else _with_lora_delta(layer, param.data)


def serve_weights_out_of_place(generation: Any) -> None:
    """Make TRL's vLLM weight sync read `served_weights` instead of merging the LoRA in place.

    TRL's own sync (GPU colocate, server mode) and the kit's CPU reload all take their tensors from
    `generation._iter_named_params()`, so replacing that one method means TRL never calls
    `merge_adapter`/`unmerge_adapter` and the trainer's base weights are never written. Under
    DeepSpeed ZeRO-3 the parameters are gathered first, as TRL does. FSDP (TRL walks its shards
    its own way) is refused rather than synced wrongly; the kit ships no FSDP config.
    """
    from accelerate.utils import is_peft_model  # TRL's own test for its PEFT branch

    if not is_peft_model(generation.model):
        return  # without LoRA TRL merges nothing
    if generation._dist.is_fsdp:
        raise ConfigError("PAR training with vLLM and FSDP is not supported (the weight sync would merge LoRA in place)")

    def iter_named_params() -> Iterator[tuple[str, Any]]:
        with generation._dist.gather_params(list(generation.model.parameters())):
            yield from served_weights(generation.model)

    generation._iter_named_params = iter_named_params


def sync_by_inplace_reload(generation: Any) -> None:
    """Make TRL's colocated vLLM take the trained weights the way vLLM's CPU build can.

    TRL's colocate sync loads the merged weights tensor by tensor into the engine's model. The
    CPU build repacks every linear weight for its kernels after loading and drops the original
    parameter, so that fails ("'Parameter' object has no attribute 'weight_loader'"). vLLM's
    own in-place reload takes checkpoint-format weights (`generation._iter_named_params()`, which
    `serve_weights_out_of_place` makes yield the out-of-place merged weights), restores the layers,
    loads and repacks them (copying: the trainer's tensors are only read). The prefix cache holds
    KV entries of the old weights, so it is dropped. The GRPO canary test proves the rollouts then
    come from the updated weights.
    """

    def sync_weights() -> None:  # colocate runs vLLM's worker in this process: the tensors are not sent anywhere
        reload_in_place(generation.llm, weights_iterator=generation._iter_named_params())

    generation.sync_weights = sync_weights


LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def rollout_engine_release(generation: Any, environment_before: dict[str, str | None]) -> Any:
    """A TrainerCallback that stops a one-process trainer's colocated vLLM when training ends.

    TRL's colocated vLLM sets the launcher variables (RANK, WORLD_SIZE, ...) and starts a
    one-process torch.distributed group for itself. Left behind, a later trainer in the same
    process (the BT baseline in notebook 03) would take itself for a distributed run and wrap
    its model in DDP; the engine would also keep its memory. So the engine, vLLM's groups and
    the variables go back to how they were before the trainer was built.
    """
    from transformers import TrainerCallback

    class ReleaseRolloutEngine(TrainerCallback):
        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            generation.llm.llm_engine.engine_core.shutdown()
            del generation.llm
            cleanup_dist_env_and_memory()  # vLLM's own teardown: its groups, the process group, memory
            for name, value in environment_before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    return ReleaseRolloutEngine()


# ---------------------------------------------------------------- the stage


def make_grpo_trainer(
    config: RunConfig, model: Any, tokenizer: Any, dataset: Any, reward_funcs: Any, output_dir: Path,
    peft_config: Any = None, callbacks: Sequence[Any] = (), rows_per_step: int | None = None,
) -> Any:
    """TRL's GRPOTrainer with `config.par`'s settings and the kit's cheaper update (see configs/cpu.yaml).

    On top of TRL: only the top `par.trainable_layers` layers train; on CPU the LM head
    projects completion tokens only; vLLM gets the LoRA weights merged out of place (never into
    the trainer's base), by an in-place reload on CPU; dropout is off (`grpo_args`). PAR
    training, the downstream policies (policy.py) and the GRPO canary test build their trainer here.
    """
    from trl import GRPOTrainer

    par = config.par
    project_completion_tokens_only(par.completion_only_logprobs)
    if par.use_vllm:
        engine_environment(config.judge.kv_cache_gib)  # before TRL starts its engine, which reads it
    environment_before = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward_funcs, args=grpo_args(config, output_dir, rows_per_step), train_dataset=dataset,
        processing_class=tokenizer, peft_config=peft_config, callbacks=list(callbacks),
    )
    if par.trainable_layers is not None:  # before train() builds the optimizer from what requires grad
        train_top_layers_only(trainer.model, par.trainable_layers)
    if par.use_vllm:
        serve_weights_out_of_place(trainer.vllm_generation)
    if par.use_vllm and par.vllm_mode == "colocate":
        seed_rollout_stream(config.seed, trainer.accelerator.process_index)
        if trainer.model.device.type == "cpu":
            sync_by_inplace_reload(trainer.vllm_generation)
        if trainer.accelerator.num_processes == 1:
            trainer.add_callback(rollout_engine_release(trainer.vllm_generation, environment_before))
    return trainer


def rollout_sampling_seed(seed: int, process_index: int) -> int:
    """The seed of one process's rollout sampling stream: a function of the run's seed."""
    return 1000 * seed + process_index


def seed_rollout_stream(seed: int, process_index: int) -> None:
    """Seed the colocated vLLM's sampling stream from the run's seed.

    TRL starts its colocated engine with seed = the process index, whatever `args.seed`, and the
    engine's worker runs in this process and samples (no per-request seeds) from torch's global
    generator. Two runs that differ only in `seed` would then share every rollout draw: one draw,
    not two replicates. Seeding here, after the engine started, gives each run seed its own stream;
    a resumed run continues it (the trainer saves and restores the generator's state).
    """
    from transformers import set_seed

    set_seed(rollout_sampling_seed(seed, process_index))


def rollout_settings(config: RunConfig, device: str) -> dict[str, Any]:
    """Which engine sampled PAR's rollouts and how, for the run's record."""
    par = config.par
    if not par.use_vllm:
        return {"engine": "transformers", "device": device}
    package, version = vllm_package()
    return {"engine": "vllm", "package": package, "version": version, "device": device, "mode": par.vllm_mode,
            "weight_sync": "in-place reload" if device == "cpu" and par.vllm_mode == "colocate" else "TRL",
            "lora_merge": "out of place (fp32 base + delta, cast once; train.served_weights)",
            "sampling_seed": rollout_sampling_seed(config.seed, 0) if par.vllm_mode == "colocate" else None,
            "importance_sampling": par.vllm_importance_sampling, "kv_cache_gib": config.judge.kv_cache_gib}


def build_trainer(
    config: RunConfig, pairs: Sequence[PreferencePair], output_dir: Path,
    start_adapter: Path | None = None, callbacks: Sequence[Any] = (),
) -> Any:
    """A GRPOTrainer over the judge prompts of `pairs`, LoRA on the base model or on `start_adapter`."""
    from datasets import Dataset

    model, tokenizer = load_model(config.model, adapter=start_adapter, trainable=True)
    rows = prompt_rows(pairs, prompt_judge(config, tokenizer))
    _check_plain_tokenization(tokenizer, rows[0]["prompt"])
    return make_grpo_trainer(
        config, model, tokenizer, Dataset.from_list(rows), make_gathered_par_reward(config.par.mode, config.par.format_weight),
        output_dir, peft_config=None if start_adapter else lora_config(config.lora),  # a loaded adapter is trained as is
        callbacks=callbacks,
    )


def training_done(run: Run, judge: str = "par") -> bool:
    """Whether the manifest records PAR training `judge` ("par", "par-<variant>") as finished, its adapter saved."""
    record = run.manifest().get("training", {}).get(judge, {})
    return record.get("status") == "done" and (run.layout.for_par(judge).par_adapter / ADAPTER_WEIGHTS).is_file()


def recorded_par(run: Run, judge: str = "par") -> ParResult:
    """A finished PAR training as `train_par` returned it, read back from the manifest and its metrics file."""
    layout, record = run.layout.for_par(judge), run.manifest()["training"][judge]
    optional = (lambda path: Path(path) if path else None)
    return ParResult(layout.par_adapter, layout.par_checkpoints, layout.par_metrics, read_metrics(layout.par_metrics),
                     record["global_step"], record["n_pairs"], optional(record["resumed_from"]),
                     optional(record["start_adapter"]))


def train_par(config: RunConfig, run: Run, start_adapter: Path | None = None, resume: bool = False,
              judge: str = "par") -> ParResult:
    """Train the judge with PAR: checkpoints every `par.save_steps`, final adapter in <run>/par/adapter.

    `start_adapter` (the SFT adapter) is loaded trainable and trained further; without it a
    fresh LoRA adapter is added. `resume` continues from the latest checkpoint in
    <run>/par/checkpoints (from step 0 when there is none yet). Under `accelerate launch`
    every process calls this; only the main process writes the manifest, metrics and card.
    """
    layout = run.layout.for_par(judge)  # "par", or a variant's "par-<name>"
    checkpoints, adapter_dir, metrics_path = layout.par_checkpoints, layout.par_adapter, layout.par_metrics
    checkpoint = latest_checkpoint(checkpoints)
    if not resume and (checkpoint_folders(checkpoints) or adapter_dir.exists() or metrics_path.exists()):
        raise FileExistsError(f"{layout.par_dir} already holds PAR training; pass resume=True (--resume) to continue it")
    if checkpoint is not None:
        recorded = run.manifest().get("training", {}).get(judge, {}).get("config_fingerprint")
        if recorded != config.fingerprint():
            raise ConfigError(f"{checkpoint} was made with another config; resume with the same profile and --set")
    data_file = layout.pairs("train")
    pairs = training_pairs(config, data_file)
    trainer = build_trainer(config, pairs, checkpoints, start_adapter, [metrics_callback(metrics_path), checkpoint_marker()])
    record = {
        "config_fingerprint": config.fingerprint(),
        "start_adapter": str(start_adapter) if start_adapter else None,
        "data": str(data_file),
        "data_sha256": sha256_of(data_file),
        "n_pairs": len(pairs),
        "par_settings": {k: v for k, v in dataclasses.asdict(config.par).items() if k != "variants"},
        "num_processes": trainer.args.world_size,
        "rollouts": rollout_settings(config, trainer.model.device.type),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "lora_dropout": lora_dropout_in_use(trainer.model),  # during GRPO (config.lora.dropout is SFT's)
        "grpo_args": json.loads(trainer.args.to_json_string()),  # every TRL setting, defaults included
        "resumed_from": str(checkpoint) if checkpoint else None,
        "started": now(),
    }
    main_process = trainer.accelerator.is_main_process
    if main_process:
        for path in remove_partial_saves(layout):
            print(f"[par] removed {layout.relative(path)}: left half-written by a stopped run")
        resumed_step = read_json(checkpoint / "trainer_state.json")["global_step"] if checkpoint else 0
        _keep_metrics_up_to(metrics_path, resumed_step)
        run.update("training", judge, {**record, "status": "running"})

    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    staged = adapter_staging(adapter_dir)
    save_trained_adapter(trainer, staged)

    metrics = read_metrics(metrics_path)
    if main_process:
        (staged / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest holds grpo_args as JSON
        record.update(status="done", finished=now(), global_step=trainer.state.global_step,
                      last_metrics=metrics[-1] if metrics else {})
        write_adapter_card(staged, config, record)
        publish_adapter(staged, adapter_dir)
        run.update("training", judge, record)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.num_processes > 1:
        # Tear the process group down while every rank is still here; a rank that exits with
        # gloo connections open can abort the other ("terminate called without an active exception").
        trainer.accelerator.state.destroy_process_group()
    return ParResult(adapter_dir, checkpoints, metrics_path, metrics, trainer.state.global_step, len(pairs),
                     checkpoint, start_adapter)
