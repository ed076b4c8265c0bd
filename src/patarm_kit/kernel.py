"""The kernel manager the chain's notebooks run under (its own module, so that importing the
chain does not import jupyter_client: papermill is given this class by its import path)."""

from typing import Any

from jupyter_client.manager import AsyncKernelManager


class LocalKernelManager(AsyncKernelManager):
    """A kernel that talks over local socket files (IPC), not TCP ports: nothing outside this
    machine can reach it, and the kernel has no "running over TCP without encryption" warning
    to print for each notebook."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(transport="ipc", **kwargs)
