"""Downstream RLHF, evaluated: the trained policies on IFEval (the official checker) and InFoBench.

The policies are trained by training/policies.py; this module generates their answers, scores
them, and pairs the policies for the summary (paired bootstrap over prompts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import ModelConfig, RunConfig
from patarm_kit.data.sources.ifeval import load_ifeval
from patarm_kit.evaluation.ifeval import OFFICIAL, evaluate_responses
from patarm_kit.evaluation.infobench import (
    EVALUATOR_SAMPLING,
    InfoBenchMissing,
    drfr,
    evaluate_questions,
    load_infobench,
)
from patarm_kit.evaluation.stats import paired_bootstrap_diff
from patarm_kit.judging.engine import judge_engine
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.judging.prompts import render_chat
from patarm_kit.runs.files import read_json, read_jsonl, sha256_of, write_json, write_jsonl
from patarm_kit.runs.run import Run
from patarm_kit.training.policies import UNTRAINED

# ---------------------------------------------------------------- IFEval


def ifeval_responses(config: RunConfig, adapter: Path | None, keys: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The policy's greedy responses to IFEval's prompts through the judging engine: {key, response, finished}."""

    prompts, _ = load_ifeval(config.data.data_dir)
    if keys is not None:
        wanted = set(keys)
        prompts = [p for p in prompts if p.key in wanted]
    elif config.policy.ifeval_limit:
        prompts = prompts[:config.policy.ifeval_limit]
    tokenizer = load_tokenizer(config.model)
    engine = judge_engine(config)
    engine.use_adapter(adapter)
    thinking = config.model.enable_thinking  # Qwen3: thinking text is stripped before any check (ifeval.THINKING_RULE)
    texts = [render_chat(tokenizer, [{"role": "user", "content": p.prompt}], thinking) for p in prompts]
    outputs = engine.generate(texts, config.policy.ifeval, config.seed)
    return [{"key": p.key, "response": out[0].text, "finished": out[0].finished} for p, out in zip(prompts, outputs)]


def policy_names(config: RunConfig) -> list[str]:
    """The policies IFEval scores: the untrained one first, then one per rewarder."""
    return [UNTRAINED, *config.policy.rewarders]


def evaluate_policy(config: RunConfig, run: Run, policy: str) -> dict[str, Any]:
    """IFEval on one policy: its greedy responses (saved), then the checker's four numbers with intervals."""

    layout = run.layout
    adapter = None if policy == UNTRAINED else layout.policy_adapter(policy)
    rows = ifeval_responses(config, adapter)
    responses = layout.ifeval_responses(policy)
    write_jsonl(responses, rows, ensure_ascii=True)
    generation = {"policy": policy, "adapter": layout.relative(adapter) if adapter else None,
                  "sampling": dataclasses.asdict(config.policy.ifeval), "engine": judge_engine(config).settings(),
                  "enable_thinking": config.model.enable_thinking,
                  "cut_at_token_limit": sum(not r["finished"] for r in rows)}
    recorded = {"path": layout.relative(responses), "sha256": sha256_of(responses)}  # <run>/..., as every run file
    return evaluate_responses(responses, layout.ifeval_metrics(policy), config.data.data_dir, config.eval.n_boot,
                              config.seed, extra={"generation": generation, "responses_file": recorded})


def infobench(config: RunConfig, run: Run) -> dict[str, Any]:
    """DRFR of every policy on InFoBench, or why it was not run (no data here, or no evaluator set)."""

    try:
        items, source = load_infobench(config.data.data_dir)
    except InfoBenchMissing as err:
        return {"status": "not run", "why": str(err)}
    evaluator = config.policy.infobench_evaluator
    if evaluator is None:
        return {"status": "not run", "why": "policy.infobench_evaluator is not set"}
    layout, tokenizer = run.layout, load_tokenizer(config.model)
    responses: dict[str, list[str]] = {}
    for policy in policy_names(config):
        engine = judge_engine(config)
        engine.use_adapter(None if policy == UNTRAINED else layout.policy_adapter(policy))
        texts = [render_chat(tokenizer, [{"role": "user", "content": item.prompt}], config.model.enable_thinking)
                 for item in items]
        responses[policy] = [out[0].text for out in engine.generate(texts, config.policy.ifeval, config.seed)]
    model = ModelConfig(name=evaluator, dtype=config.model.dtype)
    # The evaluator runs on the judges' engine (judge.engine: vLLM, or transformers with judge.engine=hf).
    engine = judge_engine(config if evaluator == config.model.name else dataclasses.replace(config, model=model))
    engine.use_adapter(None)
    results = {}
    for policy, texts in responses.items():
        verdicts = evaluate_questions(engine, load_tokenizer(model), items, texts, EVALUATOR_SAMPLING, config.seed)
        results[policy] = drfr(verdicts)
        write_json(layout.infobench_metrics(policy), {
            **results[policy], "policy": policy, "evaluator": evaluator, "data": source,
            "items": [{"id": item.id, "response": text, "verdicts": v} for item, text, v in zip(items, texts, verdicts)]})
    return {"status": "done", "evaluator": evaluator, "data": source, "policies": results}


def prompt_outcomes(verdicts_file: Path, rule: str) -> dict[int, float]:
    """Per IFEval prompt: 1 when every instruction passed under `rule` (strict or loose), else 0."""
    return {row["key"]: float(all(row[rule])) for row in read_jsonl(Path(verdicts_file))}


def paired_policies(config: RunConfig, run: Run) -> list[dict[str, Any]]:
    """Prompt-level accuracy of policy A minus policy B on the same IFEval prompts, strict and loose."""

    layout, results = run.layout, []
    for a, b in config.policy.paired:
        for rule in ("strict", "loose"):
            first, second = (prompt_outcomes(layout.judgments_of(layout.ifeval_metrics(p)), rule) for p in (a, b))
            keys = sorted(first.keys() & second.keys())
            stats = paired_bootstrap_diff([first[k] for k in keys], [second[k] for k in keys], config.eval.n_boot, config.seed)
            results.append({"a": a, "b": b, "metric": f"prompt_level_{rule}", "n": len(keys), **stats})
    return results


def downstream_summary(run: Run) -> dict[str, Any]:
    """metrics/05_downstream.json's content, from the policies' IFEval files alone (verify rebuilds it)."""

    config, layout = run.config(), run.layout
    metrics = {p: read_json(layout.ifeval_metrics(p)) for p in policy_names(config)}
    policies = {p: {**{k: m[k] for k in (*OFFICIAL, "ci95", "n_prompts", "coverage")},
                    "cut_at_token_limit": m["generation"]["cut_at_token_limit"]} for p, m in metrics.items()}
    summary = {"policies": policies, "paired": paired_policies(config, run), "checker": metrics[UNTRAINED]["checker"]}
    if layout.infobench_record.is_file():
        summary["infobench"] = read_json(layout.infobench_record)
    return summary


def downstream_frame(summary: dict[str, Any]) -> Any:
    """The downstream table: each policy's four IFEval numbers in %, with 95% intervals."""
    import pandas as pd

    rows = []
    for policy, m in sorted(summary["policies"].items(), key=lambda item: item[0] != UNTRAINED):  # untrained first
        row = {"policy": policy if policy == UNTRAINED else f"rewarded by {policy}", "prompts": m["n_prompts"]}
        for name in OFFICIAL:
            lo, hi = m["ci95"][name]
            row[name] = f"{100 * m[name]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
        row["cut at the token limit"] = m["cut_at_token_limit"]
        rows.append(row)
    return pd.DataFrame(rows)


def paired_frame(summary: dict[str, Any]) -> Any:
    """Policy A minus policy B, prompt-level, in points with the paired 95% interval."""
    import pandas as pd

    return pd.DataFrame([{"A − B": f"{r['a']} − {r['b']}", "metric": r["metric"], "n": r["n"],
                          "difference": f"{100 * r['diff']:+.1f} [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]",
                          "p": round(r["p_value"], 3)} for r in summary["paired"]])
