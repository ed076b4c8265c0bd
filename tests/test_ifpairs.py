"""The verifiable instruction-following pairs and the checker they are labelled with, on the real data."""

import collections

import pytest
from if_verifiable.common import evaluate_instructions
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from patarm_kit.config.schema import SourceConfig
from patarm_kit.data import ifcheck
from patarm_kit.data.loading import load_source
from patarm_kit.data.sources import verifiable_if as ifpairs
from patarm_kit.data.splits import split_of, split_of_key

FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}

# Hand-written responses: (response, instruction ids, kwargs, prompt).
GOLDEN = [
    ("all lower case here, with a comma", ["change_case:english_lowercase", "punctuation:no_comma"], [{}, {}], "p"),
    ("**Title**\nanswer in lower case\nThanks!", ["change_case:english_lowercase"], [{}], "p"),
    ('"A quoted answer."', ["startend:quotation"], [{}], "p"),
    ("Some text.\nAny other questions?", ["startend:end_checker"], [{"end_phrase": "Any other questions?"}], "p"),
    ("* one\n* two\n* three", ["detectable_format:number_bullet_lists"], [{"num_bullets": 3}], "p"),
    ("* one\n* two", ["detectable_format:number_bullet_lists"], [{"num_bullets": 3}], "p"),
    ("<<My Title>>\nbody", ["detectable_format:title"], [{}], "p"),
    ("One. Two. Three. Four.", ["length_constraints:number_sentences"], [{"relation": "less than", "num_sentences": 3}], "p"),
    ("Here is my answer.\nP.S. bye", ["detectable_content:postscript"], [{"postscript_marker": "P.S."}], "p"),
    ('{"answer": "yes"}', ["detectable_format:json_format"], [{}], "p"),
    ("```json\n{\"a\": 1}\n```", ["detectable_format:json_format"], [{}], "p"),
    ("word " * 40, ["length_constraints:number_words"], [{"relation": "at least", "num_words": 50}], "p"),
    ("I LOVE THIS AND THAT", ["change_case:capital_word_frequency"], [{"capital_frequency": 3, "capital_relation": "at least"}], "p"),
]


@pytest.mark.parametrize("response,ids,kwargs,prompt", GOLDEN)
def test_verdicts_equal_the_wrapped_implementation(response, ids, kwargs, prompt):
    ifcheck.punkt_source()  # the same Punkt parameters on both sides
    expected, _ = evaluate_instructions(response, ids, kwargs, prompt, INSTRUCTION_DICT)
    got = ifcheck.check(response, ids, kwargs, prompt)
    assert [(v.instruction_id, v.strict, v.loose) for v in got] == [(r.instruction_id, r.strict_pass, r.loose_pass) for r in expected]


def test_golden_verdicts_differ_where_they_should():
    """Strict and loose differ (markdown first line), and pass/fail both occur: the golden test can fail."""
    verdicts = [ifcheck.check(*case) for case in GOLDEN]
    assert verdicts[1][0].strict is False and verdicts[1][0].loose is True
    assert {v.strict for vs in verdicts for v in vs} == {True, False}


def test_checker_record_names_the_punkt_source():
    record = ifcheck.checker_record()
    assert record["package"] == "if-verifiable" and record["version"] == "0.1.2"
    assert record["punkt"].startswith(("official:", "fallback:"))
    assert set(record["punkt_dependent_types"]) <= set(ifcheck.instruction_types())


def test_unknown_instruction_is_refused():
    with pytest.raises(ValueError, match="unknown instruction id"):
        ifcheck.check("text", ["no:such_type"], [{}], "p")


@pytest.fixture(scope="module")
def built(data_dir):
    return {name: load_source(name, data_dir, FRACTIONS) for name in ("verifiable-if", "verifiable-if-transfer")}


def test_every_label_is_the_checkers(built, data_dir):
    """Rebuilt with the kwargs the builder drew, each stored pair's chosen side passes and its rejected side fails."""
    chat = [p for name in ("hh-rlhf", "finegrained-qa") for p in load_source(SourceConfig(name, bad_rows="skip"), data_dir)[0]
            if split_of(p, FRACTIONS) == "train"]
    stored = {p.id: p for p in built["verifiable-if"][0]}
    checked = 0
    for base in ifpairs.base_prompts(chat)[::25]:
        for pair in ifpairs.build_for(base, ifpairs.TRAINED, ifpairs.TYPES_PER_PROMPT, lambda *_: None):
            kept = stored[f"verifiable-if/{base.source_id}/{pair.instruction_id}"]
            assert (kept.prompt[0]["content"], kept.chosen, kept.rejected) == (pair.prompt, pair.chosen, pair.rejected)
            verdicts = [ifcheck.check(t, [pair.instruction_id], [pair.kwargs], pair.prompt)[0].strict for t in (kept.chosen, kept.rejected)]
            assert verdicts == [True, False]
            checked += 1
    assert checked > 100


def test_splits_go_by_base_prompt_and_transfer_types_never_train(built):
    pairs, report = built["verifiable-if"]
    splits = collections.defaultdict(set)
    for pair in pairs:
        splits[pair.split_key].add(split_of(pair, FRACTIONS))
    assert all(len(s) == 1 for s in splits.values())
    counts = collections.Counter(split_of(p, FRACTIONS) for p in pairs)
    assert counts["test"] >= 400  # the primary comparison's size
    assert {p.subset for p in pairs} == set(ifpairs.TRAINED)
    transfer, _ = built["verifiable-if-transfer"]
    assert {p.subset for p in transfer} == set(ifpairs.HELD_OUT)
    assert all(split_of_key(p.split_key, FRACTIONS) == "test" for p in transfer)
    assert report.built_with["ifeval_prompt_overlap"] == 0
    assert report.built_with["checker"]["package"] == "if-verifiable"


def test_base_prompts_come_from_the_training_split_only(built, data_dir):
    hh, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip"), data_dir)
    held_out = {p.prompt[0]["content"].strip() for p in hh if len(p.prompt) == 1 and split_of(p, FRACTIONS) != "train"}
    pairs, _ = built["verifiable-if"]
    questions = {p.prompt[0]["content"].split("\n\n")[0] for p in pairs}
    assert not questions & held_out


def test_length_does_not_give_the_label_away(built):
    """Both sides are edits of one response, balanced in length where the type allows: the
    longer side is the chosen one in far fewer than all pairs."""
    pairs, _ = built["verifiable-if"]
    longer = sum(len(p.chosen) > len(p.rejected) for p in pairs) / len(pairs)
    assert 0.3 < longer < 0.7
