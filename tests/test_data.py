"""Loaders on the real shared data: counts equal those in ../shared/data/SOURCES.md."""

import json

import pytest

from patarm_kit.config.loader import load_config
from patarm_kit.config.schema import SourceConfig
from patarm_kit.data.loading import load_source, load_sources
from patarm_kit.data.pairs import DataError, PreferencePair, read_pairs, resolve_data_dir
from patarm_kit.data.sources.ifeval import load_ifeval
from patarm_kit.data.splits import split_of
from patarm_kit.data.stage import write_stage_pairs

FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def by(pairs, attribute):
    counts = {}
    for pair in pairs:
        counts[getattr(pair, attribute)] = counts.get(getattr(pair, attribute), 0) + 1
    return counts


def test_rmbench_counts_match_sources_md(data_dir):
    pairs, report = load_source("rm-bench", data_dir)
    assert len(pairs) == 798
    assert by(pairs, "task") == {"chat": 129, "code": 228, "safety": 441}
    assert by(pairs, "subset") == {"chat": 129, "code": 228, "safety-refuse": 284, "safety-response": 157}
    assert all(len(p.chosen_variants) == len(p.rejected_variants) == 3 for p in pairs)
    assert report.missing_files and report.missing_files[0].endswith("math_filtered.json")
    assert report.files["rm-bench/chat_filtered.json"].startswith("1df6053a")


def test_llmbar_counts_and_labels(data_dir):
    pairs, _ = load_source("llmbar", data_dir)
    assert by(pairs, "subset") == {
        "Natural": 100, "Adversarial_Neighbor": 134, "Adversarial_GPTInst": 92,
        "Adversarial_GPTOut": 47, "Adversarial_Manual": 46,
    }
    raw = json.loads((data_dir / "llmbar" / "Natural.json").read_text())[0]
    first = next(p for p in pairs if p.id == "llmbar/Natural/1")
    assert first.chosen == raw[f"output_{raw['label']}"]


def test_hh_rlhf_rows_and_the_rows_that_are_not_pairs(data_dir):
    with pytest.raises(DataError, match=r"hh-rlhf/.*_test\.jsonl\.gz: row \d+: field (chosen|rejected)"):
        load_source("hh-rlhf", data_dir)
    pairs, report = load_source(SourceConfig("hh-rlhf", bad_rows="skip"), data_dir)
    assert report.rows == 8552
    assert sum(report.skipped.values()) + len(pairs) + report.duplicates == 8552
    assert report.skipped["rejected: chosen and rejected responses are identical"] == 36
    assert by(pairs, "task")["safety"] == sum(1 for p in pairs if p.subset == "harmless-base_test")
    assert all(p.prompt[-1]["role"] == "user" for p in pairs)


def test_hh_dialogue_becomes_messages(data_dir):
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip"), data_dir)
    multi = next(p for p in pairs if len(p.prompt) >= 3)
    assert [m["role"] for m in multi.prompt[:3]] == ["user", "assistant", "user"]
    assert "Human:" not in multi.chosen and "Assistant:" not in multi.chosen


def test_finegrained_strict_pairs(data_dir):
    pairs, report = load_source("finegrained-qa", data_dir)
    assert len(pairs) == 2616 and report.skipped == {"tie (no preference)": 384}


def test_ifeval_prompts(data_dir):
    prompts, report = load_ifeval(data_dir)
    assert len(prompts) == 541 and report.files["ifeval/input_data.jsonl"].startswith("67ffeee0")


def test_splits_are_deterministic_and_disjoint_by_prompt(data_dir):
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip"), data_dir)
    splits = {}
    for pair in pairs:
        splits.setdefault(split_of(pair, FRACTIONS), set()).add(pair.prompt_text)
    assert splits["train"].isdisjoint(splits["test"]) and splits["train"].isdisjoint(splits["dev"])
    assert splits["dev"].isdisjoint(splits["test"])
    assert 0.75 < len(splits["train"]) / sum(map(len, splits.values())) < 0.85
    assert [split_of(p, FRACTIONS) for p in pairs[:50]] == [split_of(p, FRACTIONS) for p in pairs[:50]]


def test_limit_is_a_deterministic_mix(data_dir):
    a, report = load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=100), data_dir)
    b, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=100), data_dir)
    assert [p.id for p in a] == [p.id for p in b] and report.limited_to == 100
    assert len(by(a, "subset")) == 4, "a limited load still mixes every subset"


def test_exact_duplicates_are_removed_and_counted(tmp_path):
    row = {"prompt": "p", "chosen": "good", "rejected": "bad"}
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [row, row, {**row, "chosen": "better"}]))
    pairs, report = load_source(str(path))
    assert len(pairs) == 2 and report.duplicates == 1


def test_generic_file_with_chat_messages(tmp_path):
    row = {
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}],
        "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}],
        "task": "chat",
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([row]))
    (pair,), _ = load_source(str(path))
    assert pair.chosen == "hello!" and pair.rejected == "go away" and pair.source == "mine"


PROMPT_LAYOUTS = {"text": "How do I brew tea?", "messages": [{"role": "user", "content": "How do I brew tea?"}]}
RESPONSE_LAYOUTS = {"text": lambda answer: answer,
                    "transcript": lambda answer: [{"role": "user", "content": "How do I brew tea?"},
                                                  {"role": "assistant", "content": answer}]}


@pytest.mark.parametrize("prompt_layout", sorted(PROMPT_LAYOUTS))
@pytest.mark.parametrize("response_layout", sorted(RESPONSE_LAYOUTS))
def test_every_layout_the_generic_converter_accepts_gives_the_same_pair(tmp_path, prompt_layout, response_layout):
    """The paper's RL file (AIJian/PaTaRM rl_train_mix_41.7k.jsonl) is read by the generic converter, whose
    layouts no real row has shown here: each it accepts, as a JSON-lines file, gives the same pair."""
    respond = RESPONSE_LAYOUTS[response_layout]
    row = {"id": "rl-7", "prompt": PROMPT_LAYOUTS[prompt_layout], "chosen": respond("Steep the leaves three minutes."),
           "rejected": respond("Tea is a drink.")}
    path = tmp_path / "rl_train_mix.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (pair,), report = load_source(str(path))
    assert (pair.id, pair.task, pair.chosen, pair.rejected) == ("rl_train_mix/rl-7", "chat", "Steep the leaves three minutes.", "Tea is a drink.")
    assert list(pair.prompt) == [{"role": "user", "content": "How do I brew tea?"}] and report.pairs == 1


def test_pairs_round_trip_through_jsonl(tmp_path, data_dir):
    loaded = load_sources([SourceConfig("llmbar", role="bench")], data_dir)
    written = write_stage_pairs(loaded, FRACTIONS, tmp_path, {"bench-rewardbench.jsonl": loaded[0].pairs})
    assert sorted(written) == ["bench-rewardbench.jsonl", "dev.jsonl", "test.jsonl", "train.jsonl"]  # no file per bench source
    assert read_pairs(written["bench-rewardbench.jsonl"]) == loaded[0].pairs


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("PATARM_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()
    assert resolve_data_dir(str(tmp_path / ".")) == tmp_path.resolve()
    monkeypatch.setenv("PATARM_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="PATARM_DATA_DIR"):
        resolve_data_dir()


def test_missing_source_files_say_where_to_look(tmp_path):
    with pytest.raises(DataError, match="no files found .*data/README.md"):
        load_source("llmbar", tmp_path)


def test_profile_sources_all_load(data_dir):
    config = load_config("smoke")
    loaded = load_sources(config.data.sources, str(data_dir))
    assert [s.spec.name for s in loaded] == ["hh-rlhf", "finegrained-qa", "rm-bench", "llmbar"]
    assert all(isinstance(p, PreferencePair) for s in loaded for p in s.pairs)
