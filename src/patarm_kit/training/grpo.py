"""The GRPO toolkit shared by PAR and the policies: TRL's GRPOTrainer built with the kit's settings.

Arguments (dropout off, rewards not std-scaled where the profile says so), the per-step metrics
log, LoRA placement (every layer or the top N), the completion-only LM head and the rollout
sampling stream. What is rewarded is the caller's: PAR (training/par.py) or a policy's rewarder.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import statistics
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import DataError
from patarm_kit.judging.engine import engine_environment, vllm_package
from patarm_kit.judging.models import ModelError
from patarm_kit.runs.files import write_jsonl
from patarm_kit.training.weight_sync import (
    LAUNCHER_VARIABLES,
    rollout_engine_release,
    serve_weights_out_of_place,
    sync_by_inplace_reload,
)

_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")  # a transformer layer's parameters, in every decoder the kit loads

METRIC_PREFIX = "par/"  # the keys of a GRPO run's metrics log (one JSON line per step)
REWARD_KEY = METRIC_PREFIX + "reward_mean"


def check_plain_tokenization(tokenizer: Any, text: str) -> None:
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


def keep_metrics_up_to(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint (all of them without one): those steps run again."""
    if not path.is_file():
        return
    rows = [row for row in read_metrics(path) if row["step"] <= step]
    write_jsonl(path, rows, ensure_ascii=True)


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
    (`perf/grpo_step.py`). TRL decides this with `_use_triton` in `trl.trainer.utils`
    (and only there: the kernels' own choice of code path is untouched), so we answer "yes"
    for CPU tensors. The scored log-probabilities are the same (tests/test_train.py).
    """
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton

    def compact_on_cpu(device: Any) -> bool:
        return device.type == "cpu" or _use_triton(device)

    trl_utils._use_triton = compact_on_cpu if enabled else _use_triton


# ---------------------------------------------------------------- the stage


def make_grpo_trainer(
    config: RunConfig, model: Any, tokenizer: Any, dataset: Any, reward_funcs: Any, output_dir: Path,
    peft_config: Any = None, callbacks: Sequence[Any] = (), rows_per_step: int | None = None,
) -> Any:
    """TRL's GRPOTrainer with `config.par`'s settings and the kit's cheaper update (see configs/cpu.yaml).

    On top of TRL: only the top `par.trainable_layers` layers train; on CPU the LM head
    projects completion tokens only; vLLM gets the LoRA weights merged out of place (never into
    the trainer's base), by an in-place reload on CPU; dropout is off (`grpo_args`); a resume loads the
    trained adapter beside TRL's "ref" copy of the warm-up. PAR
    training, the downstream policies (training/policies.py) and the GRPO canary test build their trainer here.
    """
    from trl import GRPOTrainer

    par = config.par
    project_completion_tokens_only(par.completion_only_logprobs)
    if par.use_vllm:
        engine_environment(config.judge.kv_cache_gib)  # before TRL starts its engine, which reads it
    environment_before = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
    with eager_rollout_engine(colocated_rollouts(config) and not config.judge.compile):
        trainer = GRPOTrainer(
            model=model, reward_funcs=reward_funcs, args=grpo_args(config, output_dir, rows_per_step),
            train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config, callbacks=list(callbacks),
        )
    if par.trainable_layers is not None:  # before train() builds the optimizer from what requires grad
        train_top_layers_only(trainer.model, par.trainable_layers)
    resume_the_trained_adapter(trainer)
    if par.use_vllm:
        serve_weights_out_of_place(trainer.vllm_generation)
    if colocated_rollouts(config):
        seed_rollout_stream(config.seed, trainer.accelerator.process_index)
        if trainer.model.device.type == "cpu":
            sync_by_inplace_reload(trainer.vllm_generation)
        if trainer.accelerator.num_processes == 1:
            trainer.add_callback(rollout_engine_release(trainer.vllm_generation, environment_before))
    return trainer


def colocated_rollouts(config: RunConfig) -> bool:
    """Whether TRL samples the rollouts with a vLLM engine inside the trainer's process (not a server)."""
    return config.par.use_vllm and config.par.vllm_mode == "colocate"


@contextlib.contextmanager
def eager_rollout_engine(eager: bool) -> Iterator[None]:
    """While TRL's trainer is made, its colocated vLLM engine starts without torch.compile where `eager`.

    TRL starts that engine with vLLM's default, compiling, and has no switch for it; `judge.compile`
    is the kit's switch for every vLLM engine a run starts. The compile costs ~1 min of CPU per start
    (57 s of a PAR start in the smoke chain, measured with py-spy), which toy workloads never win back.
    """
    if not eager:
        yield
        return
    from trl.generation import vllm_generation  # TRL loads with its trainer, as in make_grpo_trainer

    with mock.patch.object(vllm_generation, "LLM", functools.partial(vllm_generation.LLM, enforce_eager=True)):
        yield


def resume_the_trained_adapter(trainer: Any) -> None:
    """On resume, load the checkpoint's trained adapter, and nothing else, into the model.

    Trained on from a warm-up with par.beta > 0, the model holds two adapters: the trained one and
    TRL's frozen copy of the warm-up, "ref" (the KL's reference, made again from the warm-up at every
    start). PEFT saves the trained one at the checkpoint's root and "ref" in a sub-folder, and
    transformers' Trainer, once it finds a sub-folder, loads the sub-folders alone and marks the
    active adapter trainable in every layer: a resumed training went on from the warm-up (its first
    KL was 0) with the checkpoint's optimizer, or, with par.trainable_layers, refused that optimizer.
    DeepSpeed restores the weights from its own state and does not come here."""
    load_from_checkpoint = trainer._load_from_checkpoint

    def load_the_trained_adapter(resume_from_checkpoint: str, model: Any = None) -> None:
        peft_model = trainer.model if model is None else model
        if len(getattr(peft_model, "peft_config", {})) < 2:
            return load_from_checkpoint(resume_from_checkpoint, model)
        peft_model.load_adapter(resume_from_checkpoint, peft_model.active_adapter, is_trainable=True)  # weights only

    trainer._load_from_checkpoint = load_the_trained_adapter


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
    colocated = colocated_rollouts(config)
    return {"engine": "vllm", "package": package, "version": version, "device": device, "mode": par.vllm_mode,
            "weight_sync": "in-place reload" if device == "cpu" and colocated else "TRL",
            "lora_merge": "out of place (fp32 base + delta, cast once; train.served_weights)",
            "sampling_seed": rollout_sampling_seed(config.seed, 0) if colocated else None,
            "importance_sampling": par.vllm_importance_sampling, "kv_cache_gib": config.judge.kv_cache_gib,
            "compile": config.judge.compile if colocated else None}  # a server: as it was started
