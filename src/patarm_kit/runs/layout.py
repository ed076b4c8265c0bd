"""The run folder's layout: the one place where paths inside a run are spelled.

Every stage, notebook, CLI command, figure and check asks a `RunLayout` where a file of a run
lives, so renaming a file is a one-line change here and a reader finds every output of a run
listed in one class. Files inside a run refer to each other as `<run>/...` (`relative`), so a
run folder can be moved or committed and two runs compare byte for byte.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from patarm_kit.runs.notebooks import RENAMED_NOTEBOOKS

RUN_PREFIX = "<run>/"
# Outputs a run keeps on the machine that made it but does not publish (weights, rebuilt pair
# files, checkpoints, trainer scratch): a committed run may lack them, and verify says so.
# Files a published (committed) run leaves out, and why: `python -m patarm_kit.summary --publish`.
LOCAL_ONLY = {
    "*.safetensors": "model weights",
    "pairs/*": "the stage-01 pair files, rebuilt from the data by notebook 01",
    "par/checkpoints/*": "GRPO checkpoints",
    "par-*/checkpoints/*": "GRPO checkpoints",
    "policy/*/checkpoints/*": "GRPO checkpoints",
    "sft/trainer/*": "the SFT trainer's state",
    "sft/examples.jsonl": "the SFT examples, rebuilt from the pair files",
    "*/adapter/*.json": "adapter and tokenizer settings, kept with the weights",
    "*/adapter/*.txt": "tokenizer files, kept with the weights",
    "*/adapter/*.jinja": "the chat template, kept with the weights",
    "*/adapter/tokenizer*": "tokenizer files, kept with the weights",
}
# Notebooks 05 and 06 swapped places (figures last, so the file order is the run order): the number a
# file made by either had before (RunLayout._as_made).
RENUMBERED = {"05_": "06_", "06_": "05_"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+=-]")
TRAINED_JUDGE = re.compile(r"sft|par|bt|par-[a-z0-9][a-z0-9-]*")  # PAR variants (par.variants) are par-<name>


def is_trained_judge(name: str) -> bool:
    """Whether `name` is one of a run's own trained judges (sft, par, a PAR variant par-<name>, bt),
    whose adapter `RunLayout.adapter` finds: the one answer to both questions."""
    return TRAINED_JUDGE.fullmatch(name) is not None


def file_safe(text: str) -> str:
    """A judge or bench name as part of a file name (`pairs:hh-rlhf` -> `pairs-hh-rlhf`)."""
    return _SAFE_NAME.sub("_", text.replace(":", "-").replace("/", "_"))


@dataclass(frozen=True)
class RunLayout:
    """Where each file of the run in `root` lives.

    `par` names the PAR training the par_* paths are of: "par", or a variant's "par-<name>"
    (par.variants; `for_par` gives that layout).
    """

    root: Path
    par: str = "par"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ------------------------------------------------------------ provenance and summary
    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def summary(self) -> Path:
        """SUMMARY.md: the run's headline table, generated (and checked by verify)."""
        return self.root / "SUMMARY.md"

    @property
    def readme(self) -> Path:
        return self.root / "README.md"

    def notebook(self, name: str) -> Path:
        """The executed notebook of a chain stage (papermill's output)."""
        return self.root / "notebooks" / f"{name}.ipynb"

    # ------------------------------------------------------------ stage 01: pairs
    @property
    def pairs_dir(self) -> Path:
        return self.root / "pairs"

    def pairs(self, split: str) -> Path:
        """pairs/<split>.jsonl: train, dev or test."""
        return self.pairs_dir / f"{split}.jsonl"

    def pair_files(self) -> list[Path]:
        """Every pair file stage 01 wrote here (the splits and the benches' files, not the policy prompts)."""
        return sorted(p for p in self.pairs_dir.glob("*.jsonl") if p != self.policy_prompts)

    @property
    def policy_prompts(self) -> Path:
        """pairs/policy_prompts.jsonl: the downstream policies' training prompts (profiles with policy.rewarders)."""
        return self.pairs_dir / "policy_prompts.jsonl"

    def bench_pairs(self, bench: str) -> Path:
        """pairs/bench-<bench>.jsonl: the pairs a bench of the run judges (`pairs:hh-rlhf` -> bench-pairs-hh-rlhf)."""
        return self.pairs_dir / f"bench-{file_safe(bench)}.jsonl"

    # ------------------------------------------------------------ stage 02: preview of the base judge
    @property
    def preview_judgments(self) -> Path:
        return self.root / "judgments" / "02_base_train.jsonl"

    @property
    def preview_metrics(self) -> Path:
        return self.root / "metrics" / "02_base_judge.json"

    # ------------------------------------------------------------ stage 03: training
    @property
    def sft_dir(self) -> Path:
        return self.root / "sft"

    @property
    def sft_adapter(self) -> Path:
        return self.sft_dir / "adapter"

    @property
    def sft_examples(self) -> Path:
        return self.sft_dir / "examples.jsonl"

    @property
    def sft_trainer(self) -> Path:
        return self.sft_dir / "trainer"

    @property
    def sft_train_log(self) -> Path:
        return self.sft_dir / "train_log.json"

    @property
    def sft_checks(self) -> Path:
        return self.sft_dir / "checks.json"

    @property
    def sft_check_judgments(self) -> Path:
        return self.sft_dir / "check_judgments.jsonl"

    def for_par(self, judge: str) -> "RunLayout":
        """The layout whose par_* paths are those of PAR training `judge` ("par" or "par-<variant>")."""
        return RunLayout(self.root, judge)

    @property
    def par_dir(self) -> Path:
        return self.root / self.par

    @property
    def par_adapter(self) -> Path:
        return self.par_dir / "adapter"

    @property
    def par_metrics(self) -> Path:
        """par/metrics.jsonl: one JSON line per GRPO step (append-only)."""
        return self.par_dir / "metrics.jsonl"

    @property
    def par_checkpoints(self) -> Path:
        return self.par_dir / "checkpoints"

    @property
    def par_curve(self) -> Path:
        """par/curve/: the learning curve, one metrics file (and judgments) per checkpoint."""
        return self.par_dir / "curve"

    def curve_metrics(self, step: int) -> Path:
        return self.par_curve / f"step-{step:04d}.json"

    @property
    def score_probe(self) -> Path:
        """probe/score_probe.json: the score-reading probe's dev curves (training/score_probe.py)."""
        return self.root / "probe" / "score_probe.json"

    @property
    def bt_dir(self) -> Path:
        return self.root / "bt"

    @property
    def bt_adapter(self) -> Path:
        return self.bt_dir / "adapter"

    def adapter(self, judge: str) -> Path:
        """The adapter behind a run's own trained judge (`is_trained_judge`)."""
        if not is_trained_judge(judge):
            raise KeyError(f"{judge!r} is not a trained judge of a run (sft, par, par-<variant>, bt)")
        if judge.startswith("par-"):
            return self.for_par(judge).par_adapter
        return {"sft": self.sft_adapter, "par": self.root / "par" / "adapter", "bt": self.bt_adapter}[judge]

    # ------------------------------------------------------------ stage 05: downstream RLHF
    def policy_dir(self, rewarder: str) -> Path:
        """policy/<rewarder>/: the policy trained with that rewarder (a run's judge, or the checker)."""
        return self.root / "policy" / file_safe(rewarder)

    def policy_adapter(self, rewarder: str) -> Path:
        return self.policy_dir(rewarder) / "adapter"

    def policy_metrics(self, rewarder: str) -> Path:
        """policy/<rewarder>/metrics.jsonl: one JSON line per GRPO step."""
        return self.policy_dir(rewarder) / "metrics.jsonl"

    @property
    def downstream_dir(self) -> Path:
        return self.root / "downstream"

    def ifeval_responses(self, policy: str) -> Path:
        """downstream/<policy>.responses.jsonl: the policy's greedy IFEval responses ({key, response, finished})."""
        return self.downstream_dir / f"{file_safe(policy)}.responses.jsonl"

    def ifeval_metrics(self, policy: str) -> Path:
        """downstream/<policy>.json: IFEval's four numbers; the verdicts beside it (judgments_of)."""
        return self.downstream_dir / f"{file_safe(policy)}.json"

    def infobench_metrics(self, policy: str) -> Path:
        """downstream/<policy>.infobench.json: DRFR, with every response and its yes/no verdicts."""
        return self.downstream_dir / f"{file_safe(policy)}.infobench.json"

    @property
    def infobench_record(self) -> Path:
        """downstream/infobench.json: InFoBench's DRFR per policy, or why it was not run."""
        return self.downstream_dir / "infobench.json"

    @property
    def downstream_summary(self) -> Path:
        """metrics/05_downstream.json: every policy's IFEval numbers and the paired differences."""
        return self._as_made(self.root / "metrics" / "05_downstream.json")

    # ------------------------------------------------------------ stage 04: evaluation
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_metrics(self, judge: str, bench: str) -> Path:
        """eval/<judge>__<bench>.json: one judge on one benchmark (judge = its alias, never a path)."""
        return self.eval_dir / f"{file_safe(judge)}__{file_safe(bench)}.json"

    @staticmethod
    def judgments_of(metrics_path: Path) -> Path:
        """The per-item judgments beside a metrics file: <name>.judgments.jsonl; the sampled-mean
        readout's draws are in it too, each marked by its `draw` (judge.read_judgments)."""
        return Path(metrics_path).with_suffix(".judgments.jsonl")

    @property
    def benchmarks_summary(self) -> Path:
        """metrics/04_benchmarks.json: the comparison table, paired differences and votes curve."""
        return self.root / "metrics" / "04_benchmarks.json"

    # ------------------------------------------------------------ stage 06: figures and tables (last)
    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def figure(self, name: str, ext: str = "png") -> Path:
        return self._as_made(self.figures_dir / f"{name}.{ext}")

    def figure_data(self, name: str) -> Path:
        """figures/<name>.csv: the numbers a figure draws, so verify can check them (named as its PNG is)."""
        return self.figure(name).with_suffix(".csv")

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    def table(self, name: str, ext: str = "csv") -> Path:
        return self._as_made(self.tables_dir / f"{name}.{ext}")

    def _as_made(self, path: Path) -> Path:
        """A file named by the notebook that makes it, under the number it had when this run was made:
        notebooks 05 (figures) and 06 (downstream) swapped places, so runs made before keep 05_<figure>,
        06_policy_rewards and 06_downstream.json, and write them so when a stage is made again there."""
        earlier = RENUMBERED.get(path.name[:3])
        if earlier is None or path.exists():
            return path
        before = path.with_name(earlier + path.name[3:])
        return before if before.exists() or self.numbered_before else path

    @property
    def numbered_before(self) -> bool:
        """Whether this run was made before the renumbering: its executed notebooks carry the old names."""
        return any(self.notebook(old).exists() for old in RENAMED_NOTEBOOKS)

    # ------------------------------------------------------------ paths as run files record them
    def relative(self, path: str | Path) -> str:
        """`<run>/...` for a path inside this run, the path unchanged otherwise."""
        try:
            inside = Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            return str(path)
        return RUN_PREFIX + inside.as_posix()

    def resolve(self, recorded: str | Path) -> Path:
        """The path a run file recorded, made absolute (`<run>/x` -> <root>/x)."""
        text = str(recorded)
        return self.root / text[len(RUN_PREFIX):] if text.startswith(RUN_PREFIX) else Path(text)

    @staticmethod
    def is_local_only(key: str) -> bool:
        """Whether a run file (by its key) is one a published run may leave out (see LOCAL_ONLY)."""
        return RunLayout.local_only_reason(key) is not None

    @staticmethod
    def local_only_reason(key: str) -> str | None:
        """Why a published run leaves this file out, or None when it keeps it."""
        return next((why for pattern, why in LOCAL_ONLY.items() if fnmatch.fnmatch(key, pattern)), None)

    def key(self, path: str | Path) -> str:
        """A file's name inside the run (posix, relative to the root): the keys of stage records."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
