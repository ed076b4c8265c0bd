"""The judgment browser: a finished run's bench item by item, as each judge saw and scored it.

An accuracy says how often a judge was right; only the items say why (a judge that ties everything,
a length probe that wins wherever an edit made the answer longer). For one bench of a run this
gathers, per item, the prompt, the responses, the task rubric the generative judges read, every
judge's judgments (text, score, each sample) and its pair outcome, as structured `Item`s a notebook
can filter, and `render` writes them as text for `patarm-kit show`.

Everything is read, nothing recomputed by a rule of its own: the evaluations as the summary reads
them (figures.suite_metrics, plus the votes-curve evaluation), their judgments (stored_judgments),
and the outcome the metrics file stores under the run's tie rule beside the same judgments rescored
under the other rule (evaluate.rescore, i.e. the bench's scoring over judging/outcome.py): a tie
gives ½ under one and 0 under the other, so the two tell a tie from a loss. The pairs judged are the
run's pairs/bench-<bench>.jsonl; a committed run leaves that file out (RunLayout.LOCAL_ONLY), so
they are rebuilt from the data when it is there, and otherwise the browser says so in one line.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import DataError, PreferencePair, read_pairs, resolve_data_dir
from patarm_kit.evaluation.benches import get_bench
from patarm_kit.evaluation.evaluate import read_eval_metrics, readout_field, rescore, stored_judgments, votes_curve_file
from patarm_kit.judging.judge import PAIRWISE_ORDERS, EvalError, Judgment, voted_scores
from patarm_kit.judging.registry import parse_judge
from patarm_kit.judging.rubrics import RubricError, load_rubrics, render_rubric
from patarm_kit.report.figures import suite_metrics
from patarm_kit.runs.files import display_path
from patarm_kit.runs.run import Run

OUTCOMES = ("chosen preferred", "rejected preferred", "tie", "invalid", "mixed")
CUT = 600  # characters of a prompt or response shown before the cut marker
JUDGE_CUT = 1200  # characters of a judge's text shown
OTHER_RULE = {"half": "zero", "zero": "half"}
TIE_WORDS = {"half": "ties count ½", "zero": "ties count 0"}


@dataclasses.dataclass(frozen=True)
class Shown:
    """One stored judgment of one response (or, for the pairwise judge, of one order of the pair)."""

    side: str
    sample: int
    score: float | None
    expected_score: float | None
    invalid_reason: str | None
    text: str
    criteria: tuple[str, ...]
    input_truncated: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One judge on one item: its judgments and the pair outcome the run scored.

    `outcome` is the metrics file's own (greedy readout, the run's tie rule); `label` names it
    (OUTCOMES): every comparison won, every one lost, every one undecided (tie; invalid when a
    voted score is missing), or some each way (mixed: RM-Bench's nine comparisons, the pairwise
    judge's two orders)."""

    judge: str
    outcome: float
    label: str
    outcome_expected: float | None
    pairwise: bool
    voted: dict[str, float | None]  # side -> the score its samples vote (the run's eval.voting, first `votes`)
    judgments: tuple[Shown, ...]

    @property
    def generative(self) -> bool:
        """Whether the judge wrote text (and so read the rubric): not length, random or BT."""
        return any(j.text for j in self.judgments)


@dataclasses.dataclass(frozen=True)
class Item:
    """One judged pair with every selected judge's verdict (a judge that did not judge it is absent)."""

    pair_id: str
    group: str
    task: str
    instruction_type: str | None  # verifiable instruction-following pairs: the instruction(s) their checker reads
    prompt: str | None  # None: the pair is not available (see Browse.notes)
    responses: dict[str, str]  # side as the judges' requests name it -> response
    verdicts: dict[str, Verdict]

    def outcome_of(self, judge: str) -> str | None:
        verdict = self.verdicts.get(judge)
        return None if verdict is None else verdict.label

    @property
    def disagree(self) -> bool:
        """Two or more judges judged it and their outcomes differ (in name, or in value for mixed ones)."""
        return len({(v.label, round(v.outcome, 9)) for v in self.verdicts.values()}) > 1


@dataclasses.dataclass
class Browse:
    """One bench of one run: its items in the metrics files' order, the judges, and what could not be shown."""

    run: Path
    bench: str
    label: str
    ties: str
    judges: list[str]
    items: list[Item]
    rubrics: dict[str, str]  # task -> the rubric text the judge's prompt shows
    notes: list[str]


# ---------------------------------------------------------------- reading a run


def run_path(run: str | Path) -> Path:
    """A run given by folder, or by name under the repository's results/ (committed runs)."""
    path = Path(run).expanduser()
    return path if path.is_dir() or len(path.parts) > 1 else REPO_ROOT / "results" / str(run)


def evaluations(run_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """bench -> judge -> metrics of a finished run: its evaluation suite and, named as its file is
    (`par-votes4`), the votes-curve evaluation, whose several samples per response are worth reading."""
    run = Run.open(run_dir)  # not a run: a RunError naming the missing manifest
    found: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for metrics in suite_metrics(run.dir):
        found[metrics["bench"]][metrics["judge"]] = metrics
    curve = votes_curve_file(run.config(), run.layout)
    if curve is not None and curve.is_file():
        metrics = read_eval_metrics(curve)
        alias = f"{metrics['judge']}-votes{metrics['votes']}"
        if run.layout.eval_metrics(alias, metrics["bench"]) == curve:
            found[metrics["bench"]][alias] = metrics
    if not found:
        raise EvalError(f"{run.dir}: no evaluations in {run.layout.eval_dir} (the eval stage has not run)")
    return dict(found)


def _pick(run: Path, evaluated: dict[str, dict[str, dict[str, Any]]], bench: str,
          judges: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """The metrics of the judges asked for (default: all) on `bench`; an unknown one is an EvalError listing the known."""
    if bench not in evaluated:
        raise EvalError(f"bench {bench!r}: {run} has no evaluations of it; it has {', '.join(evaluated)}")
    known = evaluated[bench]
    unknown = [j for j in judges or () if j not in known]
    if unknown:
        raise EvalError(f"judge {unknown[0]!r}: {run} has no evaluation of it on {bench}; judged by {', '.join(known)}")
    return {j: known[j] for j in dict.fromkeys(judges)} if judges else known


def _data_root(run: Run, config: RunConfig, data_dir: str | Path | None) -> Path:
    """Where the pairs are rebuilt from: `data_dir`, else the folder the run recorded (when it is here), else the default."""
    recorded = [s.get("data_dir") for s in run.manifest().get("data", {}).values() if isinstance(s, dict)]
    here = next((Path(d) for d in recorded if d and Path(d).is_dir()), None)
    return resolve_data_dir(data_dir or here or config.data.data_dir)


def judged_pairs(run: Run, config: RunConfig, bench: str, ids: Iterable[str],
                 data_dir: str | Path | None = None) -> tuple[dict[str, PreferencePair], str]:
    """The pairs with these ids, and one line saying where they came from (or why they are missing)."""
    wanted = set(ids)
    path = run.layout.bench_pairs(bench)
    kept = run.layout.relative(path)
    if path.is_file():
        pairs, where = read_pairs(path), f"prompts and responses: {kept}"
    else:
        try:
            root = _data_root(run, config, data_dir)
            pairs = get_bench(bench).load_pairs(dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=str(root))))[0]
        except (DataError, OSError) as err:
            return {}, (f"prompts and responses not shown: the run keeps no {kept} (a committed run leaves the pair files out) "
                        f"and its data could not be read ({' '.join(str(err).split())}); point --data-dir (data_dir in notebook 07) at it")
        where = f"prompts and responses: rebuilt from the data in {display_path(root)} (the run keeps no {kept})"
    found = {p.id: p for p in pairs if p.id in wanted}
    if len(found) < len(wanted):
        where += f"; {len(wanted) - len(found)} of {len(wanted)} judged pairs are not among them (shown without)"
    return found, where


def outcome_label(half: float, zero: float, invalid: bool) -> str:
    """An item's outcome by name, from its outcome under both tie rules (see Verdict)."""
    if zero == 1:
        return "chosen preferred"
    if half == 0:
        return "rejected preferred"
    if invalid:
        return "invalid"
    return "tie" if (half, zero) == (0.5, 0) else "mixed"


def _verdicts(judge: str, metrics: dict[str, Any], judgments: Sequence[Judgment]) -> dict[str, Verdict]:
    """pair id -> this judge's verdict: the stored outcomes, named with the other tie rule's outcomes and the votes."""
    other = {item["pair_id"]: item["outcome"] for item in rescore(metrics, judgments, OTHER_RULE[metrics["ties"]])["items"]}
    voted = voted_scores(judgments, metrics["voting"], metrics["votes"])
    by_pair: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_pair[j.pair_id].append(j)
    pairwise = parse_judge(metrics["judge_spec"]).pairwise
    verdicts = {}
    for item in metrics["items"]:
        pid, own = item["pair_id"], item["outcome"]
        half, zero = (own, other[pid]) if metrics["ties"] == "half" else (other[pid], own)
        shown = tuple(Shown(j.side, j.sample, j.score, j.expected_score, j.invalid_reason, j.text, tuple(j.criteria),
                            tuple(j.input_truncated)) for j in by_pair[pid])
        sides = {s.side: voted.get((pid, s.side)) for s in shown}
        verdicts[pid] = Verdict(judge, own, outcome_label(half, zero, None in sides.values()),
                                item.get(readout_field("outcome", "expected")), pairwise, sides, shown)
    return verdicts


def _length_check(run: Run, metrics: dict[str, Any] | None, responses: dict[str, dict[str, str]]) -> list[str]:
    """Rebuilt responses against what the run's length judge measured (as verify checks them): a line when any differ."""
    if metrics is None:
        return []
    judgments, _ = stored_judgments(run.layout.eval_dir, metrics)
    compared = [(j.score, len(responses[j.pair_id][j.side])) for j in judgments
                if j.side in responses.get(j.pair_id, {}) and j.score is not None]
    differ = sum(score != length for score, length in compared)
    return [f"{differ} of {len(compared)} rebuilt responses differ in length from what the run's length judge "
            "measured: those are not the responses the judges read"] if differ else []


def _recorded_types(run: Run) -> set[str]:
    """The instruction types the run's built sources recorded (manifest data.<source>.built_with)."""
    built = [s.get("built_with", {}) for s in run.manifest().get("data", {}).values() if isinstance(s, dict)]
    return {t for b in built if isinstance(b, dict) for key in ("instruction_types", "held_out_types") for t in b.get(key, ())}


def _type_in_id(pair_id: str, kinds: set[str]) -> str | None:
    """A built instruction-following pair's type from its id (<source>/<prompt>/<type>) when the pair itself is not here."""
    tail = pair_id.rsplit("/", 1)[-1]
    return tail if tail in kinds else None


def browse(run_dir: str | Path, bench: str, judges: Sequence[str] | None = None,
           data_dir: str | Path | None = None) -> Browse:
    """Every item a bench of a finished run judged, with each selected judge's verdict (default: every judge)."""
    run = Run.open(run_path(run_dir))
    config = run.config()
    evaluated = evaluations(run.dir)
    picked = _pick(run.dir, evaluated, bench, judges)
    verdicts, groups, tasks = {}, {}, {}
    for judge, metrics in picked.items():
        judgments, _ = stored_judgments(run.layout.eval_dir, metrics)  # the sampled-mean draws are not shown
        verdicts[judge] = _verdicts(judge, metrics, judgments)
        groups.update({item["pair_id"]: item["group"] for item in metrics["items"]})
        tasks.update({j.pair_id: j.task for j in judgments})
    pairs, where = judged_pairs(run, config, bench, groups, data_dir)
    notes = [where]
    try:
        rubrics = {task: render_rubric(rubric) for task, rubric in load_rubrics(config.judge.rubric_file).items()}
    except (RubricError, OSError) as err:
        rubrics = {}
        notes.append(f"rubric not shown: {' '.join(str(err).split())}")
    scorer = get_bench(bench)
    responses = {pid: {r.side: r.response for r in scorer.requests([pair])} for pid, pair in pairs.items()}
    if pairs and not run.layout.bench_pairs(bench).is_file():  # rebuilt: checked against what the length judge measured
        notes += _length_check(run, evaluated[bench].get("length"), responses)
    kinds = _recorded_types(run)
    items = []
    for pid, group in groups.items():
        pair = pairs.get(pid)
        named = ", ".join(i["instruction_id"] for i in pair.instructions) if pair else _type_in_id(pid, kinds)
        items.append(Item(pid, group, pair.task if pair else tasks.get(pid, ""), named or None,
                          pair.prompt_text if pair else None, responses.get(pid, {}),
                          {judge: by_pair[pid] for judge, by_pair in verdicts.items() if pid in by_pair}))
    ties = next(iter(picked.values()))["ties"]
    return Browse(run.dir, bench, scorer.label, ties, list(picked), items, rubrics, notes)


# ---------------------------------------------------------------- choosing and counting


def select(items: Sequence[Item], judges: Sequence[str] | None = None, disagree: bool = False,
           outcome: str | None = None, instruction_type: str | None = None, n: int | None = None) -> list[Item]:
    """The items to show: only these judges' verdicts, only where they disagree, where one of them has
    this outcome, of this instruction type; at most `n`, in order."""
    if n is not None and n < 1:
        raise EvalError(f"--n must be at least 1, not {n}")
    if outcome is not None and outcome not in OUTCOMES:
        raise EvalError(f"outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
    chosen = []
    for item in items:
        if judges:
            item = dataclasses.replace(item, verdicts={j: v for j, v in item.verdicts.items() if j in judges})
        if not item.verdicts or (disagree and not item.disagree):
            continue
        if outcome is not None and outcome not in {v.label for v in item.verdicts.values()}:
            continue
        if instruction_type is not None and item.instruction_type != instruction_type:
            continue
        chosen.append(item)
    return chosen[:n] if n is not None else chosen


def outcome_counts(items: Sequence[Item]) -> pd.DataFrame:
    """Items per outcome (columns, OUTCOMES order) for each judge (rows): the plain first view of a bench."""
    judges = list(dict.fromkeys(j for item in items for j in item.verdicts))
    counts = {j: {o: sum(item.outcome_of(j) == o for item in items) for o in OUTCOMES} for j in judges}
    frame = pd.DataFrame.from_dict(counts, orient="index", columns=list(OUTCOMES))
    return frame.loc[:, frame.sum(axis=0) > 0]


def type_accuracy(view: Browse, readout: str = "greedy") -> pd.DataFrame:
    """Accuracy (%, the run's tie rule) per instruction type (rows) and judge (columns), with n and an
    `all` row: where a plain judge such as `length` sits at 0 or 100, one property of the pair decides
    the type. Empty when the bench's pairs carry no instruction types (or are not available)."""
    typed = [item for item in view.items if item.instruction_type]
    if not typed:
        return pd.DataFrame()

    def outcome(verdict: Verdict) -> float | None:
        return verdict.outcome if readout == "greedy" else verdict.outcome_expected

    rows = {}
    for kind in [*sorted({item.instruction_type for item in typed}), "all"]:
        members = [item for item in typed if kind in ("all", item.instruction_type)]
        row: dict[str, Any] = {"n": len(members)}
        for judge in view.judges:
            values = [outcome(item.verdicts[judge]) for item in members if judge in item.verdicts]
            values = [v for v in values if v is not None]
            row[judge] = round(100 * sum(values) / len(values), 1) if values else None
        rows[kind] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "instruction type"
    return frame.dropna(axis=1, how="all")


# ---------------------------------------------------------------- text


def cut(text: str, limit: int = CUT) -> str:
    """`text` up to `limit` characters, with a visible marker saying how much was left out."""
    left = len(text) - limit
    return text if left <= 0 else f"{text[:limit]}… [cut: {left:,} more character{'s' * (left != 1)}]"


def _block(text: str, indent: str = "    ") -> str:
    return "\n".join(indent + line for line in (text.splitlines() or [""]))


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _judgment_line(verdict: Verdict, shown: Shown, several: bool) -> str:
    """`chosen, sample 1: score 5 (expected 6.04)`; the pairwise judge's score says which response it picked."""
    where = f"order {shown.side}" if verdict.pairwise else shown.side
    where += f", sample {shown.sample}" if several else ""
    if shown.score is None:
        said = f"no score ({shown.invalid_reason or 'invalid'})"
    elif verdict.pairwise and shown.side in PAIRWISE_ORDERS:
        said = f"picked the {'chosen' if shown.score == 1 else 'rejected'} response"
    else:
        said = f"score {_number(shown.score)}"
    if shown.expected_score is not None:
        said += f" (expected {_number(shown.expected_score)})"
    if shown.input_truncated:
        said += f" [input cut for the judge: {', '.join(shown.input_truncated)}]"
    return f"  {where}: {said}"


def render_verdict(verdict: Verdict, ties: str, max_chars: int = JUDGE_CUT) -> list[str]:
    """A judge's outcome, then each judgment (each sample), its text indented under it."""
    head = f"judge {verdict.judge}: {verdict.label} (outcome {_number(verdict.outcome)}, {TIE_WORDS.get(ties, ties)}"
    head += "" if verdict.outcome_expected is None else f"; expected readout {_number(verdict.outcome_expected)}"
    lines = [head + ")"]
    samples = defaultdict(list)
    for shown in verdict.judgments:
        samples[shown.side].append(shown)
    for side, group in samples.items():
        several = len(group) > 1
        for shown in group:
            lines.append(_judgment_line(verdict, shown, several))
            if shown.text:
                lines.append(_block(cut(shown.text.strip(), max_chars)))
        if several:
            lines.append(f"  {side}: {len(group)} samples, voted score {_number(verdict.voted.get(side))}")
    return lines


def render_item(view: Browse, item: Item, number: int, total: int, max_chars: int = CUT) -> str:
    """One item as text: id, prompt, responses (cut), the rubric (when a generative judge read it), every verdict."""
    head = f"=== item {number} of {total}: {item.pair_id} · group {item.group} · task {item.task}"
    head += f" · instruction {item.instruction_type}" if item.instruction_type else ""
    lines = [head]
    if item.prompt is None:
        lines.append("prompt and responses: not available (see above)")
    else:
        lines += ["prompt:", _block(cut(item.prompt, max_chars))]
        for side, response in item.responses.items():
            lines += [f"response {side}:", _block(cut(response, max_chars))]
    if item.task in view.rubrics and any(v.generative for v in item.verdicts.values()):
        lines += [f"rubric for task {item.task} (what the generative judges read):", _block(view.rubrics[item.task])]
    for verdict in item.verdicts.values():
        lines += render_verdict(verdict, view.ties)
    return "\n".join(lines)


def render(view: Browse, items: Sequence[Item], max_chars: int = CUT) -> str:
    """The header (run, bench, judges, tie rule, where the pairs came from) and each item."""
    head = [f"{display_path(view.run)} · {view.label} ({view.bench}) · {len(view.items)} items judged by {', '.join(view.judges)}",
            f"outcomes: the greedy readout under {TIE_WORDS.get(view.ties, view.ties)} (the run's eval.ties)",
            *view.notes, f"showing {len(items)} item{'s' * (len(items) != 1)}"]
    return "\n\n".join(["\n".join(head), *(render_item(view, item, k, len(items), max_chars)
                                          for k, item in enumerate(items, start=1))])


def show_items(run_dir: str | Path, bench: str, judges: Sequence[str] | None = None, disagree: bool = False,
               n: int = 5, max_chars: int = CUT, data_dir: str | Path | None = None) -> str:
    """What `patarm-kit show` prints: the first `n` items (those the judges disagree on, with `disagree`)."""
    if n < 1:
        raise EvalError(f"--n must be at least 1, not {n}")
    if max_chars < 1:
        raise EvalError(f"max_chars must be at least 1, not {max_chars}")
    view = browse(run_dir, bench, judges, data_dir)
    if disagree and len(view.judges) < 2:
        raise EvalError(f"--disagree compares judges: {bench} of {view.run} needs two or more (given {', '.join(view.judges)})")
    return render(view, select(view.items, disagree=disagree, n=n), max_chars)
