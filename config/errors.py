"""The one exception root of musher, branched by what the caller should do.

It lives at the bottom (``config`` is imported by every layer and imports none of them), so
``config/``, ``pipeline/``, ``bot/`` and ``transports/`` all raise from one tree without an
upward import. Classes without a ``[module]`` are defined here; a test keeps this drawing true.

    MusherError                        every error musher raises on purpose
    ├── TransientError(retry_after)    try again later (rate limits, 5xx, busy store)
    ├── PermanentError                 give up and tell the room
    │   ├── StoreError                 a write to the database failed (never swallowed)
    │   │   ├── StoreUnavailable       the database cannot be written now (disk full, read-only)
    │   │   └── StoreBusy              another daemon held a lock all along [bot.pgdb]
    │   ├── StoreCopyError             store copy refused: the target has data [bot.store_copy]
    │   ├── StreamError                an LLM API's event stream was unreadable [bot.llm.chat]
    │   └── KillError                  processes outlived SIGKILL [bot.procs]
    ├── VerificationError              a signature or token did not check out
    ├── UsageError                     a command's arguments are wrong; carries the usage line
    ├── AccessDenied                   the sender may not do this
    ├── ConfigError                    bot.toml or the environment is invalid; every problem
    └── PipelineError                  a value or event the pipeline refuses [pipeline.errors]
        ├── TransitionError            the item's stage refuses the event [pipeline.transitions]
        ├── ItemNotFound               no live item with that number [pipeline.engine]
        ├── ProjectNotFound            no such project, or none at all [pipeline.engine]
        ├── StoreWriteError            an op was not committed; nothing recorded [pipeline.store]
        ├── OpLogError                 the op log failed verification [pipeline.audit]
        ├── LeaseLost                  a lease expired or passed on: stop acting [pipeline.leases]
        ├── TimerGone                  the timer fired elsewhere or was removed [pipeline.claims]
        ├── KeyFileError               the node key file is unsafe or unreadable [pipeline.keys]
        ├── UntrustedKeyError          an op's author key is not trusted [pipeline.node_ops]
        ├── ProjectExists              a project of that name is registered [pipeline.projects]
        ├── ProjectFileError           a .musher/project.toml is unreadable [pipeline.project_file]
        ├── GitError                   a git step failed; says which [pipeline.gitops]
        ├── KillFailed                 an agent's processes outlived SIGKILL [pipeline.agents.kill]
        ├── SetupError                 new project failed, rolled back [pipeline.project_setup]
        └── MergeError                 a merge was refused or failed [pipeline.agents.merge]
"""

from __future__ import annotations


class MusherError(Exception):
    """Root of every error musher raises on purpose."""


class TransientError(MusherError):
    """A failure that may succeed when retried, after ``retry_after`` seconds if known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(MusherError):
    """A failure that retrying will not fix."""


class StoreError(PermanentError):
    """A database write failed; the caller and the room must hear of it."""


class StoreUnavailable(StoreError):
    """The database refused a write for a reason outside musher (disk full, read-only file,
    I/O error): intake answers 503 and turns wait until a write succeeds again (R18)."""


class VerificationError(MusherError):
    """A signature, token or digest did not verify."""


class UsageError(MusherError):
    """A command was called with bad arguments; ``str(err)`` is the reply for the room."""


class AccessDenied(MusherError):
    """The sender is not allowed to run this command."""


class ConfigError(MusherError):
    """The configuration is invalid.

    ``problems`` holds one ``path: key: problem`` line per error, ready to print.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
