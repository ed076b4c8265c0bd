"""`patarm-kit plan`: its memory formulas against a real training step, its output, its refusals.

The formula check builds a tiny random Qwen3 (2 layers, hidden 128) saved as a local safetensors folder,
reads its architecture the way the plan does (config.json), attaches LoRA as the kit does
(judging.models.lora_config, PEFT), runs one forward, backward and AdamW step on CPU and sums the bytes
of the tensors (nbytes: deterministic, no timing, no RSS). Weights, LoRA parameters, gradients and
Adam state must equal the plan's formulas exactly. Activations are an estimate: the bytes the step
saved for backward (torch's saved-tensor hooks, each storage once, parameters left out) must be within
a factor 2 of it (measured here: 1.13-1.24x the formula, the decoder stack only, no LM head).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from patarm_kit import plan
from patarm_kit.cli import app
from patarm_kit.config.schema import LoraConfig, ModelConfig
from patarm_kit.judging.models import lora_config
from patarm_kit.training.grpo import train_top_layers_only

BATCH, SEQ = 2, 64


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random-initialised 2-layer Qwen3 in bf16, saved with safetensors (no tokenizer: the formulas need none)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=32, tie_word_embeddings=False)
    folder = tmp_path_factory.mktemp("tiny") / "qwen3-tiny"
    Qwen3ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    return folder


def one_training_step(folder, lora: LoraConfig, top_layers: int | None):
    """Load, attach LoRA, one step; the measured bytes of each kind, and the activations saved for backward."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, use_safetensors=True)
    model = get_peft_model(model, lora_config(lora))
    if top_layers is not None:
        train_top_layers_only(model, top_layers)
    model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, 512, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        hidden = model.get_base_model().model(input_ids=ids).last_hidden_state  # the decoder stack, LoRA inside
    hidden.float().square().mean().backward()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    optimizer.step()
    named = list(model.named_parameters())
    measured = {
        "weights": sum(p.nbytes for name, p in named if "lora_" not in name),
        "lora": sum(p.nbytes for name, p in named if "lora_" in name),
        "gradients": sum(p.grad.nbytes for _, p in named if p.grad is not None),
        "optimizer": sum(t.nbytes for state in optimizer.state.values() for t in state.values()),
    }
    return measured, sum(saved.values())


@pytest.mark.parametrize("top_layers, dropout", [(None, 0.05), (1, 0.0)])
def test_the_formulas_equal_the_bytes_of_a_real_step(tiny_model, top_layers, dropout):
    lora = LoraConfig(dropout=dropout)
    arch = plan.architecture(ModelConfig(name=str(tiny_model)))
    assert arch.source == str(tiny_model / "config.json") and (arch.layers, arch.hidden, arch.kv_heads) == (2, 128, 2)
    stage = plan.Stage("step", "one step", 2, True, top_layers or arch.layers, BATCH, SEQ, False, "test", dropout)
    measured, activations = one_training_step(tiny_model, lora, top_layers)
    assert plan.state_bytes(arch, lora, stage, "DDP", gpus=1) == measured
    estimate = plan.activation_bytes(arch, lora, stage, checkpointing=False)
    assert 0.5 <= activations / estimate <= 2, (activations, estimate)


@pytest.mark.parametrize("name", sorted(plan.KNOWN))
def test_the_known_architectures_count_the_parameters_transformers_builds(name):
    """The table's numbers through the plan's parameter count = the model transformers builds from them (meta device)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    arch = plan.KNOWN[name]
    config_class, model_class = (Qwen3Config, Qwen3ForCausalLM) if arch.model_type == "qwen3" else (LlamaConfig, LlamaForCausalLM)
    config = config_class(vocab_size=arch.vocab, hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                          num_hidden_layers=arch.layers, num_attention_heads=arch.heads, num_key_value_heads=arch.kv_heads,
                          head_dim=arch.head_dim, tie_word_embeddings=arch.tied)
    with torch.device("meta"):
        model = model_class(config)
    assert arch.params() == sum(p.numel() for p in model.parameters())


def test_zero_shards_as_the_paper_counts():
    """ZeRO: 2Ψ weights + 2Ψ gradients + 12Ψ Adam for the trained Ψ; ZeRO-2 divides the last two by N, ZeRO-3 all three."""
    arch, lora = plan.KNOWN["Qwen/Qwen3-8B"], LoraConfig()
    stage = plan.Stage("par", "PAR", 2, True, 8, 8, 8192, True, "test", 0.0)
    trained, base = plan.lora_params(arch, lora, 8), arch.params()
    assert trained == 8 * 16 * (2 * (4096 + 4096) + 2 * (4096 + 1024))  # r (d_in + d_out) per adapted matrix
    zero2, zero3 = (plan.state_bytes(arch, lora, stage, s, gpus=8) for s in ("ZeRO-2", "ZeRO-3"))
    assert zero2["weights"] == 2 * base and zero2["gradients"] == 2 * trained / 8 and zero2["optimizer"] == 12 * trained / 8
    assert zero3["weights"] == 2 * base / 8 and zero3["gradients"] == zero2["gradients"] and zero3["optimizer"] == zero2["optimizer"]


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_plan_for_qwen3_8b_on_8_gpus_of_80_gib():
    result = invoke("plan", "--profile", "qwen3-8b", "--gpus", 8, "--gpu-memory", 80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("plan: profile qwen3-8b, judge Qwen/Qwen3-8B, 8 GPUs x 80 GiB")
    assert "8.19 B parameters, 36 layers, hidden 4096" in lines[1] and "table (Qwen/Qwen3-8B config.json)" in lines[1]
    assert "15.34 M parameters (425,984 per layer)" in lines[2]
    headers = [line.split(":")[0] for line in lines if line and not line.startswith(" ") and ": " in line]
    assert headers[-4:] == ["sft", "par", "bt", "policies"]  # every training stage the profile runs, in order
    assert sum(line.strip().startswith("fits 80 GiB") for line in lines) == 4
    par = lines[lines.index(next(line for line in lines if line.startswith("par: "))):]
    rows = {line[:40].strip(): line[40:].split() for line in par[2:16]}
    assert rows["base weights (bfloat16; ZeRO: bf16)"] == ["15.26", "15.26", "1.91"]  # 2 bytes x 8.19 B; ZeRO-3: / 8
    assert rows["vLLM rollouts (0.3 x 80 GiB)"] == ["24.00"] * 3
    assert rows["fits 80 GiB"] == ["yes", "yes", "yes"]
    assert "LoRA trains in all 36 layers; gradient checkpointing on (par.gradient_checkpointing)" in par[1]
    assert any("generates <= 681.6 M" in line and "41,600 pairs" in line for line in par)


@pytest.mark.parametrize("args, named", [
    (["--gpus", 0], "--gpus must be at least 1, got 0"),
    (["--gpus", -2], "--gpus must be at least 1"),
    (["--gpu-memory", 0], "--gpu-memory must be more than 0 GiB"),
    (["--gpu-memory", -80], "--gpu-memory must be more than 0 GiB"),
    (["--profile", "no-such-profile"], "profile 'no-such-profile' not found"),
    (["--gpus", 3], "must divide evenly over 3 GPUs"),  # PAR's 256 completions per step over 3 GPUs x 4 micro-batches, as grpo_args refuses
    (["--set", "model.name=nobody/unknown-model"], "model 'nobody/unknown-model': no config.json"),
    (["--set", "lora.target_modules=[lm_head]"], "lora.target_modules"),
])
def test_bad_input_is_one_error_line(args, named):
    profile = [] if "--profile" in args else ["--profile", "qwen3-8b"]
    result = invoke("plan", *profile, *args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert named in lines[0], lines[0]


@pytest.mark.parametrize("profile", ["qwen3-8b", "qwen3-14b"])
def test_the_readme_shows_what_the_command_prints(profile, monkeypatch):
    """The README's plan blocks (8 GPUs x 80 GiB) are the command's output, not numbers typed by hand."""
    monkeypatch.setattr(plan, "try_to_load_from_cache", lambda *args, **kwargs: None)  # the table, whatever the hub cache holds
    readme = (plan.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(f"<!-- plan:begin {profile} -->\n```text\n", 1)[1].split("\n```\n<!-- plan:end -->", 1)[0]
    assert block == plan.plan_report(profile, 8, 80)
