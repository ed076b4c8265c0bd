"""How the trainer's weights reach the rollout engine, built out of place.

TRL's own sync merges the LoRA into the trainer's bf16 base and unmerges it, in place; the
round trip is lossy, so the "frozen" base drifts. Here the served weights are cast(base + delta)
computed in fp32 beside the trainer's weights, which are never written (issue #22, bug 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from patarm_kit.config.rules import ConfigError
from patarm_kit.judging.engine import reload_in_place


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
