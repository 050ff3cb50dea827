"""Install each peer from PyPI into its own venv under ``.cache/peers/`` (pinned, idempotent).

A venv whose ``.installed`` marker names the pinned version is used as it is; anything else
is rebuilt. The venvs are made with the project's uv (``.uv/bin/uv``, bootstrapped by the
Makefile) or, without it, ``python -m venv`` and pip. Run alone:
``python -m bench.peers.install``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import progress

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = ROOT / ".cache" / "peers"
PINNED = {"nanobot-ai": "0.3.5", "hermes-agent": "0.19.0"}


def venv_dir(package: str) -> Path:
    return PEERS_DIR / package


def executable(package: str, name: str) -> Path:
    return venv_dir(package) / "bin" / name


def _uv() -> str | None:
    local = ROOT / ".uv" / "bin" / "uv"
    if local.exists():
        return str(local)
    return shutil.which("uv")


def install(package: str) -> Path:
    """The venv of ``package`` at its pinned version, installed if it is not there yet."""
    pin = f"{package}=={PINNED[package]}"
    venv = venv_dir(package)
    marker = venv / ".installed"
    if marker.exists() and marker.read_text().strip() == pin:
        return venv
    progress(f"installing {pin} into {venv}")
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    python = str(venv / "bin" / "python")
    if uv is not None:
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", python, pin], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", pin], check=True)
    marker.write_text(pin + "\n")
    return venv


def main() -> int:
    for package in PINNED:
        install(package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
