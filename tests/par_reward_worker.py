"""One process of the multi-process PAR reward test (tests/test_train.py), run by `accelerate launch`.

Reads a fixed set of rollouts (no model), keeps this process's consecutive slice, as TRL
gives each process, calls the training reward function, and writes its rewards and logged
metrics to <out>/rank-<i>.json.

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tests/par_reward_worker.py ROLLOUTS OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from accelerate import PartialState

from patarm_kit.training.par import make_gathered_par_reward


def rewards_of(rows: list[dict], mode: str, format_weight: float) -> tuple[list[float], dict[str, float]]:
    """The training reward function called on these rollouts as TRL calls it, and what it logs."""
    logged: dict[str, float] = {}
    rewards = make_gathered_par_reward(mode, format_weight)(
        prompts=["judge prompt"] * len(rows),
        completions=[r["completion"] for r in rows],
        completion_ids=[[0] * r["tokens"] for r in rows],
        pair_id=[r["pair_id"] for r in rows],
        side=[r["side"] for r in rows],
        log_metric=logged.__setitem__,
    )
    return rewards, logged


def main(rollouts_path: str, out_dir: str) -> None:
    state = PartialState(cpu=True)  # gloo, as the trainer on a machine without GPUs
    spec = json.loads(Path(rollouts_path).read_text())
    rows = spec["rollouts"]
    size = len(rows) // state.num_processes
    mine = rows[state.process_index * size:(state.process_index + 1) * size]
    rewards, logged = rewards_of(mine, spec["mode"], spec["format_weight"])
    result = {"rewards": rewards, "metrics": logged, "world_size": state.num_processes,
              "backend": dist.get_backend(), "pairs": sorted({r["pair_id"] + "/" + r["side"] for r in mine})}
    Path(out_dir, f"rank-{state.process_index}.json").write_text(json.dumps(result))
    # Both ranks finish before either tears gloo down: a rank exiting while the other still
    # holds the connection can abort ("terminate called without an active exception").
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
