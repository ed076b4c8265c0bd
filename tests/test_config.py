import pytest

from patarm_kit.config import PROFILE_DIR, ConfigError, load_config, parse_overrides


@pytest.mark.parametrize("profile", ["smoke", "cpu", "qwen3-8b", "qwen3-14b"])
def test_every_profile_loads(profile):
    config = load_config(profile)
    assert config.profile == profile
    assert config.data.sources, "every profile names its data sources"


def test_profiles_inherit_and_override():
    cpu, smoke = load_config("cpu"), load_config("smoke")
    assert cpu.model.name == smoke.model.name == "smollm2-135m-instruct"
    assert load_config("qwen3-14b").model.name == "Qwen/Qwen3-14B"
    assert load_config("qwen3-14b").judge.max_new_tokens == load_config("qwen3-8b").judge.max_new_tokens


def test_eval_limit_is_one_number_or_one_per_bench():
    cpu = load_config("cpu")
    assert cpu.eval.limit_for("rmbench") == 8 and cpu.eval.limit_for("pairs:hh-rlhf") == 48
    assert load_config("smoke").eval.limit_for("rmbench") == 1
    with pytest.raises(ConfigError, match="eval.limit has no entry for bench 'pairs:llmbar'"):
        cpu.eval.limit_for("pairs:llmbar")
    with pytest.raises(ConfigError, match="eval.limit"):
        load_config("cpu", {"eval.limit": "{rmbench: many}"})


def test_overrides_parse_yaml_scalars():
    config = load_config("cpu", parse_overrides(["judge.temperature=0.7", "eval.limit=null", "seed=3"]))
    assert config.judge.temperature == 0.7 and config.eval.limit is None and config.seed == 3


def test_fingerprint_changes_with_config():
    assert load_config("cpu").fingerprint() == load_config("cpu").fingerprint()
    assert load_config("cpu").fingerprint() != load_config("cpu", {"seed": 1}).fingerprint()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"judge.temprature": "0.5"}, "unknown key judge.temprature"),
        ({"judge.temperature": "hot"}, "judge.temperature: expected float"),
        ({"judge.n_samples": "true"}, "judge.n_samples: expected int"),
        ({"nonsense": "1"}, "unknown key nonsense"),
        ({"data.sources": "[{nam: x}]"}, "unknown key data.sources[0].nam"),
    ],
)
def test_bad_keys_and_types_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("cpu", overrides)


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*cpu"):
        load_config("gpu-xl")


def test_profile_file_in_configs_dir_has_no_unknown_keys():
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
    assert {"smoke", "cpu", "qwen3-8b", "qwen3-14b"} <= set(names)
