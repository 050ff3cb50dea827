"""The git a project's creation needs: check a URL and a branch, init or clone, identity.

Every call runs ``git`` directly (no shell), with ``--`` before URLs and paths, prompts
off (``GIT_TERMINAL_PROMPT=0``, ssh in batch mode) so a clone that wants a password fails
at once instead of hanging, and only the https, ssh and git transports allowed (never
``ext::`` or local files). URLs are shown and logged only through :func:`redact`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from pipeline import process
from pipeline.errors import PipelineError
from pipeline.process import Finished, OnLine

_SCHEMES = re.compile(r"^(https|ssh|git)://[^\s/?#]+(/[^\s]*)?$")
_SCP = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!//)[^\s]+$")
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
_USERINFO = re.compile(r"^(https|ssh|git)://([^@/]+)@")
_TRANSPORTS = ("-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
               "-c", "protocol.ssh.allow=always", "-c", "protocol.git.allow=always")  # fmt: skip
MAX_URL = 2048


class GitError(PipelineError):
    """A git step failed; the message says which and why (credentials redacted)."""


def check_url(url: str) -> str:
    """``url`` when git may clone it: https, ssh or git URL, or scp-style ``user@host:path``.

    Raises:
        PipelineError: anything else (options such as ``-oProxyCommand=…``, ``ext::``,
            ``file://``, local paths, spaces or control characters).
    """
    if url.startswith("-") or len(url) > MAX_URL or not url.isprintable() or not url.isascii():
        raise PipelineError(f"Refusing the git URL {redact(url)!r}: use https://, ssh://,"
                            " git:// or user@host:path.")  # fmt: skip
    if _SCHEMES.match(url) or (_SCP.match(url) and "::" not in url):
        return url
    raise PipelineError(
        f"Refusing the git URL {redact(url)!r}: use https://, ssh://, git:// or user@host:path."
    )


def redact(url: str) -> str:
    """``url`` without a password or token: ``https://***@host/x``; ssh users are kept."""
    match = _USERINFO.match(url)
    if match is None:
        return url[:200]
    scheme, userinfo = match.group(1), match.group(2)
    if scheme == "ssh" and ":" not in userinfo:
        return url[:200]
    return f"{scheme}://***@{url[match.end() :]}"[:200]


def check_branch(branch: str) -> str:
    """``branch`` when it is a plain branch name (letters, digits, ``._/-``; no ``..``)."""
    if (
        not _BRANCH.match(branch)
        or ".." in branch
        or branch.endswith((".lock", "/", "."))
        or "//" in branch
    ):
        raise PipelineError(f"Bad branch name {branch[:100]!r}: use letters, digits, . _ / -.")
    return branch


def git_env() -> dict[str, str]:
    """The environment for git: no prompts, no askpass helpers, messages in English."""
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_ASKPASS", "SSH_ASKPASS")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_SSH_COMMAND="ssh -o BatchMode=yes", LC_ALL="C")
    return env


async def git(args: Sequence[str], cwd: Path, *, timeout_s: float = 60.0,
              on_line: OnLine | None = None) -> Finished:  # fmt: skip
    """Run ``git <args>`` in ``cwd``."""
    return await process.run(
        ["git", *args], cwd=cwd, env=git_env(), timeout_s=timeout_s, on_line=on_line
    )


def _failure(step: str, result: Finished, url: str = "") -> GitError:
    text = result.output.replace(url, redact(url)) if url else result.output
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    why = "timed out" if result.timed_out else (lines[-1] if lines else "no output")
    return GitError(f"{step} failed: {why}")


async def clone(
    url: str, dest: Path, branch: str | None, *, timeout_s: float, on_line: OnLine
) -> None:
    """``git clone --progress [--branch B] -- URL DEST`` (``dest`` absent or empty).

    Raises:
        GitError: the clone failed, prompted for credentials, or timed out.
    """
    args = [*_TRANSPORTS, "clone", "--progress"]
    if branch:
        args += ["--branch", branch]
    result = await git([*args, "--", url, str(dest)], dest.parent, timeout_s=timeout_s,
                       on_line=on_line)  # fmt: skip
    if not result.ok:
        raise _failure("git clone", result, url)


async def init(dest: Path, branch: str, identity: tuple[str, str], message: str) -> None:
    """``git init`` on ``branch`` and one commit of everything in ``dest``.

    Raises:
        GitError: a git step failed.
    """
    name, email = identity
    who = ["-c", f"user.name={name}", "-c", f"user.email={email}"]
    for label, step in (
        ("git init", ["init", "--quiet", f"--initial-branch={branch}"]),
        ("git add", ["add", "--all"]),
        ("the first commit", [*who, "commit", "--quiet", "--allow-empty", "-m", message]),
    ):
        result = await git(step, dest)
        if not result.ok:
            raise _failure(label, result)


async def current_branch(dest: Path) -> str:
    """The branch checked out in ``dest`` (after a clone: the remote's default)."""
    result = await git(["symbolic-ref", "--short", "HEAD"], dest)
    if not result.ok:
        raise _failure("reading the cloned branch", result)
    return result.output.strip()


async def identity(name: str | None, email: str | None) -> tuple[str, str]:
    """The author of a first commit: ``[projects] git_user_name``/``git_user_email``, else
    the host's git config.

    Raises:
        PipelineError: neither gives both; the message says what to set.
    """
    home = Path.home()
    if not name:
        name = (await git(["config", "--get", "user.name"], home)).output.strip() or None
    if not email:
        email = (await git(["config", "--get", "user.email"], home)).output.strip() or None
    if not name or not email:
        raise PipelineError(
            "No git identity for the first commit: set [projects] git_user_name and"
            " git_user_email in bot.toml (or `git config --global user.name/user.email`)."
        )
    return name, email
