"""Judging throughput: transformers generate (HFEngine) vs vLLM (VLLMEngine), measured in one run.

The kit's judge workload: judge prompts built by the kit's own prompt builder from real
HH-RLHF pairs (both sides), n sampled judgments each, up to 160 new tokens, temperature 1.0,
the profile's dtype (bf16). Only generated tokens count. Both engines run in this process
one after the other, so their ratio is measured under the same conditions; absolute numbers
on a shared machine are not timings. Then the same vLLM engine serves an SFT-like LoRA
adapter merged into its weights (merge + in-place reload timed), and `--equivalence` checks
that both engines generate the same thing: greedy tokens in fp32 (identical expected) and
bf16 (drift counted: the two engines' kernels round differently, so a near-tie between two
tokens can go either way and the paths part), the probabilities both give the first score
token, and the sampled score distributions of the same judge (mean difference with a
bootstrap interval over prompts).

    .venv/bin/python perf/judge_throughput.py --json
    .venv/bin/python perf/judge_throughput.py --json --equivalence

`--json` prints one JSON object on stdout (everything else goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from patarm_kit.config.loader import load_config
from patarm_kit.config.schema import RunConfig, SamplingConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.evaluation.stats import bootstrap_ci_of
from patarm_kit.judging.engine import Completion, Engine, HFEngine, VLLMEngine, cpu_seconds
from patarm_kit.judging.judge import prompt_judge, requests_for_pairs
from patarm_kit.judging.models import load_model, lora_config, resolve_model_path
from patarm_kit.judging.prompts import parse_judgment
from patarm_kit.runs.env import machine_facts

GiB = 1 << 30
# Scores of the same judge through both engines: the untrained judge almost never writes a
# parseable score, so its judgment is written up to "<score>" and only the score is sampled.
SCORE_PREFILL = ("<criteria>\n- helpfulness: the response answers the request\n</criteria>\n"
                 "<evaluation>Judged against the rubric.</evaluation>\n<score>")


def judge_prompts(config: RunConfig, n_pairs: int, tokenizer: Any) -> list[str]:
    """Judge prompts of `n_pairs` real HH-RLHF pairs, both sides, exactly as the judge renders them."""
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=n_pairs), config.data.data_dir)
    builder = prompt_judge(config, tokenizer)
    return [builder.prompt_text(request)[0] for request in requests_for_pairs(pairs)]


def children_peak_rss_gb() -> float:
    """Peak resident memory (VmHWM) of this process's children: vLLM's engine and worker."""
    import psutil

    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            status = Path(f"/proc/{child.pid}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) * 1024
    return total / GiB


def own_peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB


def measure(engine: Engine, prompts: list[str], sampling: SamplingConfig, seed: int) -> dict[str, Any]:
    """One timed call with every prompt: tokens/s, CPU-seconds per token, and what was generated."""
    if isinstance(engine, VLLMEngine):
        engine.llm.reset_prefix_cache()  # no head start from an earlier call on the same prompts
    cpu, started = cpu_seconds(), time.perf_counter()
    outputs = engine.generate(prompts, sampling, seed)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    completions = [c for row in outputs for c in row]
    tokens = sum(c.tokens for c in completions)
    return {
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tok_s": round(tokens / seconds, 1),
        "cpu_s_per_token": round(cpu / tokens, 4),
        "mean_tokens": round(tokens / len(completions), 1),
        "finished_share": round(sum(c.finished for c in completions) / len(completions), 3),
        "parse_rate": round(sum(parse_judgment(c.text, truncated=not c.finished).valid
                                for c in completions) / len(completions), 3),
    }


def make_adapter(config: RunConfig, folder: Path, seed: int) -> Path:
    """An SFT-like LoRA adapter (the kit's LoRA settings) with random non-zero B, so merging changes the weights."""
    import torch
    from peft import get_peft_model

    model, _ = load_model(config.model)
    peft_model = get_peft_model(model, lora_config(config.lora))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: the adapter would change nothing
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.01)
    peft_model.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- equivalence


def first_divergence(a: Completion, b: Completion) -> int | None:
    """Index of the first generated token where a and b differ (None: identical)."""
    for index, (x, y) in enumerate(zip(a.token_ids, b.token_ids)):
        if x != y:
            return index
    return None if len(a.token_ids) == len(b.token_ids) else min(len(a.token_ids), len(b.token_ids))


def greedy_tokens(hf: Engine, vllm: Engine, prompts: list[str], max_new_tokens: int) -> dict[str, Any]:
    greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    pairs = zip(hf.generate(prompts, greedy, 0), vllm.generate(prompts, greedy, 0))
    divergence = [first_divergence(a[0], b[0]) for a, b in pairs]
    return {"prompts": len(prompts), "max_new_tokens": max_new_tokens,
            "identical": sum(d is None for d in divergence), "first_divergence": divergence}


def sampled_scores(engine: Engine, prompts: list[str], n: int, seed: int) -> list[float | None]:
    """Mean sampled score per prompt (None where no sample parsed) of the score-prefilled judgments."""
    sampling = SamplingConfig(n=n, temperature=1.0, max_new_tokens=6)  # "10</score>" is 5 tokens
    outputs = engine.generate([p + SCORE_PREFILL for p in prompts], sampling, seed)
    means = []
    for row in outputs:
        scores = [parse_judgment(SCORE_PREFILL + c.text).score for c in row]
        valid = [s for s in scores if s is not None]
        means.append(statistics.fmean(valid) if valid else None)
    return means


def score_difference(hf: Engine, vllm: Engine, prompts: list[str], n: int, seed: int) -> dict[str, Any]:
    """Mean score of vLLM minus HF over the same prompts, with a 95% bootstrap interval over prompts."""
    import numpy as np

    pairs = [(h, v) for h, v in zip(sampled_scores(hf, prompts, n, seed), sampled_scores(vllm, prompts, n, seed))
             if h is not None and v is not None]
    if not pairs:
        return {"prompts": len(prompts), "scored_prompts": 0}
    differences = np.array([v - h for h, v in pairs])
    low, high = bootstrap_ci_of(lambda rows: differences[rows].mean(axis=1), len(differences), n_boot=2000, seed=seed)
    return {
        "prompts": len(prompts), "samples_per_prompt": n, "scored_prompts": len(pairs),
        "hf_mean_score": round(statistics.fmean(h for h, _ in pairs), 3),
        "vllm_mean_score": round(statistics.fmean(v for _, v in pairs), 3),
        "mean_difference": round(float(differences.mean()), 3), "ci95": [round(low, 3), round(high, 3)],
    }


def score_token_probabilities(hf: HFEngine, vllm: VLLMEngine, prompts: list[str]) -> dict[str, Any]:
    """How far the two engines' probabilities of the first score token lie apart (vLLM's 10 likeliest)."""
    import math

    import torch
    from vllm import SamplingParams, TokensPrompt

    differences = []
    for prompt in prompts:
        ids = hf.tokenizer(prompt + SCORE_PREFILL, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = hf.model(torch.tensor([ids], device=hf.model.device)).logits[0, -1].float()
        reference = torch.softmax(logits, dim=-1)
        output = vllm.llm.generate([TokensPrompt(prompt_token_ids=ids)], SamplingParams(max_tokens=1, logprobs=10),
                                   use_tqdm=False)[0].outputs[0]
        differences += [abs(math.exp(p.logprob) - reference[token].item()) for token, p in output.logprobs[0].items()]
    return {"prompts": len(prompts), "tokens_compared": len(differences),
            "max_abs_difference": round(max(differences), 5), "mean_abs_difference": round(statistics.fmean(differences), 5)}


def equivalence(args: argparse.Namespace, prompts: list[str], hf_bf16: HFEngine, vllm_bf16: VLLMEngine,
                adapter: Path, engine_settings: dict[str, Any]) -> dict[str, Any]:
    """bf16 first (with the engine already running), then an fp32 engine for the exact comparison."""
    few = prompts[: args.equivalence_prompts]
    vllm_bf16.use_adapter(None)
    report = {
        "bf16_greedy": greedy_tokens(hf_bf16, vllm_bf16, few, args.equivalence_tokens),
        "bf16_scores": score_difference(hf_bf16, vllm_bf16, prompts[: args.score_prompts], args.score_samples, args.seed),
        "bf16_score_token_probabilities": score_token_probabilities(hf_bf16, vllm_bf16, few),
    }
    vllm_bf16.close()
    config = load_config(args.profile, {"model.dtype": "float32"})
    model, tokenizer = load_model(config.model)
    hf32 = HFEngine(model, tokenizer, batch_size=config.judge.batch_size)
    vllm32 = VLLMEngine(resolve_model_path(config.model), **{**engine_settings, "dtype": "float32"})
    report["fp32_greedy"] = greedy_tokens(hf32, vllm32, few, args.equivalence_tokens)
    report["fp32_score_token_probabilities"] = score_token_probabilities(hf32, vllm32, few)
    hf32.use_adapter(adapter)
    vllm32.use_adapter(adapter)
    report["fp32_greedy_adapter_merged"] = greedy_tokens(hf32, vllm32, few, args.equivalence_tokens)
    vllm32.close()
    return report


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--pairs", type=int, default=8, help="HH-RLHF pairs; two judge prompts each")
    parser.add_argument("--samples", type=int, default=4, help="sampled judgments per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kv-cache-gib", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--eager", action="store_true", help="vLLM without torch.compile (faster start)")
    parser.add_argument("--equivalence", action="store_true", help="also compare what the two engines generate")
    parser.add_argument("--equivalence-prompts", type=int, default=4)
    parser.add_argument("--equivalence-tokens", type=int, default=64)
    parser.add_argument("--score-prompts", type=int, default=16)
    parser.add_argument("--score-samples", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, logs on stderr")
    args = parser.parse_args()

    stdout = sys.stdout
    if args.json:  # vLLM's processes log to stdout: send every byte of it to stderr, keep the real stdout
        stdout = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)

    config = load_config(args.profile)
    model, tokenizer = load_model(config.model)
    prompts = judge_prompts(config, args.pairs, tokenizer)
    sampling = SamplingConfig(n=args.samples, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens)
    warm_up = SamplingConfig(n=1, max_new_tokens=8)

    hf = HFEngine(model, tokenizer, batch_size=config.judge.batch_size)
    hf.generate(prompts[:1], warm_up, args.seed)
    hf_result = measure(hf, prompts, sampling, args.seed)
    hf_result["peak_rss_gb"] = round(own_peak_rss_gb(), 2)

    engine_settings = {"dtype": config.model.dtype, "kv_cache_gib": args.kv_cache_gib,
                       "max_model_len": args.max_model_len, "seed": args.seed, "enforce_eager": args.eager}
    vllm = VLLMEngine(resolve_model_path(config.model), **engine_settings)
    vllm.generate(prompts[:1], warm_up, args.seed)
    vllm_result = measure(vllm, prompts, sampling, args.seed)
    vllm_result["startup_s"] = round(vllm.startup_seconds, 1)

    with tempfile.TemporaryDirectory() as scratch:
        adapter = make_adapter(config, Path(scratch) / "adapter", args.seed)
        vllm.use_adapter(adapter)
        merged = measure(vllm, prompts, sampling, args.seed)
        merged["merge_reload_s"] = round(vllm.last_reload_seconds or 0.0, 2)
        vllm_result["peak_rss_gb"] = round(children_peak_rss_gb(), 2)
        settings = vllm.settings()
        report: dict[str, Any] = {
            "hf_tok_s": hf_result["tok_s"],
            "vllm_tok_s": vllm_result["tok_s"],
            "ratio": round(vllm_result["tok_s"] / hf_result["tok_s"], 2),
            "vllm_merged_tok_s": merged["tok_s"],
            "merged_ratio": round(merged["tok_s"] / hf_result["tok_s"], 2),  # HF runs merged weights at base speed
            "merged_ratio_change": round(merged["tok_s"] / vllm_result["tok_s"] - 1, 3),  # must show: within +-0.10
            "workload": {"profile": args.profile, "model": config.model.name, "dtype": config.model.dtype,
                         "prompts": len(prompts), "samples": args.samples, "max_new_tokens": args.max_new_tokens,
                         "temperature": 1.0, "prompt_tokens": _token_range(tokenizer, prompts)},
            "hf": hf_result,
            "vllm": vllm_result,
            "vllm_merged": merged,
            "vllm_settings": settings,
            "omp_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto"),
            "machine": {**machine_facts(), "load_average": os.getloadavg()},
        }
        if args.equivalence:
            report["equivalence"] = equivalence(args, prompts, hf, vllm, adapter, engine_settings)
        else:
            vllm.close()

    if args.json:
        stdout.write(json.dumps(report) + "\n")
        stdout.flush()
    else:
        print(json.dumps(report, indent=2))


def _token_range(tokenizer: Any, prompts: list[str]) -> dict[str, float]:
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    return {"min": min(lengths), "mean": round(statistics.fmean(lengths), 1), "max": max(lengths)}


if __name__ == "__main__":  # vLLM starts its processes with spawn: they import this file again
    main()
