"""PAR training: rewards across processes, a real tiny GRPO run, and resume after SIGKILL."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from par_reward_worker import rewards_of  # the reward call the multi-process worker makes
from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.data.pairs import PreferencePair, save_pairs
from patarm_kit.judging.prompts import parse_judgment
from patarm_kit.runs.run import Run
from patarm_kit.training.checkpoints import CHECKPOINT_COMPLETE, latest_checkpoint
from patarm_kit.training.grpo import read_metrics
from patarm_kit.training.par import evaluation_first_word, rollout_metrics, score_entropy
from patarm_kit.training.par_reward import rewards_for_batch

# Each (pair, side) has 3 rollouts: 3 pairs x 2 sides x 3 = 18 completions. Two processes hold
# 9 each, so pair "b" is split: its chosen rollouts on process 0, its rejected on process 1.
JUDGMENTS = {
    ("a", "chosen"): ["<score>8</score>", "<score>6</score>", "no score here"],
    ("a", "rejected"): ["<score>3</score>", "<score>7</score>", "<score>5</score>"],
    ("b", "chosen"): ["<score>4</score>", "<score>9</score>", "<score>6</score>"],
    ("b", "rejected"): ["<score>6</score>", "<score>2</score>", "<score>11</score>"],
    ("c", "chosen"): ["<score>5</score>", "<score>5</score>", "<score>5</score>"],
    ("c", "rejected"): ["<score>5</score>", "<score>5</score>", "<score>5</score>"],
}
ROLLOUTS = [
    {"pair_id": pair_id, "side": side, "completion": text, "tokens": 10 + i}
    for (pair_id, side), texts in JUDGMENTS.items()
    for i, text in enumerate(texts)
]
TINY_RUN = [
    "par.n_pairs=2", "par.pairs_per_step=1", "par.rollouts.n=2", "par.rollouts.max_new_tokens=8",
    "par.max_steps=2", "par.save_steps=1", "judge.max_prompt_tokens=32", "judge.max_response_tokens=32",
    "model.torch_threads=1",  # one thread: on a shared machine two threads wait on each other (10x slower)
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_one_process_rewards_are_par_on_the_whole_batch():
    rewards, metrics = rewards_of(ROLLOUTS, "binary", 0.1)
    scores = [parse_judgment(r["completion"]).score for r in ROLLOUTS]
    expected = rewards_for_batch([r["pair_id"] for r in ROLLOUTS], [r["side"] for r in ROLLOUTS], scores, "binary", 0.1)
    assert rewards == pytest.approx(expected)
    # pair a: chosen mean 7 > rejected mean 5; b: 6.33 > 4; c: tie -> 0.5
    assert metrics["par/pair_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert metrics["par/parse_rate"] == pytest.approx(16 / 18)
    assert metrics["par/zero_std_group_share"] == pytest.approx(2 / 6)  # pair c: all equal, nobody wins
    assert metrics["par/tie_rate"] == pytest.approx(1 / 3)  # pair c
    assert metrics["par/band_count"] == 0.0 and "par/band_top_share" not in metrics  # no evaluation sections


def test_rollout_metrics_on_a_hand_made_step():
    metrics = rollout_metrics(["p", "p", "p", "p"], ["chosen", "chosen", "rejected", "rejected"],
                              [9, None, 2, 4], [1.0, 0.0, 1.0, 1.0], [10, 20, 30, 40], ["weak", None, "weak", "handles"])
    assert metrics == {
        "reward_mean": 0.75, "pair_accuracy": 1.0, "parse_rate": 0.75, "completion_length_mean": 25.0,
        "group_reward_std_mean": 0.25, "zero_std_group_share": 0.5, "tie_rate": 0.0,
        "score_entropy": pytest.approx(math.log2(3)), "band_top_share": pytest.approx(2 / 3), "band_count": 2.0,
    }


def test_ties_count_equal_means_and_pairs_without_a_valid_score_on_a_side():
    pair_ids = ["tie"] * 4 + ["unscored"] * 4 + ["won"] * 4 + ["lost"] * 4
    sides = ["chosen", "chosen", "rejected", "rejected"] * 4
    scores = [5, 7, 6, 6,  8, 8, None, None,  9, 9, 2, 2,  3, 3, 4, 4]
    metrics = rollout_metrics(pair_ids, sides, scores, [0.0] * 16, [1] * 16, [None] * 16)
    assert metrics["tie_rate"] == 0.5  # "tie" (mean 6 = 6) and "unscored" (no valid rejected score)
    assert metrics["pair_accuracy"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert metrics["band_top_share"] is None and metrics["band_count"] == 0.0  # no evaluation section anywhere


def test_score_entropy_is_in_bits_over_the_valid_scores():
    assert score_entropy([5, 5, 5, None]) == 0.0
    assert score_entropy([1, 10, None, None]) == 1.0
    assert score_entropy(list(range(1, 11))) == pytest.approx(math.log2(10))
    assert score_entropy([3, 3, 7, 9]) == pytest.approx(1.5)  # -(1/2 log 1/2 + 2 x 1/4 log 1/4)
    assert score_entropy([None, None]) is None


def test_the_band_is_the_first_word_of_the_evaluation():
    from patarm_kit.judging.prompts import format_judgment

    judgment = format_judgment([("accuracy", "the arithmetic is right")], "Weak on arithmetic; poor accuracy.", 2)
    assert evaluation_first_word(judgment) == "weak"
    assert evaluation_first_word("<criteria>\n- a: b\n</criteria>\n<Evaluation >\n **Handles** it.</evaluation>") == "handles"
    thought_first = "<think>\n<evaluation>Draft</evaluation>\n</think>\n<evaluation>Partly, yes</evaluation>"
    assert evaluation_first_word(thought_first) == "partly"  # the draft inside <think> is not the judgment
    assert evaluation_first_word("<evaluation></evaluation>\n<score>5</score>") is None
    assert evaluation_first_word("<evaluation>Weak, cut off at the token limit") is None  # as the parser: complete only
    assert evaluation_first_word("<score>5</score>") is None
    assert evaluation_first_word("<think>never closed <evaluation>Weak") is None  # no answer outside thinking


def test_the_reward_function_logs_the_band_metrics():
    rows = [{"pair_id": "a", "side": side, "completion": f"<evaluation>{word} on it.</evaluation>\n<score>{score}</score>",
             "tokens": 5} for side, word, score in [("chosen", "Handles", 8), ("chosen", "Handles", 9),
                                                    ("rejected", "Weak", 2), ("rejected", "Handles", 8)]]
    _, metrics = rewards_of(rows, "binary", 0.1)
    assert metrics["par/band_top_share"] == 0.75 and metrics["par/band_count"] == 2.0
    assert metrics["par/tie_rate"] == 0.0 and metrics["par/score_entropy"] == pytest.approx(1.5)


def test_a_split_pair_cannot_be_scored_on_one_process_alone():
    first_half = ROLLOUTS[:9]
    with pytest.raises(ValueError, match="pair 'b' has no rejected"):
        rewards_for_batch([r["pair_id"] for r in first_half], [r["side"] for r in first_half],
                          [parse_judgment(r["completion"]).score for r in first_half])


def test_two_gloo_processes_give_the_same_rewards_as_one(tmp_path):
    spec = tmp_path / "rollouts.json"
    spec.write_text(json.dumps({"rollouts": ROLLOUTS, "mode": "graded", "format_weight": 0.1}))
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO_ROOT / "configs/accelerate/cpu_2proc.yaml"),
        "--main_process_port", str(free_port()),
        str(REPO_ROOT / "tests/par_reward_worker.py"), str(spec), str(tmp_path),
    ]
    done = subprocess.run(launch, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and {r["backend"] for r in ranks} == {"gloo"}
    assert "b/chosen" in ranks[0]["pairs"] and "b/rejected" in ranks[1]["pairs"]  # the split pair

    rewards, metrics = rewards_of(ROLLOUTS, "graded", 0.1)
    assert ranks[0]["rewards"] + ranks[1]["rewards"] == pytest.approx(rewards)
    assert ranks[0]["metrics"] == pytest.approx(metrics) and ranks[1]["metrics"] == pytest.approx(metrics)


# ---------------------------------------------------------------- real GRPO runs on SmolLM2


def make_run(tmp_path: Path, overrides: list[str]) -> Run:
    """A run folder holding two tiny training pairs, as notebook 01 would leave it."""
    config = load_config("smoke", dict(o.split("=", 1) for o in overrides))
    run = Run.create("par-test", config, results_dir=tmp_path)
    pairs = [
        PreferencePair(f"p{i}", "test", "chat", ({"role": "user", "content": question},), good, bad)
        for i, (question, good, bad) in enumerate([("What is 2+2?", "4.", "5."), ("Capital of France?", "Paris.", "Rome.")])
    ]
    save_pairs(pairs, run.dir / "pairs" / "train.jsonl")
    return run


@pytest.mark.slow
@pytest.mark.model
def test_tiny_grpo_run_writes_metrics_checkpoints_and_adapter(tmp_path):
    from patarm_kit.training.par import train_par

    run = make_run(tmp_path, TINY_RUN)
    config = load_config("smoke", dict(o.split("=", 1) for o in TINY_RUN))
    result = train_par(config, run)

    assert result.global_step == 2 and result.n_pairs == 2
    assert [row["step"] for row in result.metrics] == [1, 2]
    for key in ("par/reward_mean", "par/parse_rate", "par/completion_length_mean", "par/group_reward_std_mean",
                "par/zero_std_group_share", "par/tie_rate", "par/band_count", "seconds_per_step", "loss"):
        assert key in result.metrics[0], key
    assert result.metrics[0]["par/completion_length_mean"] <= 8
    for step in (1, 2):
        checkpoint = result.checkpoints / f"checkpoint-{step}"
        for name in ("adapter_model.safetensors", "trainer_state.json", "optimizer.pt", CHECKPOINT_COMPLETE):
            assert (checkpoint / name).is_file(), checkpoint / name
    assert latest_checkpoint(result.checkpoints).name == "checkpoint-2"
    assert (result.adapter / "adapter_model.safetensors").is_file()
    assert not list(result.adapter.glob("*.bin")), "the trainer's pickled training_args.bin stays out of the adapter"
    assert sorted(p.name for p in result.adapter.parent.iterdir()) == ["adapter", "checkpoints", "metrics.jsonl"]
    card = (result.adapter / "README.md").read_text()
    assert "smollm2-135m-instruct" in card and "none (fresh LoRA)" in card
    record = run.manifest()["training"]["par"]
    assert record["status"] == "done" and record["resumed_from"] is None
    assert record["grpo_args"]["num_generations"] == 2 and record["grpo_args"]["learning_rate"] == 1e-5
    assert record["grpo_args"]["loss_type"] == config.par.loss_type and record["grpo_args"]["beta"] == 0.0
    assert record["grpo_args"]["disable_dropout"] is True and record["lora_dropout"] == 0.0
    with pytest.raises(FileExistsError, match="--resume"):
        train_par(config, run)


@pytest.mark.slow
@pytest.mark.model
def test_with_beta_the_kl_to_the_warm_up_is_logged_and_only_the_trained_adapter_is_saved(tmp_path):
    """par.beta > 0 from a loaded (warm-up) adapter: TRL keeps a frozen copy of it as "ref" and logs
    the KL to it each step; the saved adapter is the trained one alone."""
    from datasets import Dataset
    from peft import PeftModel, get_peft_model
    from safetensors.torch import load_file

    from patarm_kit.judging.models import load_model, lora_config
    from patarm_kit.training.checkpoints import save_trained_adapter
    from patarm_kit.training.grpo import make_grpo_trainer, metrics_callback, read_metrics

    config = load_config("smoke", {"par.pairs_per_step": 1, "par.rollouts.n": 2, "par.rollouts.max_new_tokens": 8,
                                   "par.max_steps": 3, "par.beta": 0.01, "par.learning_rate": 0.01,
                                   "par.use_vllm": False, "model.torch_threads": 1})
    model, tokenizer = load_model(config.model, trainable=True)
    get_peft_model(model, lora_config(config.lora)).save_pretrained(tmp_path / "warm-up")
    model = PeftModel.from_pretrained(load_model(config.model, trainable=True)[0], tmp_path / "warm-up", is_trainable=True)
    trainer = make_grpo_trainer(config, model, tokenizer, Dataset.from_list([{"prompt": "Hi"}] * 6),
                                lambda completions, **kwargs: [float(len(c)) for c in completions], tmp_path / "grpo",
                                callbacks=[metrics_callback(tmp_path / "metrics.jsonl", "reward")])
    assert "ref" in trainer.model.peft_config and not any(p.requires_grad for n, p in trainer.model.named_parameters() if ".ref." in n)
    trainer.train()

    kl = [row["kl"] for row in read_metrics(tmp_path / "metrics.jsonl")]
    assert len(kl) == 3 and kl[0] == 0 and kl[-1] > 0  # step 1 samples from the warm-up itself
    save_trained_adapter(trainer, tmp_path / "trained")  # as train_par saves the PAR adapter
    assert not (tmp_path / "trained" / "ref").exists()
    warm_up = load_file(tmp_path / "warm-up" / "adapter_model.safetensors")
    trained = load_file(tmp_path / "trained" / "adapter_model.safetensors")
    assert warm_up.keys() == trained.keys() and any((warm_up[k] != trained[k]).any() for k in warm_up)


@pytest.mark.slow
@pytest.mark.model
def test_two_cpu_processes_train_with_a_pair_split_across_them(tmp_path):
    """4 completions per step on 2 processes: the chosen side on one, the rejected on the other."""
    run = make_run(tmp_path, [*TINY_RUN, "sft.enabled=false"])
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO_ROOT / "configs/accelerate/cpu_2proc.yaml"), "--main_process_port", str(free_port()),
        "-m", "patarm_kit.cli", "train", "--run-dir", str(run.dir),  # the run's own config
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    record = run.manifest()["training"]["par"]
    assert record["num_processes"] == 2 and record["grpo_args"]["per_device_train_batch_size"] == 2
    assert record["global_step"] == 2 and [row["step"] for row in read_metrics(run.dir / "par" / "metrics.jsonl")] == [1, 2]
    stage = run.manifest()["stages"]["par"]  # recorded once, by the main process
    assert stage["status"] == "done" and "par/adapter/adapter_model.safetensors" in stage["outputs"]


@pytest.mark.slow
@pytest.mark.model
def test_train_resumes_from_the_last_checkpoint_after_sigkill(tmp_path, kill_when_written):
    from peft import get_peft_model

    from patarm_kit.judging.models import load_model, lora_config

    run = make_run(tmp_path, TINY_RUN)
    # The SFT stage's output, here a fresh adapter: `train` starts from <run>/sft/adapter.
    config = load_config("smoke")
    get_peft_model(load_model(config.model)[0], lora_config(config.lora)).save_pretrained(run.dir / "sft" / "adapter")

    command = [sys.executable, "-m", "patarm_kit.cli", "train", "--profile", "smoke", "--run-dir", str(run.dir)]
    for override in TINY_RUN:
        command += ["--set", override]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when_written(first, run.dir / "par" / "checkpoints" / "checkpoint-1" / CHECKPOINT_COMPLETE, timeout=150)
    assert not (run.dir / "par" / "adapter").exists()  # it did not finish
    with (run.dir / "par" / "metrics.jsonl").open("a") as log:
        log.write('{"step": 2, "par/rew')  # a line torn by the kill: resume must cut it off

    second = subprocess.run([*command, "--resume"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    record = run.manifest()["training"]["par"]
    assert record["resumed_from"].endswith("checkpoint-1") and record["global_step"] == 2
    assert record["start_adapter"].endswith("sft/adapter")
    assert (run.dir / "par" / "metrics.jsonl").read_text().endswith("}\n"), "the torn line was cut off"
    metrics = read_metrics(run.dir / "par" / "metrics.jsonl")
    assert [row["step"] for row in metrics] == [1, 2]  # step 1 from the killed run, step 2 after resume
    assert (run.dir / "par" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.parametrize("layers", ["8", "null"], ids=["top-8-layers", "all-layers"])
def test_a_training_resumed_from_a_warm_up_with_a_kl_ends_where_the_uninterrupted_one_does(tmp_path, layers):
    """par.beta > 0 from a warm-up (cpu-par-experiment's settings, whose LoRA trains in all layers): the
    checkpoint keeps TRL's "ref" copy of the warm-up in a sub-folder beside the trained adapter.
    Resumed at step 1, training goes on from the trained adapter, not from the warm-up: step 2's KL
    and the final adapter are bit for bit those of the training that never stopped. (Before the fix:
    all layers went on from the warm-up silently; the top 8 refused the checkpoint's optimizer.)"""
    import shutil

    from peft import get_peft_model
    from safetensors.torch import load_file

    from patarm_kit.judging.models import load_model, lora_config
    from patarm_kit.training.par import train_par

    overrides = [*TINY_RUN, "par.beta=0.05", "par.learning_rate=0.01", f"par.trainable_layers={layers}"]
    config = load_config("smoke", dict(o.split("=", 1) for o in overrides))
    warm_up_config = lora_config(config.lora)
    warm_up_config.init_lora_weights = False  # a warm-up that has learned something: lora_B is not zero
    get_peft_model(load_model(config.model)[0], warm_up_config).save_pretrained(tmp_path / "warm-up")

    whole = train_par(config, make_run(tmp_path / "whole", overrides), tmp_path / "warm-up")
    assert (whole.checkpoints / "checkpoint-1" / "ref" / "adapter_model.safetensors").is_file()
    stopped = tmp_path / "stopped" / "par-test"
    shutil.copytree(whole.adapter.parent.parent, stopped)  # as if stopped after checkpoint 1:
    shutil.rmtree(stopped / "par" / "checkpoints" / "checkpoint-2")
    shutil.rmtree(stopped / "par" / "adapter")

    resumed = train_par(config, Run.open(stopped), tmp_path / "warm-up", resume=True)
    assert resumed.resumed_from.name == "checkpoint-1"
    assert resumed.metrics[1]["kl"] == whole.metrics[1]["kl"] > 0
    expected, got = (load_file(result.adapter / "adapter_model.safetensors") for result in (whole, resumed))
    assert expected.keys() == got.keys() and all(expected[name].equal(got[name]) for name in expected)


CANARY_ROLLOUTS = [
    # The cpu profile's path: vLLM inside the trainer, weights reloaded in place each step.
    # In the slow tier (make test-all) since make test neared its 15 minutes: 47 s here (95 s before TRL's
    # engine started eager under smoke's judge.compile=false).
    pytest.param({"par.use_vllm": True, "par.trainable_layers": 8, "par.vllm_importance_sampling": False}, id="vllm",
                 marks=pytest.mark.slow),
    # transformers generate on the trained model itself (the smoke profile; nbval runs it too).
    pytest.param({"par.use_vllm": False}, id="transformers", marks=pytest.mark.slow),
]


@pytest.mark.model
@pytest.mark.parametrize("rollouts", CANARY_ROLLOUTS)
def test_grpo_canary_the_reward_rises_so_rollouts_come_from_the_updated_weights(tmp_path, rollouts):
    """A few GRPO steps with a reward the policy can learn quickly: completion length in tokens.

    If rollouts came from a stale copy of the weights (ms-swift issue 9855: GRPO sampled from an
    adapter that was never updated), the later steps would sample as the first one did and the
    reward would not rise. With vLLM the copy is real: the engine holds its own weights, and
    only the in-place reload (train.sync_by_inplace_reload) brings the trained ones over.
    """
    import torch
    from datasets import Dataset

    from patarm_kit.judging.models import load_model, lora_config
    from patarm_kit.training.grpo import make_grpo_trainer
    from patarm_kit.training.weight_sync import LAUNCHER_VARIABLES

    steps = 6
    config = load_config("smoke", {
        "par.pairs_per_step": 1, "par.rollouts.n": 4, "par.rollouts.max_new_tokens": 48, "par.max_steps": steps,
        "par.learning_rate": 5e-3, "par.save_steps": steps, "model.torch_threads": 1, **rollouts,
    })  # one "pair" per step: 2 prompts x 4 rollouts
    model, tokenizer = load_model(config.model, trainable=True)
    # Questions the model answers in a few words, so lengths vary within a group (a group of equal
    # rewards teaches nothing) and there is room to grow below max_new_tokens.
    questions = ["Answer in one word: what colour is the sky?", "Answer in one word: what is 2 + 2?",
                 "Answer in one word: is water wet?", "Answer in one word: what is the capital of France?"]
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in questions]
    mean_lengths = []

    def length_reward(completions, completion_ids, **kwargs):
        lengths = [float(len(ids)) for ids in completion_ids]
        mean_lengths.append(sum(lengths) / len(lengths))
        return lengths

    launcher_environment = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
    trainer = make_grpo_trainer(config, model, tokenizer, Dataset.from_list([{"prompt": p} for p in prompts * steps]),
                                length_reward, tmp_path, peft_config=lora_config(config.lora))
    trainer.train()
    # vLLM's one-process group and launcher variables are gone again: a later trainer in this
    # process (BT in notebook 03) must not take itself for a distributed run.
    assert not torch.distributed.is_initialized()
    assert {name: os.environ.get(name) for name in LAUNCHER_VARIABLES} == launcher_environment
    assert len(mean_lengths) == steps
    first, last = sum(mean_lengths[:2]) / 2, sum(mean_lengths[-2:]) / 2
    assert last > first + 3, f"completion length per step {mean_lengths}: the reward did not rise"


@pytest.mark.model
def test_only_the_top_layers_train_and_too_many_layers_is_a_config_error():
    from peft import get_peft_model

    from patarm_kit.config.rules import ConfigError
    from patarm_kit.judging.models import load_model, lora_config
    from patarm_kit.training.grpo import train_top_layers_only

    config = load_config("smoke")
    model = get_peft_model(load_model(config.model, trainable=True)[0], lora_config(config.lora))
    counts = train_top_layers_only(model, 8)
    n_layers = model.config.num_hidden_layers
    trained_layers = {int(name.split(".layers.")[1].split(".")[0]) for name, p in model.named_parameters() if p.requires_grad}
    assert trained_layers == set(range(n_layers - 8, n_layers))
    assert counts == {"layers": n_layers, "trained_layers": 8,
                      "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    with pytest.raises(ConfigError, match="par.trainable_layers=99"):
        train_top_layers_only(model, 99)


@pytest.mark.model
def test_projecting_completion_tokens_only_gives_trl_the_same_logprobs_and_gradients():
    """The CPU shortcut (train.project_completion_tokens_only) changes TRL's work, not its numbers."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from patarm_kit.judging.models import load_model
    from patarm_kit.training.grpo import project_completion_tokens_only

    model, tokenizer = load_model(load_config("smoke", {"model.dtype": "float32"}).model)
    add_fused_lm_head(model, temperature=0.7, cast_lm_head_to_fp32=False, outputs=("log_probs", "entropy"))
    ids = tokenizer(["The judge reads the rubric and writes a score of seven.",
                     "A short prompt, then a completion to score."], return_tensors="pt", padding=True)
    labels = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100)
    labels[:, :-6] = -100  # score the last 6 tokens, as TRL scores a completion
    results = {}
    try:
        for enabled in (False, True):
            project_completion_tokens_only(enabled)
            embeddings = model.get_input_embeddings()(ids["input_ids"]).detach().requires_grad_()
            out = model(inputs_embeds=embeddings, attention_mask=ids["attention_mask"], labels=labels, fused_lm_head=True)
            out.log_probs.sum().backward()
            results[enabled] = (out.log_probs.detach(), out.entropy.detach(), embeddings.grad)
    finally:
        project_completion_tokens_only(False)
    for shortcut, full in zip(results[True], results[False]):
        # Other matmul shapes round float32 differently: allow roundoff on the tensor's own scale
        # (input gradients reach ~90, so 1e-5 absolute failed on some CPUs at 1e-6 relative error).
        torch.testing.assert_close(shortcut, full, rtol=1e-5, atol=1e-5 * full.abs().max().item())
    assert results[True][0][:, -6:].abs().sum() > 0  # the scored positions hold real log-probabilities


@pytest.mark.model
@pytest.mark.parametrize("adapter", ["fresh", "loaded"])
def test_grpo_runs_with_every_dropout_off_lora_included(tmp_path, adapter):
    """lora.dropout (0.05) is SFT's; GRPO's loss must be taken on the policy that sampled, so TRL's
    disable_dropout sets p=0 on every nn.Dropout, a fresh adapter's and a loaded (SFT) adapter's alike."""
    from datasets import Dataset
    from peft import PeftModel, get_peft_model
    from torch import nn

    from patarm_kit.judging.models import load_model, lora_config
    from patarm_kit.training.grpo import lora_dropout_in_use, make_grpo_trainer

    config = load_config("smoke", {"par.pairs_per_step": 1, "par.rollouts.n": 2, "par.use_vllm": False,
                                   "model.torch_threads": 1})
    assert config.lora.dropout > 0
    model, tokenizer = load_model(config.model, trainable=True)
    peft_config = lora_config(config.lora)
    if adapter == "loaded":  # as train_par starts from the SFT adapter
        get_peft_model(model, peft_config).save_pretrained(tmp_path / "sft")
        base = load_model(config.model, trainable=True)[0]
        model = PeftModel.from_pretrained(base, tmp_path / "sft", is_trainable=True)
        peft_config = None
        assert lora_dropout_in_use(model) == config.lora.dropout  # on until GRPO turns it off
    trainer = make_grpo_trainer(config, model, tokenizer, Dataset.from_list([{"prompt": "Hi"}] * 2),
                                lambda completions, **kwargs: [0.0] * len(completions), tmp_path / "grpo",
                                peft_config=peft_config)
    assert trainer.args.disable_dropout is True
    dropouts = {name: m.p for name, m in trainer.model.named_modules() if isinstance(m, nn.Dropout)}
    assert sum(".lora_dropout." in name for name in dropouts) == 4 * trainer.model.config.num_hidden_layers
    assert set(dropouts.values()) == {0} and lora_dropout_in_use(trainer.model) == 0.0


@pytest.mark.slow
@pytest.mark.model
def test_each_run_seed_draws_its_own_rollouts_with_vllm(tmp_path):
    """Replicates differ in their sampling stream: TRL seeds its colocated engine with the process
    index alone, so without train.seed_rollout_stream two seeds would share every rollout draw."""
    from datasets import Dataset

    from patarm_kit.judging.models import load_model, lora_config
    from patarm_kit.training.grpo import make_grpo_trainer

    def rollouts(seed: int) -> list[list[int]]:
        config = load_config("smoke", {
            "seed": seed, "par.pairs_per_step": 1, "par.rollouts.n": 4, "par.rollouts.max_new_tokens": 16, "par.max_steps": 1,
            "par.save_steps": 1, "par.use_vllm": True, "par.vllm_importance_sampling": False, "model.torch_threads": 1,
        })
        model, tokenizer = load_model(config.model, trainable=True)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}], tokenize=False, add_generation_prompt=True)
        drawn: list[list[int]] = []

        def record(completions, completion_ids, **kwargs):
            drawn.extend(list(ids) for ids in completion_ids)
            return [0.0] * len(completion_ids)

        trainer = make_grpo_trainer(config, model, tokenizer, Dataset.from_list([{"prompt": prompt}] * 2), record,
                                    tmp_path / f"seed-{seed}-{len(list(tmp_path.iterdir()))}", peft_config=lora_config(config.lora))
        # smoke's judge.compile is false, so TRL's engine started eager (grpo.eager_rollout_engine)
        assert trainer.vllm_generation.llm.llm_engine.vllm_config.model_config.enforce_eager
        trainer.train()
        return drawn

    first = rollouts(0)
    assert len(first) == 8 and len({tuple(ids) for ids in first}) > 1  # a group's rollouts differ
    assert rollouts(1) != first
    assert rollouts(0) == first


@pytest.mark.parametrize("compile", [True, False])
def test_trls_rollout_engine_compiles_only_where_judge_compile_says(compile):
    """TRL starts its colocated vLLM engine with vLLM's default (compile) and has no switch; while the
    trainer is made, judge.compile=false adds enforce_eager to TRL's LLM(...) call, and nothing after."""
    from trl.generation import vllm_generation

    from patarm_kit.training.grpo import eager_rollout_engine

    original = vllm_generation.LLM
    with eager_rollout_engine(not compile):
        started = vllm_generation.LLM
    assert vllm_generation.LLM is original
    if compile:
        assert started is original
    else:
        assert started.func is original and started.keywords == {"enforce_eager": True}
