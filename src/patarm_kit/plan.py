"""`patarm-kit plan`: what each training stage of a profile needs per GPU, before a GPU is rented.

No GPU is used: every number is a formula over the model's architecture and the profile's settings,
stated where it is computed, with its source. tests/test_plan.py checks the weight, LoRA, gradient and
Adam formulas byte for byte against a tiny real model after one training step, and the activation
estimate against the tensors that step saved. Memory is per GPU in GiB (2**30 bytes), under the three
launch configs the kit ships (configs/accelerate/): ddp.yaml (every GPU holds everything),
deepspeed_zero2.yaml (optimizer state and gradients sharded over the GPUs) and deepspeed_zero3.yaml
(the weights too). Not counted: the CUDA context and allocator fragmentation (a few GiB per GPU),
vLLM's own activations and CUDA graphs inside its share, DeepSpeed's communication buckets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import LoraConfig, ModelConfig, RunConfig
from patarm_kit.judging.models import BUNDLED_MODELS, ModelError

GIB = 1 << 30
STRATEGIES = ("DDP", "ZeRO-2", "ZeRO-3")
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
LAYOUTS = ("llama", "mistral", "qwen2", "qwen3")  # decoder layouts whose parameters are counted exactly below
# TRL 1.16's chunked log-probabilities (trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE, trl/trainer/utils.py
# _CHUNKED_LOGPROB_CHUNK_SIZE), used by SFTTrainer and GRPOTrainer: the LM head projects 4096 tokens onto
# 32768 vocabulary columns at a time, in fp32, so the full logits never exist at once.
LM_TILE_TOKENS, LM_TILE_VOCAB = 4096, 32768


@dataclass(frozen=True)
class Architecture:
    """The numbers of a decoder-only transformer that memory depends on (config.json's names, shortened)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    model_type: str = "qwen3"
    attention_bias: bool = False
    mlp_bias: bool = False
    source: str = ""

    def matrices(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear layer of one decoder layer, by module name."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def has_bias(self, name: str) -> bool:
        """As transformers builds the layer: Qwen2 has q/k/v biases; Llama and Qwen3 follow attention_bias
        (and Llama mlp_bias); Mistral has none (transformers/models/<type>/modeling_<type>.py)."""
        if self.model_type == "qwen2":
            return name in ("q_proj", "k_proj", "v_proj")
        if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")):
            return self.attention_bias and self.model_type != "mistral"
        return self.mlp_bias and self.model_type == "llama"

    def layer_params(self) -> int:
        """One decoder layer: its seven linear layers (with biases), two RMSNorms, Qwen3's per-head q/k norms."""
        linear = sum(d_in * d_out + (d_out if self.has_bias(name) else 0) for name, (d_in, d_out) in self.matrices().items())
        return linear + 2 * self.hidden + (2 * self.head_dim if self.model_type == "qwen3" else 0)

    def params(self, lm_head: bool = True) -> int:
        """Embedding, layers, final norm and, untied, the LM head (lm_head=False: a score-head model has none)."""
        head = self.vocab * self.hidden if lm_head and not self.tied else 0
        return self.vocab * self.hidden + self.layers * self.layer_params() + self.hidden + head

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """vLLM's KV cache per token: K and V of every layer, kv_heads x head_dim each."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


# Known hub ids, for when no config.json is at hand (the hub is not reachable here). Copied from the models'
# config.json on the hub (huggingface.co/Qwen/Qwen3-8B, /Qwen/Qwen3-14B); checked against a verbatim copy of
# both files in github.com/citsjtu2020/LLM-Prof, sglang/Model_Config.md. (transformers' Qwen3Config defaults
# are not Qwen3-8B's: intermediate 22016, 32 layers.) SmolLM2: the config.json the kit writes when it converts
# the bundled GGUF (judging.models.materialize_bundled; transformers 5.19), read from .cache when it is there.
KNOWN = {
    "Qwen/Qwen3-8B": Architecture(4096, 12288, 36, 32, 8, 128, 151936, tied=False, source="table (Qwen/Qwen3-8B config.json)"),
    "Qwen/Qwen3-14B": Architecture(5120, 17408, 40, 40, 8, 128, 151936, tied=False, source="table (Qwen/Qwen3-14B config.json)"),
    "smollm2-135m-instruct": Architecture(576, 1536, 30, 9, 3, 64, 49152, tied=True, model_type="llama",
                                          source="table (SmolLM2-135M-Instruct as the kit converts it)"),
}


def from_config_json(values: dict[str, Any], source: str) -> Architecture:
    """An Architecture from a transformers config.json; a layout not in LAYOUTS is refused, never guessed."""
    kind = values.get("model_type")
    if kind not in LAYOUTS:
        raise ModelError(f"{source}: model_type {kind!r}; plan counts the layouts {', '.join(LAYOUTS)}")
    try:
        heads = values["num_attention_heads"]
        return Architecture(
            values["hidden_size"], values["intermediate_size"], values["num_hidden_layers"], heads,
            values.get("num_key_value_heads") or heads, values.get("head_dim") or values["hidden_size"] // heads,
            values["vocab_size"], tied=bool(values.get("tie_word_embeddings", False)), model_type=kind,
            attention_bias=bool(values.get("attention_bias", False)), mlp_bias=bool(values.get("mlp_bias", False)),
            source=source)
    except KeyError as err:
        raise ModelError(f"{source}: no {err.args[0]}") from None


def architecture(model: ModelConfig) -> Architecture:
    """The judge model's architecture: its config.json (local folder, the converted bundled model, the
    local hub cache), else the KNOWN table; a model with neither is an error naming it."""
    name = model.name
    if name in BUNDLED_MODELS:
        cache = Path(model.cache_dir) if Path(model.cache_dir).is_absolute() else REPO_ROOT / model.cache_dir
        path: Path | None = cache / name / "config.json"
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser() / "config.json"
        if not path.is_file():
            raise ModelError(f"{path}: no such file (plan reads the model's architecture there)")
    else:
        try:
            cached = try_to_load_from_cache(name, "config.json")
        except ValueError:  # not a valid hub id
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    if path is not None and path.is_file():
        return from_config_json(json.loads(path.read_text(encoding="utf-8")), str(path))
    if name in KNOWN:
        return KNOWN[name]
    raise ModelError(f"model {name!r}: no config.json here (not a local folder, not in the hub cache) and not one "
                     f"plan knows ({', '.join(KNOWN)}); point model.name at a folder with its config.json")


def lora_params(arch: Architecture, lora: LoraConfig, layers: int) -> int:
    """LoRA parameters in `layers` decoder layers: r x (d_in + d_out) per adapted matrix (A is r x d_in,
    B is d_out x r; Hu et al. 2021, "LoRA", section 4.1). PEFT adds no bias (lora.bias "none")."""
    matrices = arch.matrices()
    unknown = [t for t in lora.target_modules if t not in matrices]
    if unknown:
        raise ConfigError(f"lora.target_modules: plan counts {', '.join(matrices)}, not {', '.join(unknown)}")
    return layers * sum(lora.r * sum(matrices[t]) for t in lora.target_modules)


@dataclass
class Stage:
    """One training stage as the kit runs it: what its memory and tokens depend on."""

    name: str
    title: str
    weight_bytes: int  # per frozen base weight under DDP: the dtype the stage loads the model in
    causal_lm: bool  # False: a one-output score head (BT), no vocabulary projection, no LM head
    trained_layers: int  # decoder layers whose LoRA weights train (the top ones)
    batch: int  # sequences per GPU per micro-batch
    seq: int  # tokens per sequence: an upper bound
    checkpointing: bool  # gradient checkpointing as the stage runs
    checkpointing_key: str  # the setting it comes from
    dropout: float  # LoRA dropout while training (GRPO turns it off)
    vllm: dict[str, float] = field(default_factory=dict)  # label -> bytes per GPU held by vLLM engines
    gathers_for_vllm: bool = False  # TRL syncs the LoRA-merged weights into a colocated vLLM every step
    vllm_starts: bool = True  # False: a vLLM share too small for the weights (then nothing fits)
    notes: list[str] = field(default_factory=list)


def state_bytes(arch: Architecture, lora: LoraConfig, stage: Stage, strategy: str, gpus: int) -> dict[str, float]:
    """Bytes per GPU of the base weights, LoRA parameters, gradients and Adam state.

    DDP (HF Trainer with PEFT; what tests/test_plan.py measures): the frozen base in the stage's load dtype;
    PEFT keeps LoRA weights in fp32 (autocast_adapter_dtype), so each is its own master copy: 4 bytes per LoRA
    parameter, 4 per gradient of a trained one, 8 for Adam's two fp32 moments, and one 4-byte step counter per
    trained tensor (torch.optim.AdamW). Over several GPUs PyTorch DDP keeps its all-reduce buckets as a second
    copy of the gradients (DistributedDataParallel's default gradient_as_bucket_view=False).
    ZeRO (Rajbhandari et al. 2020, "ZeRO", section 3: 2Ψ + 2Ψ + KΨ bytes for Ψ parameters, K = 12 for
    mixed-precision Adam): DeepSpeed's bf16 mode (mixed_precision: bf16 in the kit's configs) casts the model to
    bf16, 2 bytes per weight and per gradient, and keeps an fp32 master copy and the two fp32 moments in the
    optimizer, 12 bytes per trained parameter. ZeRO-2 divides gradients and the 12Ψ by the GPUs, ZeRO-3 the weights too.
    BT's score head (PEFT modules_to_save) is a frozen original plus a trained copy, hidden x 1 each.
    """
    head = 0 if stage.causal_lm else arch.hidden
    base = arch.params(lm_head=stage.causal_lm) + head
    adapter = lora_params(arch, lora, arch.layers) + head
    trained = lora_params(arch, lora, stage.trained_layers) + head
    tensors = 2 * len(lora.target_modules) * stage.trained_layers + (0 if stage.causal_lm else 1)
    if strategy == "DDP":
        buckets = 4 * trained if gpus > 1 else 0
        return {"weights": stage.weight_bytes * base, "lora": 4 * adapter, "gradients": 4 * trained + buckets,
                "optimizer": 8 * trained + 4 * tensors}
    weights_over = gpus if strategy == "ZeRO-3" else 1
    return {"weights": 2 * base / weights_over, "lora": 2 * adapter / weights_over, "gradients": 2 * trained / gpus,
            "optimizer": 12 * trained / gpus}


def layer_activation_bytes(arch: Architecture, lora: LoraConfig, dropout: float) -> int:
    """Bytes one decoder layer saves for the backward pass, per token, with 16-bit activations (an estimate).

    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", section 4.1)
    count sbh(34 + 5as/h) bytes per GPT layer. The same accounting for a gated (SwiGLU) MLP of width I, K and
    V at kv = kv_heads x head_dim, FlashAttention/SDPA (no s x s scores) and no dropout inside the layer:
    attention 6h + 4kv (the inputs of the QKV and output projections, Q, K, V), MLP 2h + 6I (its input; gate,
    up, their product), the two RMSNorm inputs 4h. Plus PEFT's LoRA on each adapted matrix: its input cast to
    the adapter's fp32, 4 d_in (with dropout also its mask, d_in), and A's output, 4r.
    """
    h, kv, i = arch.hidden, arch.kv_heads * arch.head_dim, arch.intermediate
    adapters = sum(4 * d_in + (d_in if dropout > 0 else 0) + 4 * lora.r
                   for name, (d_in, _) in arch.matrices().items() if name in lora.target_modules)
    return 12 * h + 4 * kv + 6 * i + adapters


def activation_bytes(arch: Architecture, lora: LoraConfig, stage: Stage, checkpointing: bool) -> int:
    """Activations of one micro-batch. Without checkpointing, the trained layers keep everything and the frozen
    layers below them nothing (nothing there needs a gradient: training/grpo.py train_top_layers_only). With
    transformers' checkpointing per decoder layer, each layer keeps only its input, 2h bytes per token, and
    every layer does (PEFT makes the embedding output require grad for it); the backward recomputes one layer."""
    tokens = stage.batch * stage.seq
    per_layer = layer_activation_bytes(arch, lora, stage.dropout)
    if not checkpointing:
        return stage.trained_layers * per_layer * tokens
    return (arch.layers * 2 * arch.hidden + per_layer) * tokens


def memory(arch: Architecture, lora: LoraConfig, stage: Stage, gpus: int, gpu_gib: float) -> dict[str, dict[str, float]]:
    """Rows of GiB per GPU for each strategy, with the totals as the stage runs and whether they fit."""
    lm_tile = 4 * min(stage.batch * stage.seq, LM_TILE_TOKENS) * min(arch.vocab, LM_TILE_VOCAB) if stage.causal_lm else 0
    acts = {gc: activation_bytes(arch, lora, stage, gc) for gc in (True, False)}
    vllm = sum(stage.vllm.values())
    table: dict[str, dict[str, float]] = {}
    for strategy in STRATEGIES:
        rows = state_bytes(arch, lora, stage, strategy, gpus)
        static = sum(rows.values())
        # ZeRO-3 gathers a layer's weights while it computes and prefetches the next (or the embedding / LM
        # head, whichever is larger); with PEFT, TRL's vLLM sync gathers every weight at once
        # (trl/generation/vllm_generation.py _iter_named_params), when no activations are held.
        gathered = 0.0
        if strategy == "ZeRO-3":
            gathered = 2 * max(2 * arch.layer_params(), arch.vocab * arch.hidden)
        sync = static - rows["weights"] + 2 * arch.params() if strategy == "ZeRO-3" and stage.gathers_for_vllm else 0
        total, other = (max(static + acts[gc] + lm_tile + gathered, sync) + vllm
                        for gc in (stage.checkpointing, not stage.checkpointing))
        rows.update({"act_gc": acts[True], "act_full": acts[False], "lm_tile": lm_tile, "gathered": gathered,
                     "sync": sync + vllm if sync else 0, "vllm": vllm, "total": total, "other": other})
        table[strategy] = {key: value / GIB for key, value in rows.items()}
        table[strategy]["fits"] = float(total / GIB <= gpu_gib and stage.vllm_starts)
    return table


# ---------------------------------------------------------------- the stages a profile runs


def _count(value: float) -> str:
    """A token or item count: 12,345 below a million, else 12.3 M / 4.56 B."""
    for limit, unit in ((1e9, "B"), (1e6, "M")):
        if value >= limit:
            return f"{value / limit:.2f} {unit}" if value < 10 * limit else f"{value / limit:.1f} {unit}"
    return f"{value:,.0f}"


def _per_device(completions: int, gpus: int, accumulation: int, where: str) -> int:
    """Completions per GPU per micro-batch, as training/grpo.py grpo_args divides them (and refuses)."""
    per_device, remainder = divmod(completions, gpus * accumulation)
    if remainder or per_device == 0:
        raise ConfigError(f"{where}: {completions} completions per step must divide evenly over {gpus} GPUs x "
                          f"{accumulation} micro-batches (training/grpo.py refuses it too)")
    return per_device


def _trained_layers(arch: Architecture, value: int | None, key: str) -> int:
    if value is not None and value > arch.layers:
        raise ConfigError(f"{key}={value} but the model has {arch.layers} layers")
    return arch.layers if value is None else value


def _vllm_lines(arch: Architecture, share: float, rollouts_per_gpu: int, max_len: int) -> str:
    """What a colocated vLLM share holds: the bf16 weights, the rest KV cache, against one step's rollouts."""
    weights, per_token = 2 * arch.params(), arch.kv_bytes_per_token()
    if share <= weights:
        return (f"vLLM: its {share / GIB:.1f} GiB share cannot hold the {weights / GIB:.1f} GiB of weights: "
                "raise vllm_gpu_memory_utilization, or serve from other GPUs (vllm_mode: server)")
    kv = share - weights
    need = rollouts_per_gpu * max_len * per_token
    return (f"vLLM: {share / GIB:.1f} GiB = weights {weights / GIB:.1f} + KV cache {kv / GIB:.1f} GiB "
            f"({_count(kv // per_token)} tokens at {per_token // 1024} KiB each, {kv / (max_len * per_token):.1f} "
            f"sequences of {max_len}); one step's {rollouts_per_gpu} rollouts per GPU need <= {need / GIB:.1f} GiB "
            "at full length (vLLM queues what does not fit)")


def stages_of(config: RunConfig, arch: Architecture, gpus: int, gpu_gib: float) -> list[Stage]:
    """The training stages the profile runs (RunConfig.why_off), each as the kit's trainer is set up for it."""
    found: list[Stage] = []
    dtype = DTYPE_BYTES[config.model.dtype]
    sft, par, bt, policy, judge = config.sft, config.par, config.bt, config.policy, config.judge
    if config.why_off("sft") is None:
        examples = sft.max_steps * gpus * sft.batch_size
        stage = Stage("sft", f"SFT warm-up, {sft.max_steps} steps (sft.*; training/sft.py)", dtype, True, arch.layers,
                      sft.batch_size, sft.max_length, sft.gradient_checkpointing, "sft.gradient_checkpointing", config.lora.dropout)
        stage.notes.append(f"tokens: trains on {examples:,} examples ({sft.max_steps} steps x {gpus} GPUs x "
                           f"{sft.batch_size}) of <= {sft.max_length} tokens: <= {_count(examples * sft.max_length)}; "
                           f"its checks generate <= {_count(2 * sft.n_check_pairs * 2 * sft.checks.n * sft.checks.max_new_tokens)} "
                           f"(base and warmed-up judge, {sft.n_check_pairs} dev pairs x 2 sides x {sft.checks.n})")
        found.append(stage)
    if config.why_off("par") is None:
        completions = 2 * par.pairs_per_step * par.rollouts.n
        found.append(_grpo_stage(
            "par", f"PAR with GRPO, {par.max_steps} steps (par.*; training/grpo.py)", config, arch, gpus, gpu_gib,
            completions, _trained_layers(arch, par.trainable_layers, "par.trainable_layers"), par.gradient_checkpointing,
            "par.gradient_checkpointing", par.gradient_accumulation_steps, par.use_vllm, par.vllm_mode,
            par.vllm_gpu_memory_utilization, judge_share=0.0))
        pairs = par.max_steps * par.pairs_per_step
        found[-1].notes.append(
            f"tokens: {pairs:,} pairs ({par.max_steps} steps x {par.pairs_per_step}; par.n_pairs "
            f"{par.n_pairs or 'all'}) x 2 sides x {par.rollouts.n} rollouts = {pairs * 2 * par.rollouts.n:,} judgments: "
            f"generates <= {_count(pairs * 2 * par.rollouts.n * par.rollouts.max_new_tokens)}, trains on "
            f"<= {_count(pairs * 2 * par.rollouts.n * judge.max_model_len)} (prompt + judgment <= judge.max_model_len)")
    if config.why_off("bt") is None:
        pairs = bt.max_steps * gpus * bt.batch_size
        stage = Stage("bt", f"Bradley-Terry baseline, {bt.max_steps} steps (bt.*; training/bt.py)", 4, False,
                      arch.layers, 2 * bt.batch_size, bt.max_length, bt.gradient_checkpointing, "bt.gradient_checkpointing",
                      config.lora.dropout)
        stage.notes.append("weights in fp32 under DDP (bt.py loads float32, bf16 autocast); DeepSpeed's bf16 casts them to bf16")
        stage.notes.append(f"tokens: {pairs:,} pairs ({bt.max_steps} steps x {gpus} GPUs x {bt.batch_size}), 2 sequences "
                           f"each of <= {bt.max_length} tokens: trains on <= {_count(2 * pairs * bt.max_length)}")
        found.append(stage)
    if config.why_off("policies") is None:
        judges = [r for r in policy.rewarders if r != "checker"]
        # the kit's judging engine, in the same process as the policy (judging/engine.py: kv_cache_memory_bytes)
        judge_share = (dtype * arch.params() + judge.kv_cache_gib * GIB) if judges else 0.0
        stage = _grpo_stage(
            "policies", f"downstream policies, {len(policy.rewarders)} x {policy.max_steps} steps (policy.*; training/policies.py)",
            config, arch, gpus, gpu_gib, policy.prompts_per_step * policy.rollouts.n,
            _trained_layers(arch, policy.trainable_layers, "policy.trainable_layers"), policy.grpo.gradient_checkpointing,
            "policy.grpo.gradient_checkpointing", policy.gradient_accumulation_steps, policy.use_vllm,
            policy.grpo.vllm_mode, policy.grpo.vllm_gpu_memory_utilization, judge_share)
        completions = policy.max_steps * policy.prompts_per_step * policy.rollouts.n
        judged = completions * policy.judge_sampling.n * policy.judge_sampling.max_new_tokens
        stage.notes.append(
            f"tokens per rewarder ({', '.join(policy.rewarders)}): {completions:,} completions ({policy.max_steps} steps x "
            f"{policy.prompts_per_step} prompts x {policy.rollouts.n}): the policy generates <= "
            f"{_count(completions * policy.rollouts.max_new_tokens)}, a judge rewarder <= {_count(judged)} more; "
            f"trains on <= {_count(completions * judge.max_model_len)}; {len(judges)} of {len(policy.rewarders)} rewarders are judges")
        found.append(stage)
    return found


def _grpo_stage(name: str, title: str, config: RunConfig, arch: Architecture, gpus: int, gpu_gib: float,
                completions: int, trained: int, checkpointing: bool, key: str, accumulation: int, use_vllm: bool,
                mode: str, utilization: float, judge_share: float) -> Stage:
    """A GRPO stage (PAR or a policy): micro-batches of completions, each <= judge.max_model_len tokens (the
    longest prompt + completion vLLM accepts), LoRA dropout off, vLLM colocated in its share of the GPU."""
    per_device = _per_device(completions, gpus, accumulation, f"{name}: gradient_accumulation_steps={accumulation}")
    stage = Stage(name, title, DTYPE_BYTES[config.model.dtype], True, trained, per_device, config.judge.max_model_len,
                  checkpointing, key, 0.0)
    if use_vllm and mode == "colocate":
        share = utilization * gpu_gib * GIB
        stage.vllm[f"vLLM rollouts ({utilization} x {gpu_gib:g} GiB)"] = share
        stage.gathers_for_vllm, stage.vllm_starts = True, share > 2 * arch.params()
        stage.notes.append(_vllm_lines(arch, share, completions // gpus, config.judge.max_model_len))
    elif use_vllm:
        stage.notes.append("vLLM in server mode: rollouts on GPUs of their own (trl vllm-serve), not counted here")
    if judge_share:
        stage.vllm[f"judge engine (kv_cache_gib {config.judge.kv_cache_gib})"] = judge_share
    return stage


# ---------------------------------------------------------------- the report

ROWS = (("weights", "base weights"), ("lora", "LoRA parameters"), ("gradients", "gradients"),
        ("optimizer", "Adam state"), ("act_gc", "activations, checkpointing"), ("act_full", "activations, no checkpointing"),
        ("lm_tile", "LM head tile (fp32)"), ("gathered", "ZeRO-3 gathered weights"))


def render(config: RunConfig, arch: Architecture, gpus: int, gpu_gib: float) -> str:
    """The plan as text: the model, then per stage its micro-batch, rows of GiB per GPU, totals, fits, tokens."""
    lora, dtype = config.lora, config.model.dtype
    adapter = lora_params(arch, lora, arch.layers)
    lines = [f"plan: profile {config.profile}, judge {config.model.name}, {gpus} GPU{'s' * (gpus > 1)} x {gpu_gib:g} GiB; by formula, "
             "not measured (src/patarm_kit/plan.py)",
             f"model: {arch.params() / 1e9:.2f} B parameters, {arch.layers} layers, hidden {arch.hidden}, MLP "
             f"{arch.intermediate}, {arch.heads} heads ({arch.kv_heads} KV) x {arch.head_dim}, vocabulary {arch.vocab}, "
             f"{'tied' if arch.tied else 'untied'} embeddings; from {arch.source}",
             f"LoRA: r={lora.r} on {', '.join(lora.target_modules)}: {adapter / 1e6:.2f} M parameters "
             f"({adapter // arch.layers:,} per layer); model.dtype {dtype}",
             "GiB per GPU: DDP = configs/accelerate/ddp.yaml; ZeRO-2, ZeRO-3 = deepspeed_zero2/3.yaml over "
             f"{gpus} GPU{'s' * (gpus > 1)}; * = as the stage runs"]
    for stage in stages_of(config, arch, gpus, gpu_gib):
        table = memory(arch, lora, stage, gpus, gpu_gib)
        gc = "on" if stage.checkpointing else "off"
        lines += ["", f"{stage.name}: {stage.title}",
                  f"  per GPU: {stage.batch} sequences x <= {stage.seq} tokens per micro-batch; LoRA trains in "
                  f"{'all' if stage.trained_layers == arch.layers else f'the top {stage.trained_layers} of'} "
                  f"{arch.layers} layers; gradient checkpointing {gc} ({stage.checkpointing_key})",
                  f"  {'':38s}" + "".join(f"{s:>9s}" for s in STRATEGIES)]
        for key, label in (*ROWS, *((f"vllm:{k}", k) for k in stage.vllm)):
            if key.startswith("vllm:"):
                values = [stage.vllm[key[5:]] / GIB] * len(STRATEGIES)
            else:
                values = [table[s][key] for s in STRATEGIES]
            if key in ("lm_tile", "gathered") and not any(values):
                continue
            mark = " *" if key == ("act_gc" if stage.checkpointing else "act_full") else ""
            if key == "weights":
                label += f" ({'float32' if stage.weight_bytes == 4 else dtype}; ZeRO: bf16)"
            lines.append(f"  {label + mark:38s}" + "".join(f"{v:9.2f}" if v or key != "gathered" else f"{'-':>9s}"
                                                            for v in values))
        lines.append(f"  {'total *':38s}" + "".join(f"{table[s]['total']:9.2f}" for s in STRATEGIES))
        lines.append(f"  {'fits ' + format(gpu_gib, 'g') + ' GiB':38s}"
                     + "".join(f"{'yes' if table[s]['fits'] else 'no':>9s}" for s in STRATEGIES))
        other = "off" if stage.checkpointing else "on"
        lines.append(f"  {'total, checkpointing ' + other:38s}"
                     + "".join(f"{table[s]['other']:9.2f}" for s in STRATEGIES))
        if table["ZeRO-3"]["sync"]:
            lines.append(f"  ZeRO-3 at each vLLM weight sync every weight is gathered: {table['ZeRO-3']['sync']:.2f} "
                         "GiB then (counted in its total)")
        lines += [f"  {note}" for note in stage.notes]
    return "\n".join(lines)


def plan_report(profile: str, gpus: int, gpu_gib: float, overrides: dict[str, Any] | None = None) -> str:
    """`patarm-kit plan`: check the flags, load the profile and the model's architecture, render the plan."""
    if gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}")
    if not gpu_gib > 0:
        raise ConfigError(f"--gpu-memory must be more than 0 GiB, got {gpu_gib:g}")
    config = load_config(profile, overrides or {})
    if config.model.dtype not in DTYPE_BYTES:
        raise ConfigError(f"model.dtype must be one of {', '.join(DTYPE_BYTES)}, not {config.model.dtype!r}")
    return render(config, architecture(config.model), gpus, gpu_gib)
