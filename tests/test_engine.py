"""Generation engines on the real model: vLLM generates what transformers generates.

fp32 so the comparison can be exact (in bf16 the two engines' kernels round differently and
greedy paths drift apart after tens of tokens; the benchmark measures that drift). vLLM runs
eager (no torch.compile) so the engine starts in ~20 s instead of ~100.
"""

from __future__ import annotations

import pytest

from patarm_kit.config.loader import load_config
from patarm_kit.config.schema import SamplingConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.judging.engine import (
    SEED_STRIDE,
    HFEngine,
    close_shared_engines,
    judge_engine,
    request_seed,
    response_seed,
    shared_vllm_engine,
    vllm_available,
)
from patarm_kit.judging.judge import prompt_judge, requests_for_pairs
from patarm_kit.judging.models import load_model, lora_config, resolve_model_path
from patarm_kit.judging.registry import build_judge

pytestmark = pytest.mark.model

GREEDY = SamplingConfig(n=1, temperature=0.0, max_new_tokens=24)
VLLM_SETTINGS = {"dtype": "float32", "kv_cache_gib": 1, "max_model_len": 1024, "enforce_eager": True}


@pytest.fixture(scope="module")
def fp32():
    config = load_config("smoke", {"model.dtype": "float32"})
    model, tokenizer = load_model(config.model)
    return config, model, tokenizer


@pytest.fixture(scope="module")
def prompts(fp32, data_dir):
    """Two real judge prompts (one HH-RLHF pair, both sides) as the judge renders them."""
    config, _, tokenizer = fp32
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=1), data_dir)
    return [prompt_judge(config, tokenizer).prompt_text(r)[0] for r in requests_for_pairs(pairs)]


@pytest.fixture(scope="module")
def model_path() -> str:
    return resolve_model_path(load_config("smoke").model)


@pytest.fixture(scope="module")
def vllm(model_path):
    assert vllm_available(), "vLLM is part of the kit's install (make venv; see requirements.txt)"
    yield shared_vllm_engine(model_path, **VLLM_SETTINGS)
    close_shared_engines()


@pytest.fixture(scope="module")
def adapter(fp32, tmp_path_factory):
    """A LoRA adapter with random (non-zero) B, so merging it changes the weights."""
    from dataclasses import replace

    from peft import get_peft_model

    config, _, _ = fp32
    model, _ = load_model(config.model)
    peft_config = replace(lora_config(config.lora), init_lora_weights=False)  # PEFT's default starts B at zero
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, peft_config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_greedy(fp32, prompts, adapter):
    """transformers' greedy completions of the base model and with the adapter merged in; whether the
    base weights came back exactly afterwards."""
    import torch

    _, model, tokenizer = fp32
    before = {name: weight.clone() for name, weight in model.state_dict().items()}
    engine = HFEngine(model, tokenizer)
    base = engine.generate(prompts, GREEDY, 0)
    engine.use_adapter(adapter)
    merged = engine.generate(prompts, GREEDY, 0)
    engine.use_adapter(None)
    restored = all(torch.equal(before[name], weight) for name, weight in model.state_dict().items())
    return {"base": base, "merged": merged, "restored": restored and model.state_dict().keys() == before.keys()}


def test_request_seeds_never_collide():
    seeds = [request_seed(3, i, 4) + k for i in range(50) for k in range(4)]
    assert len(set(seeds)) == len(seeds)
    assert request_seed(3, 0, 4) != request_seed(4, 0, 4) and request_seed(4, 0, 4) == 4 * SEED_STRIDE


def test_per_prompt_seeds_give_a_prompt_the_same_samples_in_any_call(fp32, vllm, prompts):
    """The sampled-mean draws seed each request by its response (response_seed): sampled alone, a
    prompt gets what it gets beside another, in both engines."""
    sampling = SamplingConfig(n=2, temperature=1.0, max_new_tokens=16)
    seeds = [response_seed(0, "pair", side) for side in ("chosen", "rejected")]
    assert len(set(seeds)) == 2 and response_seed(0, "pair", "chosen") == seeds[0] != response_seed(1, "pair", "chosen")
    _, model, tokenizer = fp32
    for engine in (HFEngine(model, tokenizer), vllm):
        both = engine.generate(prompts, sampling, 0, seeds=seeds)
        assert engine.generate(prompts[1:], sampling, 0, seeds=seeds[1:]) == both[1:], engine.name


def test_hf_engine_serves_a_merged_adapter_and_restores_the_base(hf_greedy):
    assert hf_greedy["merged"] != hf_greedy["base"]
    assert hf_greedy["restored"]


def test_vllm_greedy_tokens_equal_transformers_in_fp32(vllm, hf_greedy, prompts):
    expected = hf_greedy["base"]
    got = vllm.generate(prompts, GREEDY, 0)
    assert [c[0].token_ids for c in got] == [c[0].token_ids for c in expected]
    assert got == expected  # text, token count and finished flag too


def test_vllm_seeded_sampling_repeats_exactly(vllm, prompts):
    sampling = SamplingConfig(n=3, temperature=1.0, max_new_tokens=24)
    first = vllm.generate(prompts, sampling, 7)
    assert vllm.generate(prompts, sampling, 7) == first
    assert len({c.token_ids for c in first[0]}) == 3  # each sample has its own seed
    assert vllm.generate(prompts, sampling, 8) != first


def test_vllm_reloads_merged_adapter_in_place_and_restores_the_base(vllm, hf_greedy, prompts, adapter):
    base = vllm.generate(prompts, GREEDY, 0)  # fills the prefix cache with the base model's KV
    vllm.use_adapter(adapter)
    merged = vllm.generate(prompts, GREEDY, 0)
    assert merged != base
    assert merged == hf_greedy["merged"]  # the merged weights, and no stale prefix cache
    vllm.use_adapter(None)
    assert vllm.generate(prompts, GREEDY, 0) == base
    assert vllm.settings()["adapter"] is None and vllm.settings()["prefix_caching"] is True
    assert vllm.settings()["engine_core"] == "in-process"  # engine_environment: no spawned engine process


def test_one_vllm_engine_per_process_serves_every_judge(vllm, model_path, hf_greedy, adapter, data_dir):
    config = load_config("smoke", {"model.dtype": "float32", "judge.max_model_len": 1024, "judge.compile": False})
    assert shared_vllm_engine(model_path, **VLLM_SETTINGS) is vllm and judge_engine(config) is vllm
    base, tuned = (build_judge(spec, config, GREEDY) for spec in ("base", f"adapter:{adapter}"))
    assert base.engine is tuned.engine is vllm
    requests = requests_for_pairs(load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=1), data_dir)[0])
    for judge, expected in ((tuned, "merged"), (base, "base"), (tuned, "merged")):  # the adapter swapped in and out
        assert [j.text for j in judge.judge(requests)] == [c[0].text for c in hf_greedy[expected]]
