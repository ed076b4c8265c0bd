import dataclasses
import re
import types
import typing

import pytest

from patarm_kit.config.build import SPECIAL_RULES
from patarm_kit.config.loader import PROFILE_DIR, absolute_profile, load_config, parse_overrides
from patarm_kit.config.rules import CHOICES, MINIMUM, ConfigError
from patarm_kit.config.schema import RunConfig


@pytest.mark.parametrize("profile", ["smoke", "cpu", "qwen3-8b", "qwen3-14b"])
def test_every_profile_loads(profile):
    config = load_config(profile)
    assert config.profile == profile
    assert config.data.sources, "every profile names its data sources"


def test_profiles_inherit_and_override():
    cpu, smoke = load_config("cpu"), load_config("smoke")
    assert cpu.model.name == smoke.model.name == "smollm2-135m-instruct"
    assert load_config("qwen3-14b").model.name == "Qwen/Qwen3-14B"
    assert load_config("qwen3-14b").judge.preview == load_config("qwen3-8b").judge.preview


def test_an_empty_mapping_in_a_child_profile_clears_the_parents():
    assert load_config("cpu-ablations").par.variants  # shuffled, format-only, graded
    assert load_config("cpu-downstream").par.variants == {}  # `variants: {}`: no PAR variants to train


def test_eval_limit_is_one_number_or_one_per_bench():
    cpu = load_config("cpu")
    assert cpu.eval.limit_for("rmbench") == 16 and cpu.eval.limit_for("pairs:hh-rlhf") == 128
    assert load_config("smoke").eval.limit_for("rmbench") == 1
    with pytest.raises(ConfigError, match="eval.limit has no entry for bench 'pairs:llmbar'"):
        cpu.eval.limit_for("pairs:llmbar")
    with pytest.raises(ConfigError, match="eval.limit"):
        load_config("cpu", {"eval.limit": "{rmbench: many}"})


def test_overrides_parse_yaml_scalars():
    config = load_config("cpu", parse_overrides(["eval.sampling.temperature=0.7", "eval.limit=null", "seed=3"]))
    assert config.eval.sampling.temperature == 0.7 and config.eval.limit is None and config.seed == 3


def test_fingerprint_changes_with_config():
    assert load_config("cpu").fingerprint() == load_config("cpu").fingerprint()
    assert load_config("cpu").fingerprint() != load_config("cpu", {"seed": 1}).fingerprint()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"judge.preview.temprature": "0.5"}, "unknown key judge.preview.temprature"),
        ({"judge.preview.temperature": "hot"}, "judge.preview.temperature: expected float"),
        ({"judge.preview.n": "true"}, "judge.preview.n: expected int"),
        ({"nonsense": "1"}, "unknown key nonsense"),
        ({"data.sources": "[{nam: x}]"}, "unknown key data.sources[0].nam"),
    ],
)
def test_bad_keys_and_types_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("cpu", overrides)


# ---------------------------------------------------------------- sampling: one block per use


SAMPLING_BLOCKS = ("judge.preview", "sft.checks", "par.rollouts", "eval.sampling", "eval.votes_curve_sampling")


def block(config, key):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "qwen3-8b", "qwen3-14b"])
def test_each_use_reads_its_own_sampling_block(profile):
    config = load_config(profile)
    for key in SAMPLING_BLOCKS:  # changing one block leaves every other as it was
        changed = load_config(profile, {f"{key}.temperature": "0.55"})
        assert [block(changed, k).temperature == 0.55 for k in SAMPLING_BLOCKS] == [k == key for k in SAMPLING_BLOCKS]
        assert [block(changed, k) for k in SAMPLING_BLOCKS if k != key] == [block(config, k) for k in SAMPLING_BLOCKS if k != key]
    assert config.eval.sampling.n == 1 and config.eval.sampling.temperature == 0.0, "one greedy judgment per response"
    assert config.sft.checks == config.par.rollouts, "the warm-up checks sample as PAR's rollouts will"
    assert max(config.eval.votes_curve) == config.eval.votes_curve_sampling.n


@pytest.mark.parametrize("old", ["judge.temperature", "judge.n_samples", "judge.max_new_tokens", "par.temperature",
                                 "par.num_generations", "par.max_completion_length", "eval.votes", "eval.vote_temperature"])
def test_the_old_shared_sampling_keys_are_unknown(old):
    with pytest.raises(ConfigError, match=f"unknown key {re.escape(old)}"):
        load_config("smoke", {old: "1"})


def test_a_block_given_whole_replaces_the_profile_s_block():
    config = load_config("smoke", {"eval.sampling": "{n: 4, temperature: 0.8}"})
    assert (config.eval.sampling.n, config.eval.sampling.temperature) == (4, 0.8)
    assert config.eval.sampling.max_new_tokens == 128, "keys it leaves out take SamplingConfig's defaults"
    assert load_config("smoke", {"eval.sampling.n": "4", "eval.sampling.temperature": "0.8"}).eval.sampling.max_new_tokens == 32


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*cpu"):
        load_config("gpu-xl")


def test_profile_file_in_configs_dir_has_no_unknown_keys():
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
    assert {"smoke", "cpu", "qwen3-8b", "qwen3-14b"} <= set(names)


# ---------------------------------------------------------------- value rules: checked where a profile or an override is read


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"eval.sampling.n": "0"}, "eval.sampling.n: must be at least 1, got 0"),
        ({"eval.n_boot": "0"}, "eval.n_boot: must be at least 1, got 0"),
        ({"eval.limit": "{rmbench: 0}"}, "eval.limit.rmbench: must be at least 1, got 0"),
        ({"eval.votes_curve": "[1, 0]"}, "eval.votes_curve[1]: must be at least 1, got 0"),
        ({"data.sources": "[{name: hh-rlhf, limit: 0}]"}, "data.sources[0].limit: must be at least 1, got 0"),
        ({"sft.batch_size": "-2"}, "sft.batch_size: must be at least 1, got -2"),
        ({"par.rollouts.n": "1"}, "par.rollouts.n: must be at least 2, got 1"),
        ({"eval.sampling.n": "4"}, "eval.sampling: n=4 judgments per response need temperature > 0"),
        ({"judge.preview.temperature": "0"}, "judge.preview: n=2 judgments per response need temperature > 0"),
        ({"sft.checks.max_new_tokens": "0"}, "sft.checks.max_new_tokens: must be at least 1, got 0"),
        ({"par.rollouts.top_p": "0"}, "par.rollouts.top_p: must be in (0, 1], got 0.0"),
        ({"eval.votes_curve_sampling.temperature": "-1"}, "eval.votes_curve_sampling.temperature: must be at least 0, got -1.0"),
        ({"eval.votes_curve": "[1, 2, 8]"}, "eval.votes_curve: its last point (8 votes) must be the eval.votes_curve_sampling.n=2"),
        ({"judge.preview_pairs": "0"}, "judge.preview_pairs: must be at least 1, got 0"),
        ({"seed": "-1"}, "seed: must be at least 0, got -1"),
        ({"eval.ties": "halves"}, "eval.ties: expected one of half, zero, got 'halves'"),
        ({"judge.voting": "avg"}, "judge.voting: expected one of mean, majority"),
        ({"data.split_fractions": "{train: 0, dev: 0}"}, "data.split_fractions: the fractions must add up to more than 0"),
        ({"data.split_fractions": "{train: 1.1, dev: -0.1}"}, "data.split_fractions.dev: must be at least 0"),
        ({"data.split_fractions": "{train: 0.9, valid: 0.1}"}, "data.split_fractions.valid: unknown split"),
        ({"eval.paired": "[[base]]"}, "eval.paired[0]: expected two judges"),
    ],
)
def test_counts_choices_and_fractions_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("smoke", overrides)


def test_none_still_means_all_where_a_count_allows_it():
    config = load_config("smoke", {"eval.limit": "null", "sft.n_pairs": "null", "data.split_fractions": "{train: 1}"})
    assert config.eval.limit is None and config.sft.n_pairs is None and config.data.split_fractions == {"train": 1.0}


def test_every_rule_names_a_key_that_exists():
    """A renamed key must take its rule along (a rule for a key that is gone checks nothing)."""
    def field_type(dotted: str):
        annotation = RunConfig
        for part in dotted.split("."):
            while typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
                annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            assert dataclasses.is_dataclass(annotation), dotted
            annotation = typing.get_type_hints(annotation)[part]
        return annotation

    for key in [*MINIMUM, *CHOICES, *SPECIAL_RULES]:
        field_type(key)


def test_a_malformed_profile_names_its_file_and_line(tmp_path):
    profile = tmp_path / "broken.yaml"
    profile.write_text("extends: smoke\neval:\n  n_boot: [1\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(profile))}: not valid YAML \(.* at line \d+, column \d+\)$"):
        load_config(str(profile))


def test_a_malformed_override_value_names_the_key():
    with pytest.raises(ConfigError, match=r"override eval.limit=\{a: \[1: not a valid YAML value"):
        load_config("smoke", {"eval.limit": "{a: [1"})


def test_extends_must_name_a_profile(tmp_path):
    profile = tmp_path / "odd.yaml"
    profile.write_text("extends: 3\n")
    with pytest.raises(ConfigError, match=r"odd.yaml: extends: expected a profile name or path, got 3"):
        load_config(str(profile))


def test_relative_profile_paths_resolve_against_the_callers_directory(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "base.yaml").write_text("extends: smoke\nseed: 5\n")
    (folder / "child.yaml").write_text("extends: base.yaml\neval: {n_boot: 7}\n")  # relative to child.yaml's folder
    monkeypatch.chdir(tmp_path)
    config = load_config("profiles/child.yaml")
    assert (config.profile, config.seed, config.eval.n_boot) == ("child", 5, 7)
    assert absolute_profile("profiles/child.yaml") == str(folder / "child.yaml")
    assert absolute_profile("smoke") == "smoke"
    monkeypatch.chdir(folder.parent.parent)  # elsewhere, the absolute path still finds it
    assert load_config(absolute_profile(str(folder / "child.yaml"))).seed == 5
