"""Score and verdict parsing: properties over arbitrary text plus a table of real-looking failures."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patarm_kit.judging.prompts import InvalidReason, format_judgment, parse_judgment, parse_verdict

JUDGE_TAG = re.compile(r"</?\s*(?:think|criteria|evaluation|score|verdict)", re.IGNORECASE)

text_without_tags = st.text().filter(lambda text: not JUDGE_TAG.search(text))
one_line = text_without_tags.map(str.strip).filter(lambda text: text and len(text.splitlines()) == 1)

# Fragments judges really emit, so random joins reach the interesting branches of the parser.
FRAGMENTS = [
    "<score>", "</score>", "<SCORE>", "<think>", "</think>", "<criteria>", "</criteria>",
    "<verdict>", "</verdict>", "7", "10/10", "8/5", "-3", "7.5", " ", "\n", "- ", "x", "A", "B",
]
judge_like_text = st.one_of(st.text(), st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join))


# ---------------------------------------------------------------- properties


@given(
    criteria=st.lists(st.tuples(one_line, one_line), max_size=5),
    evaluation=text_without_tags,
    score=st.integers(1, 10),
)
def test_format_then_parse_round_trips(criteria, evaluation, score):
    parsed = parse_judgment(format_judgment(criteria, evaluation, score))
    assert parsed.valid and parsed.score == score
    assert parsed.criteria == tuple(f"{name}: {description}" for name, description in criteria)
    assert parsed.thinking is None


@given(text=st.text().filter(lambda text: "<score" not in text.lower()), truncated=st.booleans())
def test_text_without_a_score_tag_is_always_invalid(text, truncated):
    parsed = parse_judgment(text, truncated=truncated)
    assert parsed.score is None and parsed.invalid_reason is not None


@given(text=judge_like_text, truncated=st.booleans())
def test_parsers_never_raise_and_stay_consistent(text, truncated):
    parsed = parse_judgment(text, truncated=truncated)
    assert (parsed.score is None) == (parsed.invalid_reason is not None)
    assert parsed.score is None or 1 <= parsed.score <= 10
    assert parsed.invalid_reason is None or parsed.invalid_reason in set(InvalidReason)
    verdict, reason = parse_verdict(text, truncated=truncated)
    assert (verdict is None) == (reason is not None)
    assert verdict in (None, "A", "B")


@given(inner=st.integers(-100, 100), outer=st.integers(1, 10))
def test_a_score_inside_thinking_never_counts(inner, outer):
    text = f"<think>Maybe <score>{inner}</score>?</think>\n" + format_judgment([], "ok", outer)
    assert parse_judgment(text).score == outer


# ---------------------------------------------------------------- malformed outputs


EVALUATION = "<criteria>\n- Accuracy: The facts are right.\n</criteria>\n<evaluation>Mostly correct.</evaluation>\n"


@pytest.mark.parametrize(
    ("text", "truncated", "reason"),
    [
        pytest.param("<think>Looks good, <score>9</score>.</think>\nThe answer is fine.", False,
                     "no_score_tag", id="score-only-inside-thinking"),
        pytest.param(EVALUATION + "<score>7</score>\nOn reflection: <score>8</score>", False,
                     "conflicting_scores", id="two-different-scores"),
        pytest.param(EVALUATION + "<score>7.5</score>", False, "not_an_integer", id="decimal"),
        pytest.param(EVALUATION + "<score>seven</score>", False, "not_an_integer", id="word"),
        pytest.param(EVALUATION + "<score></score>", False, "not_an_integer", id="empty-tag"),
        pytest.param(EVALUATION + "<score>8/5</score>", False, "not_an_integer", id="other-denominator"),
        pytest.param(EVALUATION + "<score>[8]</score>", False, "not_an_integer", id="bracketed"),
        pytest.param(EVALUATION + "<score>0</score>", False, "out_of_range", id="zero"),
        pytest.param(EVALUATION + "<score>11</score>", False, "out_of_range", id="eleven"),
        pytest.param(EVALUATION + "<score>-3</score>", False, "out_of_range", id="negative"),
        pytest.param(EVALUATION + "<score>" + "9" * 5000 + "</score>", False, "out_of_range", id="huge"),
        pytest.param(EVALUATION + "<score>8", True, "truncated", id="unclosed-tag-at-limit"),
        pytest.param(EVALUATION + "<score>8", False, "truncated", id="unclosed-tag"),
        pytest.param(EVALUATION + "<score>8</score> Let me re-check. <score>", True, "truncated",
                     id="second-tag-cut-off"),
        pytest.param("<criteria>\n- Accuracy: The facts are right.\n</criteria>\n<evaluation>The response",
                     True, "truncated", id="cut-off-mid-evaluation"),
        pytest.param("<think>\nLet me weigh this.\n</think>\n\n", True, "truncated", id="cut-off-after-thinking"),
        pytest.param(EVALUATION + "Score: 8", False, "no_score_tag", id="plain-score-line"),
        pytest.param(EVALUATION + "**8/10**", False, "no_score_tag", id="markdown-bold"),
        pytest.param("The response is accurate and helpful. 9", False, "no_score_tag", id="bare-number"),
        pytest.param("<think>\nThe user asks for a prime. The response says 11, which", False,
                     "unclosed_thinking", id="unclosed-thinking"),
        pytest.param("<think>\nStill thinking about <score>9</score>", True, "unclosed_thinking",
                     id="unclosed-thinking-at-limit"),
        pytest.param("", False, "empty", id="empty"),
        pytest.param("  \n\t", False, "empty", id="whitespace"),
        pytest.param("<think>\nDone.\n</think>\n", False, "empty", id="nothing-after-thinking"),
    ],
)
def test_malformed_judgments_are_invalid_with_a_reason(text, truncated, reason):
    parsed = parse_judgment(text, truncated=truncated)
    assert parsed.score is None
    assert parsed.invalid_reason == reason


# ---------------------------------------------------------------- valid outputs


@pytest.mark.parametrize(
    ("text", "score"),
    [
        pytest.param(EVALUATION + "<score> 8 </score>", 8, id="spaces"),
        pytest.param(EVALUATION + "<score>\n10\n</score>", 10, id="newlines"),
        pytest.param(EVALUATION + "<SCORE>8</SCORE>", 8, id="upper-case-tag"),
        pytest.param(EVALUATION + "<score>8/10</score>", 8, id="out-of-ten"),
        pytest.param(EVALUATION + "<score>1</score>", 1, id="lowest"),
        pytest.param(EVALUATION + "<score>6</score> and again <score>6/10</score>", 6, id="same-score-twice"),
        pytest.param(EVALUATION + "<score>5</score>\nThanks for reading.", 5, id="text-after-score"),
        pytest.param("Reasoning opened by the template.\n</think>\n\n" + EVALUATION + "<score>4</score>", 4,
                     id="template-opened-thinking"),
    ],
)
def test_valid_judgments(text, score):
    parsed = parse_judgment(text)
    assert parsed.valid and parsed.score == score


def test_complete_score_is_kept_when_generation_stopped_at_the_limit():
    assert parse_judgment(EVALUATION + "<score>7</score>\n", truncated=True).score == 7


def test_qwen3_output_with_thinking_before_the_answer():
    text = (
        "<think>\nThe user wants a prime number. The response says 11. My first guess is"
        " <score>3</score> but 11 is prime, so it is correct.\n</think>\n\n"
        "<criteria>\n- Primality: The number given is prime.\n* Brevity: Answers in one line.\n</criteria>\n"
        "<evaluation>11 is prime and the answer is short.</evaluation>\n<score>9</score>"
    )
    parsed = parse_judgment(text)
    assert parsed.score == 9 and parsed.invalid_reason is None
    assert parsed.thinking.startswith("The user wants a prime number.")
    assert parsed.criteria == ("Primality: The number given is prime.", "Brevity: Answers in one line.")


def test_qwen3_output_with_thinking_switched_off():
    parsed = parse_judgment("<think>\n\n</think>\n\n" + EVALUATION + "<score>6</score>")
    assert parsed.score == 6 and parsed.thinking == ""


def test_criteria_lose_bullets_and_numbers_but_keep_their_text():
    text = "<criteria>\n1. Accuracy: right\n2) Tone: kind\n\n- 3.5 stars: a rating\n</criteria>\n<score>5</score>"
    assert parse_judgment(text).criteria == ("Accuracy: right", "Tone: kind", "3.5 stars: a rating")


def test_scale_follows_score_range():
    assert parse_judgment("<score>4/5</score>", score_range=(1, 5)).score == 4
    assert parse_judgment("<score>7</score>", score_range=(1, 5)).invalid_reason == "out_of_range"


# ---------------------------------------------------------------- pairwise verdicts


@pytest.mark.parametrize(
    ("text", "truncated", "expected"),
    [
        pytest.param(EVALUATION + "<verdict>A</verdict>", False, ("A", None), id="a"),
        pytest.param("<think>A is close.</think>\n<Verdict> b </Verdict>", False, ("B", None), id="b-after-thinking"),
        pytest.param("<think>I pick <verdict>A</verdict></think>\nB is better.", False,
                     (None, "no_verdict_tag"), id="verdict-only-inside-thinking"),
        pytest.param("<verdict>A</verdict> no wait <verdict>B</verdict>", False,
                     (None, "conflicting_verdicts"), id="conflicting"),
        pytest.param("<verdict>Response A</verdict>", False, (None, "not_a_verdict"), id="not-a-letter"),
        pytest.param("<verdict>tie</verdict>", False, (None, "not_a_verdict"), id="tie"),
        pytest.param(EVALUATION + "<verdict>", True, (None, "truncated"), id="truncated"),
        pytest.param("<think>Comparing the two", True, (None, "unclosed_thinking"), id="unclosed-thinking"),
        pytest.param("", False, (None, "empty"), id="empty"),
    ],
)
def test_parse_verdict(text, truncated, expected):
    assert parse_verdict(text, truncated=truncated) == expected
