"""Cold start before PAR: LoRA SFT that teaches the judge its output format.

An untrained small judge almost never ends with a parseable `<score>N</score>`, so every
judgment of a GRPO group earns the same PAR reward and GRPO has nothing to learn from. This
stage fine-tunes a LoRA adapter with TRL's SFTTrainer on judge prompts built by the judge
itself (`Judge.prompt_text`, truncation included), with the loss on the judgment only. PAR
training then starts from this adapter.

Training targets (`sft.targets`):
- `facts` (offline; the profiles' choice): judgments that read the response (training/facts.py):
  criteria from the instance (the instruction the prompt states), an evaluation of checkable
  facts of the response (how it starts, its length, whether it has what a criterion names), and
  a score drawn uniformly from 1..10 by a seed of the prompt and the response, so it does not
  depend on the label. It teaches the format and where to look, nothing about which facts
  deserve the higher score: whatever preference the judge shows after PAR was learned by PAR.
- `labels` (baseline and ceiling): the same judgments with scores from the pair label (chosen
  from 7..10, rejected from 1..4): the pointwise-label approach the paper argues against.
- `format` (the first warm-up; committed runs before it were made with it): criteria templated
  from the rubric and the prompt's topic words, a one-sentence evaluation whose first word fixes
  the score band, the score uniform whatever the side. It never reads the response.
- `paper`: the paper's released SFT file (hub repo AIJian/PaTaRM); needs a hub.

`warmup_checks` then measures what PAR will face: parse rate when sampled as `sft.checks` says
(profiles set it as `par.rollouts`),
score histograms, pairwise accuracy against the base judge, and the share of GRPO groups
whose PAR rewards are all equal.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from patarm_kit.config.rules import CHOICES
from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import PreferencePair, read_json_rows, read_pairs
from patarm_kit.judging.judge import Judge, JudgeRequest, prompt_judge, requests_for_pairs
from patarm_kit.judging.models import adapter_card, load_model, load_tokenizer, lora_config, lora_summary, save_adapter
from patarm_kit.judging.prompts import SCORE_RANGE, format_judgment, parse_judgment, render_chat
from patarm_kit.judging.rubrics import Rubric
from patarm_kit.runs.env import deepspeed_bf16
from patarm_kit.runs.files import read_json, sha256_of, write_json, write_jsonl
from patarm_kit.runs.notebooks import progress
from patarm_kit.runs.run import Run
from patarm_kit.training import facts
from patarm_kit.training.checkpoints import leave_process_group

PAPER_REPO = "AIJian/PaTaRM"
PAPER_SFT_FILE = "sft_train_35.6k.jsonl"
# `labels` targets: the score bands of chosen and rejected responses.
LABEL_BANDS = {"chosen": (7, 10), "rejected": (1, 4)}


class SftError(ValueError):
    """The SFT stage cannot build its training data; the message says why and what to do."""


# ---------------------------------------------------------------- format and labels targets

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
# Common words that say nothing about a prompt's topic (words under 4 letters never count).
_STOPWORDS = frozenset(
    "about after again also been before being could does doing from have here into just know like "
    "make many more most much need only other over same should some such than that their them then "
    "there these they this those very want what when where which while will with would your "
    "please thanks thank tell give good best really think going thing things something".split()
)
_CRITERION_PHRASES = ("applied to {topic}", "judged on {topic}", "for the {topic} request")
_EVALUATIONS = {  # one short sentence per score band, so the evaluation agrees with the score
    "low": "Weak on {topic}; poor {criterion}.",
    "mid": "Partly covers {topic}; uneven {criterion}.",
    "high": "Handles {topic} well; good {criterion}.",
}


_TEMPLATES = [re.compile("^" + re.escape(t).replace(re.escape("{topic}"), ".+").replace(re.escape("{criterion}"), ".+") + "$")
              for t in _EVALUATIONS.values()]


def is_format_template(evaluation: str | None) -> bool:
    """Whether an evaluation is one of the `format` warm-up's three sentences with words pasted in:
    what a judge warmed up on them writes instead of reading the response (notebook 04 counts it)."""
    return evaluation is not None and any(template.match(evaluation) for template in _TEMPLATES)


def topic_words(prompt: Sequence[Mapping[str, str]], limit: int = 2) -> str:
    """A few content words of the last user turn: what instance-specific criteria talk about."""
    user_turns = [m["content"] for m in prompt if m["role"] == "user"] or [prompt[-1]["content"]]
    words: list[str] = []
    for word in _WORD.findall(user_turns[-1]):
        word = word.lower().strip("'-")
        if word not in _STOPWORDS and word not in words:
            words.append(word)
        if len(words) == limit:
            break
    return " ".join(words) or "the request"


def draw_score(targets: str, side: str, rng: random.Random) -> int:
    """`format` and `facts`: uniform on 1..10 whatever the side; `labels`: from the side's band."""
    if targets in ("format", "facts"):
        return rng.randint(*SCORE_RANGE)
    if targets == "labels":
        return rng.randint(*LABEL_BANDS[side])
    raise SftError(f"sft.targets={targets!r} has no drawn scores; expected 'facts', 'labels' or 'format'")


def judgment_target(request: JudgeRequest, rubric: Rubric, targets: str, seed: int,
                    instructions: Sequence[Mapping[str, Any]] = ()) -> tuple[str, int]:
    """A short judgment of one response (one side of a pair) in the judge's format, and its score.

    `facts` and `labels` are seeded by (seed, prompt, response): the same response gets the same
    judgment whichever side of whichever pair it is on, so flipping a label changes no `facts`
    target. `format` (the first warm-up) is seeded by (seed, pair id, side).
    """
    topic = topic_words(request.prompt)
    if targets in ("facts", "labels"):
        prompt_text = "\n".join(m["content"] for m in request.prompt)
        rng = random.Random(f"{seed}/{prompt_text}/{request.response}")
        criteria = facts.instance_criteria(instructions, topic, [c.name for c in rubric.criteria])
        evaluation = facts.evaluation_of(facts.response_facts(request.response, instructions, topic.split()))
        return format_judgment(criteria, evaluation, score := draw_score(targets, request.side, rng)), score
    rng = random.Random(f"{seed}/{request.pair_id}/{request.side}")
    chosen_criteria = rng.sample(rubric.criteria, min(rng.randint(2, 3), len(rubric.criteria)))
    criteria = [(c.name, rng.choice(_CRITERION_PHRASES).format(topic=topic)) for c in chosen_criteria]
    score = draw_score(targets, request.side, rng)
    band = "low" if score <= 3 else "mid" if score <= 7 else "high"
    evaluation = _EVALUATIONS[band].format(topic=topic, criterion=chosen_criteria[-1].name.lower())
    return format_judgment(criteria, evaluation, score), score


# ---------------------------------------------------------------- paper targets

# Accepted layouts of the paper's SFT rows (its schema is not published): a chat `messages`
# list ending with the judgment, or one of these (prompt column, judgment column) pairs. The
# prompt column holds text (one user turn) or a list of messages; `instruction` rows may add
# an `input` column, appended after a blank line (the Alpaca convention).
PAPER_COLUMN_LAYOUTS = (("prompt", "response"), ("prompt", "completion"), ("instruction", "output"))


def _messages(value: Any, column: str) -> list[dict[str, str]]:
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, Mapping) and {"role", "content"} <= set(m) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise SftError(f"paper SFT row: column {column!r} must be text or a list of {{role, content}} messages")


def paper_example(row: Mapping[str, Any]) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, judgment) from one row of the paper's SFT file, in any accepted layout."""
    if "messages" in row:
        messages = _messages(row["messages"], "messages")
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise SftError("paper SFT row: `messages` must end with the assistant's judgment after the prompt")
        return messages[:-1], messages[-1]["content"]
    for prompt_column, judgment_column in PAPER_COLUMN_LAYOUTS:
        if prompt_column in row and judgment_column in row:
            prompt = row[prompt_column]
            if prompt_column == "instruction" and isinstance(row.get("input"), str) and row["input"].strip():
                prompt = f"{prompt}\n\n{row['input']}"
            judgment = row[judgment_column]
            if not isinstance(judgment, str) or not judgment.strip():
                raise SftError(f"paper SFT row: column {judgment_column!r} must be non-empty text")
            return _messages(prompt, prompt_column), judgment
    accepted = ", ".join(["messages", *(f"{p}+{j}" for p, j in PAPER_COLUMN_LAYOUTS)])
    raise SftError(f"paper SFT file: unknown layout with columns {sorted(row)}; accepted layouts: {accepted}")


def load_paper_rows(revision: str | None = None, local_file: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The rows of the paper's SFT file and where they came from: a local copy (`sft.paper_file`), else
    the hub at `revision` (`sft.paper_revision`); offline, the hub is a clear error."""
    if local_file is not None:
        path = Path(local_file)
        if not path.is_file():
            raise SftError(f"sft.paper_file: {path} is not a file")
        rows = [row for _, row in read_json_rows(path)]
        return rows, f"{path} (sha256 {sha256_of(path)})"
    try:
        import datasets

        rows = datasets.load_dataset(PAPER_REPO, data_files=PAPER_SFT_FILE, split="train", revision=revision)
    except Exception as err:  # the hub raises many kinds; one clear line is what the user needs
        raise SftError(
            f"the paper's SFT file {PAPER_SFT_FILE} (hub repo {PAPER_REPO}) cannot be loaded "
            f"({type(err).__name__}: {err}); it needs a hub connection or a local copy (sft.paper_file). "
            "Offline, use sft.targets=format."
        ) from None
    return list(rows), f"hub:{PAPER_REPO}@{revision or 'main'}/{PAPER_SFT_FILE}"


# ---------------------------------------------------------------- training examples


@dataclass(frozen=True)
class SftExample:
    """One prompt-completion example: the rendered judge prompt and the judgment to learn."""

    pair_id: str
    side: str
    prompt: str
    completion: str
    score: int | None


def pair_examples(pairs: Iterable[PreferencePair], judge: Judge, targets: str, seed: int) -> list[SftExample]:
    """Both sides of every pair, each with its drawn judgment."""
    pairs = list(pairs)
    instructions = {p.id: p.instructions for p in pairs}
    examples = []
    for request in progress(requests_for_pairs(pairs), desc="sft targets", unit="example"):
        completion, score = judgment_target(request, judge.rubrics[request.task], targets, seed, instructions[request.pair_id])
        examples.append(SftExample(request.pair_id, request.side, judge.prompt_text(request)[0], completion, score))
    return examples


def paper_examples(rows: Sequence[Mapping[str, Any]], tokenizer: Any, enable_thinking: bool | None) -> list[SftExample]:
    """The paper's prompts rendered with the chat template, its judgments as written."""
    examples = []
    for number, row in enumerate(progress(rows, desc="paper targets", unit="row"), start=1):
        messages, judgment = paper_example(row)
        prompt = render_chat(tokenizer, messages, enable_thinking)
        examples.append(SftExample(f"paper/{number}", "", prompt, judgment, parse_judgment(judgment).score))
    return examples


def stage_pairs(config: RunConfig, run: Run, split: str, limit: int | None, seed: int) -> tuple[list[PreferencePair], str]:
    """A seeded sample of one split of <run>/pairs/<split>.jsonl: stage 01's file (split and
    decontaminated there) is the only way pairs reach the warm-up."""
    path = run.layout.pairs(split)
    if not path.is_file():
        raise SftError(f"{path} is missing: run notebook 01 (data pairing) for this run first")
    pairs, origin = read_pairs(path), str(path)
    if limit is not None and limit < len(pairs):
        pairs = random.Random(seed).sample(pairs, limit)
    return pairs, origin


def build_examples(config: RunConfig, run: Run, tokenizer: Any) -> tuple[list[SftExample], dict[str, Any]]:
    """The training examples of `config.sft.targets`, those over `sft.max_length` dropped and counted."""
    targets = config.sft.targets
    if targets not in CHOICES["sft.targets"]:
        raise SftError(f"sft.targets must be one of {', '.join(CHOICES['sft.targets'])}, not {targets!r}")
    if targets == "paper":
        rows, origin = load_paper_rows(config.sft.paper_revision, config.sft.paper_file)
        if config.sft.n_pairs is not None and config.sft.n_pairs < len(rows):
            rows = random.Random(config.seed).sample(rows, config.sft.n_pairs)
        examples = paper_examples(rows, tokenizer, config.model.enable_thinking)
    else:
        pairs, origin = stage_pairs(config, run, "train", config.sft.n_pairs, config.seed)
        examples = pair_examples(pairs, prompt_judge(config, tokenizer), targets, config.seed)
    lengths = [len(tokenizer(e.prompt + e.completion + tokenizer.eos_token, add_special_tokens=False)["input_ids"]) for e in examples]
    kept = [e for e, n in zip(examples, lengths) if n <= config.sft.max_length]
    if not kept:
        raise SftError(f"every example is longer than sft.max_length={config.sft.max_length} tokens")
    completion_tokens = [len(tokenizer(e.completion, add_special_tokens=False)["input_ids"]) for e in kept]
    facts = {
        "targets": targets,
        "source": origin,
        "examples": len(kept),
        "dropped_too_long": len(examples) - len(kept),
        "max_tokens": max(lengths),
        "mean_completion_tokens": sum(completion_tokens) / len(kept),
        "parseable_targets": sum(e.score is not None for e in kept) / len(kept),
    }
    return kept, facts


# ---------------------------------------------------------------- training


@dataclass
class SftResult:
    """What the SFT stage produced: the adapter PAR starts from, and how training went."""

    adapter_dir: Path
    base_model: str
    data: dict[str, Any]
    steps: int
    losses: list[float]
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return self.losses[-1]


def _adapter_card(config: RunConfig, result: SftResult) -> str:
    return adapter_card(
        "PaTaRM judge warm-up adapter (SFT)",
        f"LoRA adapter for `{result.base_model}`, made by `patarm_kit.training.sft` so the judge writes its output "
        f"format (criteria, evaluation, `<score>N</score>`). PAR training (GRPO) starts from it.",
        [f"targets: `{result.data['targets']}` from {result.data['source']} ({result.data['examples']} examples)",
         f"steps: {result.steps}, batch size {config.sft.batch_size}, learning rate {config.sft.learning_rate}",
         f"loss: {result.losses[0]:.3f} -> {result.final_loss:.3f}", f"LoRA: {lora_summary(config.lora)}"],
        "Load it with `patarm_kit.judging.models.load_model(config.model, adapter=<this folder>)`.")


def recorded_result(run: Run) -> SftResult:
    """The warm-up as its stage recorded it (manifest facts, train log): a resumed notebook shows it without training."""
    facts = run.manifest()["stages"]["sft"]["facts"]
    losses = [entry["loss"] for entry in read_json(run.layout.sft_train_log) if "loss" in entry]
    return SftResult(run.layout.sft_adapter, facts["base_model"], facts["data"], facts["steps"], losses,
                     facts["seconds"], facts)


def run_sft(config: RunConfig, run: Run) -> SftResult:
    """Train the warm-up LoRA adapter into <run>/sft/adapter; `result.facts` is what the stage records."""
    import datasets
    import torch
    from trl import SFTConfig, SFTTrainer

    started, cpu_started = time.monotonic(), time.process_time()
    examples, facts = build_examples(config, run, load_tokenizer(config.model))  # before the model: fails fast
    model, tokenizer = load_model(config.model, trainable=True)
    write_jsonl(run.layout.sft_examples, [asdict(e) for e in examples])
    dataset = datasets.Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])
    args = SFTConfig(
        output_dir=str(run.layout.sft_trainer),
        max_steps=config.sft.max_steps,
        per_device_train_batch_size=config.sft.batch_size,
        learning_rate=config.sft.learning_rate,
        warmup_steps=config.sft.warmup_steps,
        train_sampling_strategy="group_by_length",  # batches of similar length waste little compute on padding
        max_length=config.sft.max_length,
        completion_only_loss=True,  # the loss is on the judgment, never on the prompt
        gradient_checkpointing=config.sft.gradient_checkpointing,  # off on CPU: a 135M model fits, recomputing costs time
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning is for GPU copies; on CPU it only warns
        # No autocast: the model already has config.model.dtype, PEFT keeps LoRA weights in float32. Under
        # DeepSpeed's bf16 configs DeepSpeed holds the weights in bf16 itself and needs the trainer to agree.
        bf16=deepspeed_bf16(),
        use_cpu=not torch.accelerator.is_available(),  # DeepSpeed on CPU: without it each process trains alone
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=config.seed,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(config.lora)
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    adapter_dir = run.layout.sft_adapter
    result = SftResult(adapter_dir, config.model.name, facts, trainer.state.global_step, losses, time.monotonic() - started)
    save_adapter(trainer.model, tokenizer, adapter_dir, _adapter_card(config, result))
    if trainer.accelerator.num_processes > 1:  # the warm-up checks run on the main process alone, as one process
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()  # else ZeRO-3 would partition the models the checks load, across processes gone
        leave_process_group()
    write_json(run.layout.sft_train_log, trainer.state.log_history)
    result.facts = {  # recorded by the sft stage (stages.sft) in the manifest
        "base_model": result.base_model,
        "targets": config.sft.targets,
        "data": facts,
        "steps": result.steps,
        "num_processes": trainer.accelerator.num_processes,
        "first_loss": losses[0],
        "final_loss": result.final_loss,
        "seconds": round(result.seconds, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),  # all threads; shows the cost on a busy machine
        "seconds_per_step": round(trainer.state.log_history[-1].get("train_runtime", 0) / max(result.steps, 1), 2),
        "adapter": run.layout.relative(adapter_dir),
        "settings": {"sft": asdict(config.sft), "lora": asdict(config.lora)},
    }
    return result
