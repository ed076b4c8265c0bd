"""Splits are a function of a pair's identity and the fractions' values, and stage 01 keeps every
held-out pair (dev, test, bench) off the training prompts, on the real data of every local profile."""

from __future__ import annotations

import dataclasses

import pytest

from patarm_kit import stages
from patarm_kit.config.loader import PROFILE_DIR, REPO_ROOT, load_config
from patarm_kit.data.loading import BUILT_SOURCES, BUILTIN_SOURCES, load_source
from patarm_kit.data.pairs import PreferencePair, read_pairs
from patarm_kit.data.splits import prompt_keys, split_of, split_of_key
from patarm_kit.evaluation.benches import bench_pairs, get_bench, run_benches
from patarm_kit.runs.run import Run

YAML_ORDER = {"train": 0.8, "dev": 0.1, "test": 0.1}
MANIFEST_ORDER = {"dev": 0.1, "test": 0.1, "train": 0.8}  # a manifest's keys are sorted
LOCAL = set(BUILTIN_SOURCES) | set(BUILT_SOURCES)
PROFILES = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
LOCAL_PROFILES = [p for p in PROFILES  # built-in sources, or a pairs file in the repository (example-own-data)
                  if all(s.name in LOCAL or (REPO_ROOT / s.name).is_file() for s in load_config(p).data.sources)]


def test_a_split_does_not_depend_on_the_order_of_the_fractions():
    keys = [f"prompt {i}" for i in range(2000)]
    assert [split_of_key(k, YAML_ORDER) for k in keys] == [split_of_key(k, MANIFEST_ORDER) for k in keys]
    counts = {name: sum(split_of_key(k, YAML_ORDER) == name for k in keys) for name in YAML_ORDER}
    assert 1500 < counts["train"] < 1700 and 150 < counts["dev"] < 260 and 150 < counts["test"] < 260


def test_built_pairs_are_the_same_after_a_manifest_round_trip(tmp_path, data_dir):
    config = load_config("cpu-ablations")
    reopened = Run.open(Run.create("trip", config, results_dir=tmp_path).dir).config()
    assert list(reopened.data.split_fractions) != list(config.data.split_fractions)  # the round trip reorders them
    for name in BUILT_SOURCES:
        yaml_pairs, _ = load_source(name, data_dir, config.data.split_fractions)
        trip_pairs, _ = load_source(name, data_dir, reopened.data.split_fractions)
        assert [p.id for p in yaml_pairs] == [p.id for p in trip_pairs]
        assert [split_of(p, YAML_ORDER) for p in yaml_pairs] == [split_of(p, MANIFEST_ORDER) for p in trip_pairs]


def test_transfer_pairs_sit_on_test_prompts_only(data_dir):
    transfer, _ = load_source("verifiable-if-transfer", data_dir, MANIFEST_ORDER)
    assert transfer and {split_of(p, YAML_ORDER) for p in transfer} == {"test"}


def test_prompt_keys_see_a_built_pairs_base_prompt_and_every_user_turn():
    built = PreferencePair("b", "verifiable-if", "instruction", ({"role": "user", "content": "Why?\n\nAnswer in lowercase."},),
                           "a", "b", split_key="verifiable-if/Why?")
    dialogue = PreferencePair("d", "hh-rlhf", "chat", ({"role": "user", "content": "  WHY? "}, {"role": "assistant", "content": "x"},
                                                        {"role": "user", "content": "And then?"}), "a", "b")
    assert prompt_keys(built) & prompt_keys(dialogue) == {"why?"}


@pytest.fixture(scope="module", params=LOCAL_PROFILES)
def stage_one(request, tmp_path_factory):
    run = Run.create("split", load_config(request.param), results_dir=tmp_path_factory.mktemp(request.param))
    stages.data(run)
    return run


@pytest.fixture(scope="module")
def whole_benches(stage_one) -> dict[str, list[PreferencePair]]:
    """The run's whole (not held-out) benches as their sources give them, loaded once per profile."""
    return bench_pairs(stage_one.config())


def test_every_local_profile_is_tested():
    assert set(PROFILES) - set(LOCAL_PROFILES) == {"qwen3-8b", "qwen3-14b"}  # their sources are hub datasets


def test_the_test_split_survives_and_no_dev_pair_sits_on_a_bench_prompt(stage_one, whole_benches):
    layout = stage_one.layout
    assert layout.pairs("test").stat().st_size and layout.pairs("dev").stat().st_size
    bench_keys = frozenset().union(*(prompt_keys(p) for ps in whole_benches.values() for p in ps))
    assert not [p.id for p in read_pairs(layout.pairs("dev")) if prompt_keys(p) & bench_keys]


def test_no_held_out_pair_shares_a_prompt_with_a_training_pair(stage_one, whole_benches):
    layout = stage_one.layout
    train_keys = frozenset().union(*(prompt_keys(p) for p in read_pairs(layout.pairs("train"))))
    held_out = {split: read_pairs(layout.pairs(split)) for split in ("dev", "test")}
    held_out |= {f"bench {name}": pairs for name, pairs in whole_benches.items()}
    held_out |= {path.name: read_pairs(path) for path in layout.pairs_dir.glob("bench-*.jsonl")}
    for name, pairs in held_out.items():
        shared = [p.id for p in pairs if prompt_keys(p) & train_keys]
        assert not shared, f"{name}: {len(shared)} pairs share a prompt with a training pair, e.g. {shared[:3]}"


def test_every_bench_of_a_run_judges_the_file_stage_one_wrote_for_it(stage_one, whole_benches):
    """One pipe: inside a run a bench reads pairs/bench-<bench>.jsonl: the same pairs its source gives
    outside a run, or for a held-out bench its source's test split after decontamination."""
    config, layout = stage_one.config(), stage_one.layout
    test_ids = {p.id for p in read_pairs(layout.pairs("test"))}
    removed = stage_one.manifest()["stages"]["data"]["facts"]["decontaminated"]
    assert sorted(layout.pairs_dir.glob("bench-*.jsonl")) == sorted(layout.bench_pairs(spec) for spec in run_benches(config))
    for spec in run_benches(config):
        bench = get_bench(spec)
        inside, outside = bench.load(config, None, layout), bench.load(config, None)
        assert list(inside.files) == [layout.relative(layout.bench_pairs(spec))]
        if spec in whole_benches:
            assert inside.pairs == outside.pairs == whole_benches[spec]
        else:  # held out: the run's test split of the source (its `limit` drawn), decontaminated
            inside_ids, outside_ids = {p.id for p in inside.pairs}, {p.id for p in outside.pairs}
            assert inside_ids and inside_ids <= test_ids and inside_ids <= outside_ids
            if next(s for s in config.data.sources if s.name == bench.source_name).limit is None:
                assert len(outside_ids - inside_ids) <= removed[bench.source_name]["training_prompt"]


def test_stage_one_records_what_it_removed(stage_one):
    facts = stage_one.manifest()["stages"]["data"]["facts"]["decontaminated"]
    config = stage_one.config()
    assert set(facts) == {s.name for s in config.data.sources if s.role == "train"}
    for source, counts in facts.items():
        assert set(counts) == {"bench_prompt", "by_bench", "training_prompt"}
        assert counts["bench_prompt"] <= sum(counts["by_bench"].values())
        assert stage_one.manifest()["data"][source]["decontaminated"] == counts


def test_rmbench_prompts_are_taken_out_of_hh_rlhf_training(tmp_path):
    """RM-Bench's chat subset reuses HH-RLHF helpful-base prompts; the cpu profile trains on HH-RLHF."""
    config = load_config("cpu")
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, benches=["rmbench"], votes_curve=[]))
    run = Run.create("decontaminated", config, results_dir=tmp_path)
    stages.data(run)
    removed = run.manifest()["stages"]["data"]["facts"]["decontaminated"]["hh-rlhf"]
    assert removed["by_bench"].get("rmbench", 0) >= 19
    rmbench = frozenset().union(*(prompt_keys(p) for p in bench_pairs(config)["rmbench"]))
    for split in ("train", "dev"):  # a test pair may share a prompt with a bench: both are held out
        assert not [p for p in read_pairs(run.layout.pairs(split)) if prompt_keys(p) & rmbench]
