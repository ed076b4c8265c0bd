"""The judge's text format in one place: the prompts it reads and the judgments it writes.

Training rollouts, SFT targets and evaluation all import from here, so the format the judge is
asked for, the format SFT teaches and the format the parser accepts cannot drift apart.

A judgment looks like this (`format_judgment` builds it, `parse_judgment` reads it):
    <criteria>
    - name: description
    </criteria>
    <evaluation>...</evaluation>
    <score>N</score>

The parsers are pure functions that never raise on model output: a judgment whose score cannot
be read is returned as invalid with a reason, so it is counted instead of replaced by a number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from patarm_kit.data.pairs import TASKS
from patarm_kit.judging.rubrics import Rubric, render_rubric

SCORE_RANGE = (1, 10)
VERDICTS = ("A", "B")

SYSTEM_PROMPT = "You are an impartial judge of AI assistant responses. Follow the output format exactly."


def _layout(criteria: str, evaluation: str, final_tag: str) -> str:
    """The judgment layout; the prompts show it and SFT targets follow it."""
    return f"<criteria>\n{criteria}\n</criteria>\n<evaluation>{evaluation}</evaluation>\n{final_tag}"


_CRITERIA_STEP = "First write 2-4 criteria specific to this conversation, one per line."
POINTWISE_INSTRUCTIONS = (
    f"{_CRITERIA_STEP} Then briefly evaluate the response against the rubrics and your criteria. "
    f"End with <score>N</score>, N an integer from {SCORE_RANGE[0]} (worst) to {SCORE_RANGE[1]} (best). "
    "Format:\n" + _layout("- name: description", "...", "<score>N</score>")
)
PAIRWISE_INSTRUCTIONS = (
    f"{_CRITERIA_STEP} Then briefly compare the two responses against the rubrics and your criteria. "
    "End with <verdict>X</verdict>, X the better response: A or B. "
    "Format:\n" + _layout("- name: description", "...", "<verdict>X</verdict>")
)


# ---------------------------------------------------------------- building prompts


def render_conversation(prompt: Sequence[Mapping[str, str]]) -> str:
    """The prompt's turns as "User: ..." / "Assistant: ..." blocks, one blank line apart."""
    return "\n\n".join(f"{message['role'].capitalize()}: {message['content']}" for message in prompt)


def _judge_messages(
    prompt: Sequence[Mapping[str, str]], task: str, rubric: Rubric, responses: list[str], instructions: str
) -> list[dict[str, str]]:
    """System + user messages: task, rubric, conversation, the tagged responses, instructions."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if rubric.task != task:
        raise ValueError(f"the rubric is for task {rubric.task!r}, the pair is {task!r}")
    user = "\n".join(
        [
            f"<task>{task}</task>",
            f"<rubrics>\n{render_rubric(rubric)}\n</rubrics>",
            f"<conversation>\n{render_conversation(prompt)}\n</conversation>",
            *responses,
            instructions,
        ]
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def pointwise_messages(
    prompt: Sequence[Mapping[str, str]], response: str, task: str, rubric: Rubric
) -> list[dict[str, str]]:
    """The PaTaRM judge prompt: one response, scored alone."""
    return _judge_messages(prompt, task, rubric, [f"<response>\n{response}\n</response>"], POINTWISE_INSTRUCTIONS)


def pairwise_messages(
    prompt: Sequence[Mapping[str, str]], response_a: str, response_b: str, task: str, rubric: Rubric
) -> list[dict[str, str]]:
    """The pairwise-judge baseline: two responses in one prompt, the judge names the better one."""
    responses = [f"<response_a>\n{response_a}\n</response_a>", f"<response_b>\n{response_b}\n</response_b>"]
    return _judge_messages(prompt, task, rubric, responses, PAIRWISE_INSTRUCTIONS)


def render_chat(tokenizer: Any, messages: list[dict[str, str]], enable_thinking: bool | None = None) -> str:
    """The messages as the model's chat-formatted prompt text, ready for generation.

    `enable_thinking` is passed only when set: Qwen3 templates read it, and leaving it out keeps
    every other template exactly as its authors wrote it.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            f"{type(tokenizer).__name__} has no chat template; the judge needs an instruct/chat model"
        )
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)


# Any judge-format tag; such text inside a field would change how the judgment parses.
_JUDGE_TAG = re.compile(r"</?(?:think|criteria|evaluation|score|verdict)\b", re.IGNORECASE)


def format_judgment(criteria: list[tuple[str, str]], evaluation: str, score: int) -> str:
    """A well-formed judgment (an SFT target); `parse_judgment` reads back the same score and criteria."""
    low, high = SCORE_RANGE
    if isinstance(score, bool) or not isinstance(score, int) or not low <= score <= high:
        raise ValueError(f"score must be an integer from {low} to {high}, got {score!r}")
    fields = [evaluation, *(text for pair in criteria for text in pair)]
    if any(_JUDGE_TAG.search(text) for text in fields):
        raise ValueError("criteria and evaluation must not contain judge tags such as <score>")
    lines = []
    for name, description in criteria:
        line = f"{name.strip()}: {description.strip()}"
        if not name.strip() or not description.strip() or len(line.splitlines()) > 1:
            raise ValueError(f"a criterion needs a one-line name and description, got {(name, description)!r}")
        lines.append(f"- {line}")
    return _layout("\n".join(lines), evaluation.strip(), f"<score>{score}</score>")


# ---------------------------------------------------------------- parsing judgments


class InvalidReason(StrEnum):
    """Why a judgment has no usable score (or verdict); values are plain strings for reports."""

    EMPTY = "empty"
    UNCLOSED_THINKING = "unclosed_thinking"
    TRUNCATED = "truncated"
    NO_SCORE_TAG = "no_score_tag"
    CONFLICTING_SCORES = "conflicting_scores"
    NOT_AN_INTEGER = "not_an_integer"
    OUT_OF_RANGE = "out_of_range"
    NO_VERDICT_TAG = "no_verdict_tag"
    CONFLICTING_VERDICTS = "conflicting_verdicts"
    NOT_A_VERDICT = "not_a_verdict"


@dataclass(frozen=True)
class ParsedJudgment:
    """A judge output read back: the score, or None with the reason it is invalid."""

    score: int | None
    invalid_reason: InvalidReason | None = None
    criteria: tuple[str, ...] = ()
    thinking: str | None = None

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None


# Tags match ASCII only: under Unicode case folding "<ſcore>" would count as "<score>".
_TAG_FLAGS = re.IGNORECASE | re.ASCII
_THINK_OPEN = re.compile(r"<think\s*>", _TAG_FLAGS)
_THINK_CLOSE = re.compile(r"</think\s*>", _TAG_FLAGS)
_CRITERIA_BLOCK = re.compile(r"<criteria\s*>(.*?)</criteria\s*>", _TAG_FLAGS | re.DOTALL)
_BULLET = re.compile(r"^(?:[-*•]|\d+[.)])(?:\s+|$)")
# "8", "+8", "-3", "8/10", " 8 / 10 "; the denominator is checked against the scale.
_SCORE_VALUE = re.compile(r"([+-]?[0-9]+)(?:\s*/\s*([0-9]+))?")


def _answer_part(text: str, truncated: bool) -> tuple[str, str | None, InvalidReason | None]:
    """(answer, thinking, reason): the text outside Qwen3's <think> block, so no score is read from reasoning.

    Everything before the last </think> is thinking; this also covers templates that open
    <think> in the prompt, so the generation holds only the closing tag.
    """
    if not text.strip():
        return "", None, InvalidReason.EMPTY
    answer, thinking = text, None
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        thinking = _THINK_OPEN.sub("", text[: closes[-1].start()], count=1).strip()
        answer = text[closes[-1].end() :]
    unclosed = _THINK_OPEN.search(answer)
    if unclosed:
        return "", answer[unclosed.end() :].strip(), InvalidReason.UNCLOSED_THINKING
    if not answer.strip():
        return "", thinking, InvalidReason.TRUNCATED if truncated else InvalidReason.EMPTY
    return answer, thinking, None


def _final_tag(
    answer: str, tag: str, truncated: bool, missing: InvalidReason
) -> tuple[set[str], InvalidReason | None]:
    """The distinct contents of every complete <tag>...</tag>, or why there is none to use."""
    complete = re.compile(rf"<{tag}\s*>(.*?)</{tag}\s*>", _TAG_FLAGS | re.DOTALL)
    contents = {content.strip() for content in complete.findall(answer)}
    left_open = re.search(rf"<{tag}\s*>", complete.sub("", answer), _TAG_FLAGS)
    if left_open or (truncated and not contents):
        return set(), InvalidReason.TRUNCATED
    if not contents:
        return set(), missing
    return contents, None


def _score_value(content: str, score_range: tuple[int, int]) -> tuple[int | None, InvalidReason | None]:
    low, high = score_range
    match = _SCORE_VALUE.fullmatch(content)
    if match is None:
        return None, InvalidReason.NOT_AN_INTEGER
    number, denominator = match.groups()
    if denominator is not None and denominator.lstrip("0") != str(high):
        return None, InvalidReason.NOT_AN_INTEGER  # 8/5 or 80/100 is a fraction, not a score on our scale
    try:
        value = int(number)
    except ValueError:  # CPython refuses ints of over 4300 digits; such a number is out of range anyway
        return None, InvalidReason.OUT_OF_RANGE
    if not low <= value <= high:
        return None, InvalidReason.OUT_OF_RANGE
    return value, None


def _criteria_lines(answer: str) -> tuple[str, ...]:
    """The judge's instance-specific criteria, one per line, without bullets or numbers."""
    block = _CRITERIA_BLOCK.search(answer)
    if block is None:
        return ()
    lines = (_BULLET.sub("", line.strip(), count=1).strip() for line in block.group(1).splitlines())
    return tuple(line for line in lines if line)


def parse_judgment(
    text: str, *, truncated: bool = False, score_range: tuple[int, int] = SCORE_RANGE
) -> ParsedJudgment:
    """Read a pointwise judgment; `truncated` says generation stopped at the token limit."""
    answer, thinking, reason = _answer_part(text, truncated)
    if reason is not None:
        return ParsedJudgment(None, reason, thinking=thinking)
    criteria = _criteria_lines(answer)
    contents, reason = _final_tag(answer, "score", truncated, InvalidReason.NO_SCORE_TAG)
    if reason is not None:
        return ParsedJudgment(None, reason, criteria, thinking)
    outcomes = {_score_value(content, score_range) for content in contents}
    if len(outcomes) > 1:  # "8" and "8/10" agree; "7" and "8" do not
        return ParsedJudgment(None, InvalidReason.CONFLICTING_SCORES, criteria, thinking)
    score, reason = outcomes.pop()
    return ParsedJudgment(score, reason, criteria, thinking)


_EVALUATION = re.compile(r"<evaluation\s*>(.*?)</evaluation\s*>", _TAG_FLAGS | re.DOTALL)


def evaluation_text(text: str) -> str | None:
    """The judgment's first complete <evaluation> section, stripped (outside any <think> block); None without one."""
    answer, _, _ = _answer_part(text, truncated=False)
    found = _EVALUATION.search(answer)
    return found.group(1).strip() if found else None


_SCORE_OPEN = re.compile(r"<score\s*>", _TAG_FLAGS)


def score_position(text: str) -> tuple[str, bool]:
    """A judgment up to where its score goes (through its last <score> tag), and whether the tag had to be added.

    The expected-score readout (judging/judge.py) reads the judge's next-token probabilities there.
    """
    opens = list(_SCORE_OPEN.finditer(text))
    if opens:
        return text[: opens[-1].end()], False
    return text.rstrip() + "\n<score>", True


def parse_verdict(text: str, *, truncated: bool = False) -> tuple[str | None, InvalidReason | None]:
    """Read a pairwise verdict: ("A" or "B", None), or (None, the reason it is invalid)."""
    answer, _, reason = _answer_part(text, truncated)
    if reason is None:
        contents, reason = _final_tag(answer, "verdict", truncated, InvalidReason.NO_VERDICT_TAG)
    if reason is not None:
        return None, reason
    verdicts = {content.upper() for content in contents}
    if len(verdicts) > 1:
        return None, InvalidReason.CONFLICTING_VERDICTS
    verdict = verdicts.pop()
    if verdict not in VERDICTS:
        return None, InvalidReason.NOT_A_VERDICT
    return verdict, None
