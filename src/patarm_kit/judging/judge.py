"""Batched judging: one judge for training rollouts, warm-up checks and evaluation.

A `JudgeRequest` is one response to score (pair id, side, prompt, response, task). The judge
renders the pointwise prompt (`prompts.pointwise_messages` + the tokenizer's chat template),
samples n judgments per request, parses each, and returns one `Judgment` record per sample:
an invalid judgment keeps its reason and is never replaced by a number.

Beside the score it wrote, every pointwise judgment gets an *expected score*: the judge's own
probability-weighted mean over the scores 1..10 at the score position (`expected_score`). It
is read from the model's next-token distribution after the judgment's `<score>` tag; where
the judge wrote no tag, the tag is appended and the judgment counted as `score_forced`. Ties
under it are rare, and an untrained judge that never finishes a judgment still has a reading.

Both are read after the judgment's evaluation, i.e. after it chose its score band. What PAR
trains is the distribution of judgments at the rollout temperature: `Judge.draw` samples k of
them per response, each response seeded by itself (`engine.response_seed`), and marks them
`draw="sampled-mean"`, so they sit in an evaluation's judgments file beside its own judgments
(`read_judgments(path, SAMPLED_MEAN)`). Two readouts read them: *sampled-mean*, the mean score
they wrote, and *sampled-expected*, the mean of their expected scores: the same quantity, without
the noise of sampling the score token (4 written scores of a near-uniform distribution have a
standard error of ~1.4 points; their expected scores average that draw out).

Generation goes through an engine (judging/engine.py): `VLLMEngine` or `HFEngine` (transformers
`generate`). The judge hands it the requests of a call in chunks of `CHUNK_SEQUENCES`
sequences; the engine schedules each chunk (vLLM batches continuously, HF in length-sorted
batches) and seeds every request by its index in the whole call. The expected-score reads of
a chunk follow its generation, while vLLM's prefix cache still holds the chunk's prompts.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from patarm_kit.config.rules import readout_name
from patarm_kit.config.schema import JudgeConfig, RunConfig, SamplingConfig
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.judging.engine import Completion, Engine, response_seed
from patarm_kit.judging.prompts import (
    SCORE_RANGE,
    pairwise_messages,
    parse_judgment,
    parse_verdict,
    pointwise_messages,
    render_chat,
    score_position,
)
from patarm_kit.judging.rubrics import Rubric, load_rubrics
from patarm_kit.runs.files import read_jsonl, write_jsonl

TRUNCATION_MARK = " [...]"
READOUT_TOP = 20  # next-token candidates read at the score position; a digit outside them counts as probability 0
PAIRWISE_ORDERS = ("AB", "BA")  # AB: the chosen response is shown as response A
# Sequences judged before their expected-score reads: 64 judge prompts of ~550 tokens fit the 1 GiB
# KV cache (~46k tokens), so the reads find them cached; vLLM's CPU build runs ~80 at once anyway.
CHUNK_SEQUENCES = 64
SAMPLED_MEAN = "sampled-mean"  # the readout whose judgments are drawn apart: their records say draw="sampled-mean"


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
    """One judgment of one request (sample k of the n made for it)."""

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
    seconds: float = 0.0  # this sample's share of its judge call's generation time
    expected_score: float | None = None  # the expected-score readout (None: not read, or no digit among the candidates)
    score_forced: bool = False  # the judge wrote no <score> tag; the readout appended one
    draw: str | None = None  # the readout this judgment was drawn for (SAMPLED_MEAN); None: the evaluation's own

    @property
    def valid(self) -> bool:
        return self.score is not None

    def to_row(self) -> dict[str, Any]:
        """The record as stored; `draw` only on drawn judgments, so the others' rows are as before the readout."""
        row = asdict(self)
        if self.draw is None:
            del row["draw"]
        return row


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


class Judge:
    """The generative judge: builds prompts, samples judgments, parses them.

    `config` says how it reads (budgets); `sampling` how it samples for the use that built it
    (n judgments per request). `engine` generates, serving the base model with `adapter`
    merged in (None: the base model); engines are shared, so the judge asks for its adapter
    on every call. A judge that only renders prompts has no engine.
    """

    def __init__(
        self,
        tokenizer: Any,
        engine: Engine | None,
        config: JudgeConfig,
        rubrics: Mapping[str, Rubric],
        enable_thinking: bool | None = None,
        seed: int = 0,
        sampling: SamplingConfig | None = None,
        adapter: str | Path | None = None,
    ):
        self.tokenizer, self.engine, self.config, self.adapter = tokenizer, engine, config, adapter
        self.rubrics, self.enable_thinking, self.seed = rubrics, enable_thinking, seed
        self.sampling = sampling or SamplingConfig()

    def engine_settings(self) -> dict[str, Any]:
        """Which engine judged and how (metrics files record it); no times, so reruns give equal files."""
        return self._engine().settings()

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("this judge only renders prompts (built without an engine)")
        return self.engine

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

    def fit_inputs(self, prompt: Sequence[Mapping[str, str]], response: str) -> tuple[list[dict[str, str]], str, list[str]]:
        """What the judge reads: the conversation fitted to its budget, the response clipped to
        judge.max_response_tokens, and which of the two ("prompt", "response") were cut.
        The BT baseline reads its inputs through this too, so both see the same text."""
        conversation, prompt_cut = self.fit_conversation(prompt)
        response, response_cut = self.clip(response, self.config.max_response_tokens)
        return conversation, response, [name for name, cut in (("prompt", prompt_cut), ("response", response_cut)) if cut]

    def prompt_text(self, request: JudgeRequest) -> tuple[str, list[str]]:
        """The chat-formatted judge prompt for one request, and which inputs were truncated."""
        conversation, response, truncated = self.fit_inputs(request.prompt, request.response)
        messages = pointwise_messages(conversation, response, request.task, self.rubrics[request.task])
        return render_chat(self.tokenizer, messages, self.enable_thinking), truncated

    # ------------------------------------------------------------ judging

    def judge(self, requests: Sequence[JudgeRequest], n_samples: int | None = None) -> list[Judgment]:
        """n judgments per request, in request order (sample 0..n-1 for each), each with its expected score."""
        return self._judge(requests, dataclasses.replace(self.sampling, n=n_samples or self.sampling.n))

    def draw(self, requests: Sequence[JudgeRequest], sampling: SamplingConfig) -> list[Judgment]:
        """The sampled-mean readout's judgments: `sampling.n` per request, in request order, marked as its draw.

        Each request is seeded by its response (`engine.response_seed`: the run's seed, pair id and
        side), so a response gets the same draws in any call and at every checkpoint of a curve
        (exactly in fp32; in bf16 a prefix-cache hit can move a logit enough to change a sampled
        token, so a process that reruns the same calls in the same order repeats them).
        Each gets its expected score too (the sampled-expected readout).
        """
        return self._judge(requests, sampling, draw=SAMPLED_MEAN)

    def _judge(self, requests: Sequence[JudgeRequest], sampling: SamplingConfig, draw: str | None = None) -> list[Judgment]:
        seeds = None if draw is None else [response_seed(self.seed, r.pair_id, r.side) for r in requests]
        per_chunk = max(1, CHUNK_SEQUENCES // sampling.n)
        judgments: list[Judgment] = []
        for start in range(0, len(requests), per_chunk):
            chunk = requests[start:start + per_chunk]
            rendered = [self.prompt_text(r) for r in chunk]
            lengths = [self._tokens(text) for text, _ in rendered]
            outputs, share = self._generate([text for text, _ in rendered], sampling, first_index=start,
                                            seeds=None if seeds is None else seeds[start:start + per_chunk])
            made = [
                self._record(chunk[i], k, completion, lengths[i], rendered[i][1], share, draw)
                for i, completions in enumerate(outputs)
                for k, completion in enumerate(completions)
            ]
            self._read_expected([rendered[i][0] for i, completions in enumerate(outputs) for _ in completions], made)
            judgments += made
        return judgments

    def _read_expected(self, prompts: Sequence[str], judgments: Sequence[Judgment]) -> None:
        """Set each judgment's expected score from the judge's distribution at its score position.

        Two one-token reads per judgment: after "<score>" (the first digit), and after
        "<score>1" (does a "0" follow, making it 10?). The engine's prefix cache holds the rest.
        """
        digits = score_digit_ids(self.tokenizer)
        if digits is None:
            return
        positions = [score_position(j.text) for j in judgments]
        reads = self._engine().next_token_logprobs(
            [p + text + suffix for p, (text, _) in zip(prompts, positions) for suffix in ("", "1")], READOUT_TOP)
        for k, (judgment, (_, forced)) in enumerate(zip(judgments, positions)):
            judgment.expected_score = expected_score(reads[2 * k], reads[2 * k + 1], digits)
            judgment.score_forced = forced

    def judge_pairwise(self, pairs: Sequence[PreferencePair]) -> list[Judgment]:
        """The pairwise baseline: each pair in both orders; score 1.0 when the verdict picks the chosen.

        Showing (chosen, rejected) and (rejected, chosen) cancels the judge's position bias.
        The record's `side` is the order ("AB": chosen shown as A); an unreadable verdict is
        invalid, as for pointwise judgments.
        """
        prompts, keys = [], []
        for pair in pairs:
            conversation, chosen, chosen_cut = self.fit_inputs(pair.prompt, pair.chosen)
            _, rejected, rejected_cut = self.fit_inputs(pair.prompt, pair.rejected)
            cut = [name for name in ("prompt", "response") if name in chosen_cut or name in rejected_cut]
            for order in PAIRWISE_ORDERS:
                a, b = (chosen, rejected) if order == "AB" else (rejected, chosen)
                messages = pairwise_messages(conversation, a, b, pair.task, self.rubrics[pair.task])
                prompts.append(render_chat(self.tokenizer, messages, self.enable_thinking))
                keys.append((pair, order, cut))
        outputs, share = self._generate(prompts, dataclasses.replace(self.sampling, n=1))
        judgments = []
        for prompt, (pair, order, cut), (completion,) in zip(prompts, keys, outputs):
            picked_chosen, reason = pairwise_score(completion.text, order, truncated=not completion.finished)
            judgments.append(Judgment(
                pair.id, order, pair.task, 0, completion.text, picked_chosen, reason, [], self._tokens(prompt),
                completion.tokens, not completion.finished, cut, share,
            ))
        return judgments

    def _generate(self, prompts: list[str], sampling: SamplingConfig, first_index: int = 0,
                  seeds: Sequence[int] | None = None) -> tuple[list[list[Completion]], float]:
        """sampling.n completions per prompt in one engine call (the engine schedules them), and each one's share of its time."""
        engine = self._engine()
        engine.use_adapter(self.adapter)
        started = time.monotonic()
        outputs = engine.generate(prompts, sampling, self.seed, first_index, seeds=seeds)
        return outputs, (time.monotonic() - started) / max(1, len(prompts) * sampling.n)

    def _record(self, request: JudgeRequest, sample: int, completion: Completion, prompt_tokens: int,
                input_truncated: list[str], seconds: float, draw: str | None) -> Judgment:
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
            draw=draw,
        )


# ---------------------------------------------------------------- the expected-score readout


def score_digit_ids(tokenizer: Any) -> dict[int, int] | None:
    """Digit -> token id, for tokenizers that write each digit as one token (None: the readout does not apply)."""
    ids = {d: tokenizer(str(d), add_special_tokens=False)["input_ids"] for d in range(10)}
    return {d: i[0] for d, i in ids.items()} if all(len(i) == 1 for i in ids.values()) else None


def expected_score(first: Mapping[int, float], after_one: Mapping[int, float], digits: Mapping[int, int]) -> float | None:
    """Sum of k * P(k) over the scores k = 1..10, normalised over them; None when no score digit is a candidate.

    `first`: log-probabilities of the first score token; `after_one`: of the token after a "1",
    which makes it 10 when it is "0" and 1 when it is no digit at all.
    """
    low, high = SCORE_RANGE
    probability = {d: math.exp(first[digits[d]]) for d in range(1, 10) if digits[d] in first}
    if not probability:
        return None
    if 1 in probability:
        after = {d: math.exp(after_one[i]) for d, i in digits.items() if i in after_one}
        ten = after.get(0, 0.0)
        one = max(0.0, 1.0 - sum(after.values()))
        both = probability.pop(1)
        probability[1] = both * one / (one + ten) if one + ten else 0.0
        probability[10] = both * ten / (one + ten) if one + ten else 0.0
    total = sum(p for k, p in probability.items() if low <= k <= high)
    if total <= 0:
        return None
    return sum(k * p for k, p in probability.items() if low <= k <= high) / total


# ---------------------------------------------------------------- votes and summaries


def pairwise_score(text: str, order: str, truncated: bool) -> tuple[float | None, str | None]:
    """A pairwise verdict as a score: 1.0 when it picks the chosen response (shown as A in order
    "AB", as B in "BA"), 0.0 when it picks the rejected one; None and the reason when unreadable."""
    verdict, reason = parse_verdict(text, truncated=truncated)
    score = None if verdict is None else float((verdict == "A") == (order == "AB"))
    return score, None if reason is None else str(reason)


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


def readout_score(judgment: Judgment, readout: str) -> float | None:
    """The judgment's score under a readout (config.READOUTS): its expected score (expected; a drawn
    judgment's for sampled-expected), or the score it wrote (greedy, sampled-mean); a drawn judgment's
    goes into its response's mean."""
    return judgment.expected_score if readout_name(readout) in ("expected", "sampled-expected") else judgment.score


def voted_scores(judgments: Iterable[Judgment], method: str = "mean", votes: int | None = None,
                 readout: str = "greedy") -> dict[tuple[str, str], float | None]:
    """(pair_id, side) -> voted score, from the first `votes` samples of each request (all if None)."""
    grouped: dict[tuple[str, str], list[float | None]] = defaultdict(list)
    for j in judgments:
        if votes is None or j.sample < votes:
            grouped[(j.pair_id, j.side)].append(readout_score(j, readout))
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
    write_jsonl(path, (j.to_row() for j in judgments))


def read_judgments(path: Any, draw: str | None = None) -> list[Judgment]:
    """A judgments file's records: the evaluation's own (draw None), or those drawn for a readout (SAMPLED_MEAN)."""
    return [judgment for judgment in map(lambda row: Judgment(**row), read_jsonl(path)) if judgment.draw == draw]


class EvalError(ValueError):
    """A judge, a bench or an evaluation setting is wrong; the message lists what is accepted."""


def prompt_judge(config: RunConfig, tokenizer: Any) -> Judge:
    """A judge that only renders prompts (no engine): SFT and PAR train on exactly the prompts judged later."""
    return Judge(tokenizer, None, config.judge, load_rubrics(config.judge.rubric_file), config.model.enable_thinking)
