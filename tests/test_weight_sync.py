"""The weights GRPO hands to vLLM: LoRA merged out of place, the trainer's bf16 base never written."""

from __future__ import annotations

import pytest

from patarm_kit.config.loader import load_config

SYNCS = 16


def lora_model_with_an_sft_sized_adapter():
    """SmolLM2 (bf16, the kit's loader) with a LoRA adapter whose B is non-zero, as after SFT.

    B ~ N(0, 0.01): deltas of ~0.0015 on base weights of ~0.19 (mean absolute values), so a delta
    is a few bf16 steps of its weight, the regime where rounding shows.
    """
    import torch
    from peft import get_peft_model

    from patarm_kit.judging.models import load_model, lora_config

    config = load_config("smoke", {"model.torch_threads": 1})
    model = get_peft_model(load_model(config.model, trainable=True)[0], lora_config(config.lora))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01)
    return model


def base_weights(model) -> dict[str, object]:
    return {name: param.detach().clone() for name, param in model.named_parameters() if ".base_layer." in name}


def training_step(model, generator) -> None:
    """What an optimizer step does between two syncs: the adapter moves."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 1e-3)


class Accelerator:
    """What TRL's DistributedBackend and server-mode sync read: no DeepSpeed, no FSDP, one main process."""

    class state:  # noqa: N801 - the attribute DistributedBackend reads
        deepspeed_plugin = None

    is_main_process = True


class RecordingEngine:
    """vLLM's LLM as the kit's CPU sync calls it (`reload_in_place`); records the weights it is given."""

    def __init__(self):
        self.received: list[tuple[str, object]] = []

    def collective_rpc(self, method, kwargs):
        assert method == "reload_weights" and kwargs["is_checkpoint_format"]
        self.received = [(name, tensor.clone()) for name, tensor in kwargs["weights_iterator"]]

    def reset_prefix_cache(self):
        return True


class RecordingClient:
    """TRL's VLLMClient as TRL's server-mode sync calls it."""

    def __init__(self):
        self.received: list[tuple[str, object]] = []

    def update_named_params(self, metadata, named_params):
        self.received = [(name, tensor.clone()) for name, tensor in named_params]
        assert [name for name, _, _ in metadata] == [name for name, _ in self.received]

    def reset_prefix_cache(self):
        pass


def trl_generation(model, mode: str):
    """TRL's own VLLMGeneration without starting vLLM: its real sync_weights, a recording engine or client."""
    from trl.distributed import DistributedBackend
    from trl.generation.vllm_generation import VLLMGeneration

    generation = VLLMGeneration.__new__(VLLMGeneration)
    generation.model, generation.accelerator, generation.mode = model, Accelerator(), mode
    generation._dist = DistributedBackend(Accelerator())
    generation.enable_sleep_mode, generation._weight_metadata = False, None
    generation.llm, generation.vllm_client = RecordingEngine(), RecordingClient()
    return generation


def no_merging(model, monkeypatch) -> None:
    def refuse():
        pytest.fail("the sync merged the adapter into the trainer's weights in place")

    monkeypatch.setattr(model.base_model, "merge_adapter", refuse)
    monkeypatch.setattr(model.base_model, "unmerge_adapter", refuse)


def assert_served(received, model, snapshot) -> None:
    """Checkpoint names of the plain model, each once; LoRA-wrapped weights (snapshot base in fp32 +
    PEFT's delta, cast to bf16 once), every other parameter as the trainer holds it."""
    import torch
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(model.config)
    served = dict(received)
    assert list(served) == [name for name, _ in plain.named_parameters()]
    trainer_params = dict(model.named_parameters())
    lora_layers = {name.removeprefix("base_model.model."): module
                   for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    assert len(lora_layers) == 4 * model.config.num_hidden_layers
    for name, tensor in served.items():
        layer = lora_layers.get(name.removesuffix(".weight"))
        if layer is None:
            assert torch.equal(tensor, trainer_params["base_model.model." + name]), name
        else:
            base = snapshot["base_model.model." + name.removesuffix(".weight") + ".base_layer.weight"]
            expected = (base.float() + layer.get_delta_weight("default").float()).to(torch.bfloat16)
            assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, expected), name


def assert_base_untouched(model, snapshot) -> None:
    import torch

    for name, param in model.named_parameters():
        if name in snapshot:
            assert torch.equal(param, snapshot[name]), f"{name} was written by the sync"


@pytest.mark.model
def test_peft_merge_and_unmerge_in_bf16_change_the_base_weights():
    """What TRL's own sync does to the trainer each step, so the tests below would catch it
    (measured: 2.1% of the LoRA-wrapped weights changed after one round trip, 12.5% after 16 with
    the adapter moving in between)."""
    import torch

    model = lora_model_with_an_sft_sized_adapter()
    before = base_weights(model)
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        training_step(model, generator)
        model.merge_adapter()
        model.unmerge_adapter()
    after = base_weights(model)
    changed = sum((after[name] != before[name]).sum().item() for name in before)
    assert changed / sum(t.numel() for t in before.values()) > 0.01


@pytest.mark.model
@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_a_sync_serves_base_plus_delta_and_never_writes_the_trainers_base(monkeypatch, mode):
    """colocate on CPU: the kit's in-place reload, SYNCS times with the adapter moving in between;
    server (and GPU colocate): TRL's own sync_weights. Neither may merge in place."""
    import torch

    from patarm_kit.training.weight_sync import serve_weights_out_of_place, sync_by_inplace_reload

    model = lora_model_with_an_sft_sized_adapter()
    no_merging(model, monkeypatch)
    snapshot = base_weights(model)
    generation = trl_generation(model, mode)
    serve_weights_out_of_place(generation)
    if mode == "colocate":
        sync_by_inplace_reload(generation)
    receiver = generation.llm if mode == "colocate" else generation.vllm_client
    generator = torch.Generator().manual_seed(1)
    for _ in range(SYNCS if mode == "colocate" else 2):
        training_step(model, generator)
        generation.sync_weights()
        assert_served(receiver.received, model, snapshot)
    assert_base_untouched(model, snapshot)
