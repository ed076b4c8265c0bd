"""The kernel manager the chain's notebooks run under (its own module, so that importing the
chain does not import jupyter_client: papermill is given this class by its import path)."""

from __future__ import annotations

import os
import uuid
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir


class LocalKernelManager(AsyncKernelManager):
    """A kernel that talks over local socket files (IPC), not TCP ports: nothing outside this
    machine can reach it, and the kernel has no "running over TCP without encryption" warning
    to print for each notebook.

    The socket files go to Jupyter's runtime folder, where its connection files live, under a
    name of their own: not into the notebooks' folder (the default is relative to the working
    directory), and two chains at once never pick the same files. Jupyter deletes them when the
    kernel shuts down."""

    def __init__(self, **kwargs: Any) -> None:
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, exist_ok=True)
        sockets = os.path.join(runtime, f"patarm-kernel-{uuid.uuid4().hex[:8]}")  # a socket path ends at 107 characters
        super().__init__(transport="ipc", ip=sockets, **kwargs)
