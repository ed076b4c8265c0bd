"""Batched judging: one judge for training rollouts, warm-up checks and evaluation.

A `JudgeRequest` is one response to score (pair id, side, prompt, response, task). The judge
renders the pointwise prompt (`prompts.pointwise_messages` + the tokenizer's chat template),
samples n judgments per request, parses each, and returns one `Judgment` record per sample:
an invalid judgment keeps its reason and is never replaced by a number.

Generation goes through a small backend seam: `HFBackend` (transformers `generate`, the
default, CPU or GPU) or `VLLMBackend` (GPU, when vLLM is installed). Requests are sorted by
prompt length and batched with left padding, so a batch wastes few pad tokens.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .config import JudgeConfig, SamplingConfig
from .data import PreferencePair
from .prompts import pairwise_messages, parse_judgment, parse_verdict, pointwise_messages, render_chat
from .rubrics import Rubric

TRUNCATION_MARK = " [...]"
PAIRWISE_ORDERS = ("AB", "BA")  # AB: the chosen response is shown as response A


@dataclass(frozen=True)
class JudgeRequest:
    """One response to judge. `side` is "chosen"/"rejected" (or "chosen_1" etc. for RM-Bench styles)."""

    pair_id: str
    side: str
    prompt: tuple[dict[str, str], ...]
    response: str
    task: str


@dataclass
class Judgment:
    """One sampled judgment of one request."""

    pair_id: str
    side: str
    task: str
    sample: int
    text: str
    score: float | None  # judge scores are integers 1..10; length, random and BT scores are reals
    invalid_reason: str | None
    criteria: list[str]
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # generation hit max_new_tokens
    input_truncated: list[str] = field(default_factory=list)  # "prompt" and/or "response"
    seconds: float = 0.0  # this sample's share of its batch's generation time

    @property
    def valid(self) -> bool:
        return self.score is not None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    finished: bool  # ended with an end-of-turn token, not at the length limit


class GenerationBackend(Protocol):
    def generate(self, prompts: list[str], n: int, seed: int) -> list[list[Completion]]:
        """n sampled completions for each prompt text."""


def requests_for_pairs(pairs: Iterable[PreferencePair], sides: Sequence[str] = ("chosen", "rejected")) -> list[JudgeRequest]:
    """Both sides of each pair, adjacent: PAR and pairwise accuracy need the two together."""
    return [
        JudgeRequest(pair.id, side, pair.prompt, getattr(pair, side), pair.task) for pair in pairs for side in sides
    ]


def requests_for_style_variants(pairs: Iterable[PreferencePair]) -> list[JudgeRequest]:
    """RM-Bench: all 3 chosen and 3 rejected style variants, 6 requests per prompt."""
    return [
        JudgeRequest(pair.id, f"{side}_{i}", pair.prompt, variants[i], pair.task)
        for pair in pairs
        for side, variants in (("chosen", pair.chosen_variants), ("rejected", pair.rejected_variants))
        for i in range(len(variants))
    ]


class HFBackend:
    """transformers `generate` with left padding; seeded per batch so runs repeat exactly."""

    def __init__(self, model: Any, tokenizer: Any, sampling: SamplingConfig):
        self.model, self.tokenizer, self.sampling = model, tokenizer, sampling

    def generate(self, prompts: list[str], n: int, seed: int) -> list[list[Completion]]:
        import torch

        tokenizer = self.tokenizer
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sample = self.sampling.temperature > 0
        torch.manual_seed(seed)
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.sampling.max_new_tokens,
                do_sample=sample,
                temperature=self.sampling.temperature if sample else None,
                top_p=self.sampling.top_p if sample else None,
                top_k=0 if sample else None,  # keep nucleus sampling as configured, no hidden top-k
                num_return_sequences=n,
                pad_token_id=tokenizer.pad_token_id,
            )
        generated = output[:, inputs["input_ids"].shape[1]:]
        stop_ids = _stop_token_ids(self.model, tokenizer)
        completions = []
        for row in generated.tolist():
            length = next((i + 1 for i, token in enumerate(row) if token in stop_ids), len(row))
            finished = length < len(row) or (bool(row) and row[length - 1] in stop_ids)
            text = tokenizer.decode(row[:length], skip_special_tokens=True)
            completions.append(Completion(text, length, finished))
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]


def _stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


class VLLMBackend:
    """vLLM for GPU rollouts and evaluation (not installed on CPU machines)."""

    def __init__(self, model_path: str, sampling: SamplingConfig, adapter: str | None = None):
        from vllm import LLM  # optional dependency: pip install -e .[gpu]

        self.llm = LLM(model=model_path, enable_lora=adapter is not None, seed=0)
        self.sampling, self.adapter = sampling, adapter

    def generate(self, prompts: list[str], n: int, seed: int) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=n, temperature=self.sampling.temperature, top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_new_tokens, seed=seed,
        )
        lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("judge", 1, self.adapter)
        outputs = self.llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
        return [
            [Completion(o.text, len(o.token_ids), o.finish_reason == "stop") for o in out.outputs] for out in outputs
        ]


class Judge:
    """The generative judge: builds prompts, samples judgments, parses them.

    `config` says how it reads (budgets, batch size); `sampling` how it samples for the use that
    built it (n judgments per request; its backend decodes with the same block).
    """

    def __init__(
        self,
        tokenizer: Any,
        backend: GenerationBackend,
        config: JudgeConfig,
        rubrics: Mapping[str, Rubric],
        enable_thinking: bool | None = None,
        seed: int = 0,
        sampling: SamplingConfig | None = None,
    ):
        self.tokenizer, self.backend, self.config = tokenizer, backend, config
        self.rubrics, self.enable_thinking, self.seed = rubrics, enable_thinking, seed
        self.sampling = sampling or SamplingConfig()

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, config: JudgeConfig, rubrics: Mapping[str, Rubric],
                   sampling: SamplingConfig, enable_thinking: bool | None = None, seed: int = 0) -> "Judge":
        return cls(tokenizer, HFBackend(model, tokenizer, sampling), config, rubrics, enable_thinking, seed, sampling)

    # ------------------------------------------------------------ prompts

    def clip(self, text: str, budget: int) -> tuple[str, bool]:
        """Keep the first `budget` tokens of `text`; say whether anything was cut."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            return text, False
        return self.tokenizer.decode(ids[:budget]) + TRUNCATION_MARK, True

    def fit_conversation(self, prompt: Sequence[Mapping[str, str]]) -> tuple[list[dict[str, str]], bool]:
        """Drop the earliest turns, then clip the last one, until the conversation fits its budget."""
        messages = [dict(m) for m in prompt]
        budget = self.config.max_prompt_tokens
        cut = False
        while len(messages) > 1 and self._tokens("\n".join(m["content"] for m in messages)) > budget:
            messages.pop(0)
            cut = True
        messages[-1]["content"], clipped = self.clip(messages[-1]["content"], budget)
        return messages, cut or clipped

    def _tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_text(self, request: JudgeRequest) -> tuple[str, list[str]]:
        """The chat-formatted judge prompt for one request, and which inputs were truncated."""
        conversation, prompt_cut = self.fit_conversation(request.prompt)
        response, response_cut = self.clip(request.response, self.config.max_response_tokens)
        messages = pointwise_messages(conversation, response, request.task, self.rubrics[request.task])
        truncated = [name for name, cut in (("prompt", prompt_cut), ("response", response_cut)) if cut]
        return render_chat(self.tokenizer, messages, self.enable_thinking), truncated

    # ------------------------------------------------------------ judging

    def judge(self, requests: Sequence[JudgeRequest], n_samples: int | None = None, progress: bool = True) -> list[Judgment]:
        """n judgments per request, in request order (sample 0..n-1 for each)."""
        from tqdm.auto import tqdm

        n = n_samples or self.sampling.n
        rendered = [self.prompt_text(r) for r in requests]
        lengths = [self._tokens(text) for text, _ in rendered]
        order = sorted(range(len(requests)), key=lambda i: lengths[i])  # length bucketing
        per_batch = max(1, self.config.batch_size // n)
        results: dict[int, list[Judgment]] = {}
        bar = tqdm(total=len(requests) * n, desc="judging", unit="judgment", disable=not progress)
        started = time.monotonic()
        for batch_number, start in enumerate(range(0, len(order), per_batch)):
            batch = order[start:start + per_batch]
            tick = time.monotonic()
            outputs = self.backend.generate([rendered[i][0] for i in batch], n, self.seed + batch_number)
            share = (time.monotonic() - tick) / (len(batch) * n)
            for i, completions in zip(batch, outputs):
                results[i] = [
                    self._record(requests[i], k, c, lengths[i], rendered[i][1], share) for k, c in enumerate(completions)
                ]
            bar.update(len(batch) * n)
            bar.set_postfix(per_min=f"{bar.n / max(time.monotonic() - started, 1e-9) * 60:.0f}")
        bar.close()
        return [judgment for i in range(len(requests)) for judgment in results[i]]

    def judge_pairwise(self, pairs: Sequence[PreferencePair], progress: bool = True) -> list[Judgment]:
        """The pairwise baseline: each pair in both orders; score 1.0 when the verdict picks the chosen.

        Showing (chosen, rejected) and (rejected, chosen) cancels the judge's position bias.
        The record's `side` is the order ("AB": chosen shown as A); an unreadable verdict is
        invalid, as for pointwise judgments.
        """
        from tqdm.auto import tqdm

        prompts, keys = [], []
        for pair in pairs:
            conversation, _ = self.fit_conversation(pair.prompt)
            chosen, _ = self.clip(pair.chosen, self.config.max_response_tokens)
            rejected, _ = self.clip(pair.rejected, self.config.max_response_tokens)
            for order in PAIRWISE_ORDERS:
                a, b = (chosen, rejected) if order == "AB" else (rejected, chosen)
                messages = pairwise_messages(conversation, a, b, pair.task, self.rubrics[pair.task])
                prompts.append(render_chat(self.tokenizer, messages, self.enable_thinking))
                keys.append((pair, order))
        judgments = []
        size = self.config.batch_size
        for batch_number, start in enumerate(tqdm(range(0, len(prompts), size), desc="pairwise judging", disable=not progress)):
            tick = time.monotonic()
            outputs = self.backend.generate(prompts[start:start + size], 1, self.seed + batch_number)
            share = (time.monotonic() - tick) / len(outputs)
            for index, (completion,) in enumerate(outputs, start=start):
                pair, order = keys[index]
                verdict, reason = parse_verdict(completion.text, truncated=not completion.finished)
                picked_chosen = None if verdict is None else float((verdict == "A") == (order == "AB"))
                judgments.append(Judgment(
                    pair.id, order, pair.task, 0, completion.text, picked_chosen,
                    None if reason is None else str(reason), [], self._tokens(prompts[index]), completion.tokens,
                    not completion.finished, [], share,
                ))
        return judgments

    def _record(self, request: JudgeRequest, sample: int, completion: Completion, prompt_tokens: int,
                input_truncated: list[str], seconds: float) -> Judgment:
        truncated = not completion.finished
        parsed = parse_judgment(completion.text, truncated=truncated)
        return Judgment(
            pair_id=request.pair_id,
            side=request.side,
            task=request.task,
            sample=sample,
            text=completion.text,
            score=parsed.score,
            invalid_reason=None if parsed.valid else str(parsed.invalid_reason),
            criteria=list(parsed.criteria),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion.tokens,
            truncated=truncated,
            input_truncated=input_truncated,
            seconds=seconds,
        )


# ---------------------------------------------------------------- votes and summaries


def vote(scores: Sequence[int | None], method: str = "mean") -> float | None:
    """One score from several judgments of the same response: mean, or the most common score.

    Invalid judgments do not vote; with none valid the result is None (counted as invalid).
    A majority tie between several scores is broken by their mean.
    """
    valid = [s for s in scores if s is not None]
    if not valid:
        return None
    if method == "mean":
        return statistics.fmean(valid)
    if method == "majority":
        counts = Counter(valid)
        top = max(counts.values())
        return statistics.fmean(score for score, count in counts.items() if count == top)
    raise ValueError(f"voting must be 'mean' or 'majority', not {method!r}")


def voted_scores(judgments: Iterable[Judgment], method: str = "mean", votes: int | None = None) -> dict[tuple[str, str], float | None]:
    """(pair_id, side) -> voted score, from the first `votes` samples of each request (all if None)."""
    grouped: dict[tuple[str, str], list[int | None]] = defaultdict(list)
    for j in judgments:
        if votes is None or j.sample < votes:
            grouped[(j.pair_id, j.side)].append(j.score)
    return {key: vote(scores, method) for key, scores in grouped.items()}


def judging_summary(judgments: Sequence[Judgment]) -> dict[str, Any]:
    """Parse rate, invalid reasons, token counts and throughput of a batch of judgments."""
    total = len(judgments)
    seconds = sum(j.seconds for j in judgments)
    tokens = sum(j.completion_tokens for j in judgments)
    return {
        "judgments": total,
        "parse_rate": sum(j.valid for j in judgments) / total if total else None,
        "invalid_reasons": dict(Counter(j.invalid_reason for j in judgments if not j.valid)),
        "truncated_generation": sum(j.truncated for j in judgments),
        "truncated_input": sum(bool(j.input_truncated) for j in judgments),
        "mean_completion_tokens": tokens / total if total else None,
        "generation_seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds else None,
    }


def save_judgments(judgments: Iterable[Judgment], path: Any) -> None:
    """Per-judgment records as JSON lines: metrics can be recomputed later without the model."""
    import json

    from .results import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(j.to_row(), ensure_ascii=False) + "\n" for j in judgments))


def read_judgments(path: Any) -> list[Judgment]:
    import json

    with open(path, encoding="utf-8") as handle:
        return [Judgment(**json.loads(line)) for line in handle if line.strip()]
