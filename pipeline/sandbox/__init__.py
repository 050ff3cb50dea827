"""Where project code runs (N4): the :class:`Sandbox` protocol and its runtimes.

``[projects] sandbox`` picks one: ``none`` (plain processes in the project directory),
``bwrap`` (bubblewrap), ``docker`` or ``podman`` (a per-stack image). Gates and agents run
untrusted project code only through a sandbox. :func:`make_sandbox` builds the chosen one.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sandbox.base import Launch, RunResult, Sandbox, SandboxProject, SandboxStatus
from pipeline.sandbox.bwrap import BwrapSandbox
from pipeline.sandbox.container import ContainerSandbox
from pipeline.sandbox.local import LocalSandbox

__all__ = [
    "BwrapSandbox",
    "ContainerSandbox",
    "Launch",
    "LocalSandbox",
    "RunResult",
    "Sandbox",
    "SandboxProject",
    "SandboxStatus",
    "make_sandbox",
]


def make_sandbox(kind: str, *, data_dir: Path, network: bool = True) -> Sandbox:
    """The sandbox ``kind`` names (``none``, ``bwrap``, ``docker``, ``podman``).

    ``data_dir`` is the daemon's data directory: never visible inside ``bwrap``.
    """
    match kind:
        case "none":
            return LocalSandbox()
        case "bwrap":
            return BwrapSandbox(hidden=(data_dir,), network=network)
        case "docker" | "podman":
            return ContainerSandbox(kind, network=network)
        case _:
            raise ValueError(f"unknown sandbox {kind!r}: use none, bwrap, docker or podman")
