"""``musher`` command line: ``run``, ``check``, ``say``, ``audit verify``, ``store copy``,
``nodes``, ``agent``, ``slack-manifest``, ``discord-invite``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from config import Settings, config_path, load_settings, render_effective
from config.errors import ConfigError, MusherError

if TYPE_CHECKING:
    from pipeline.keys import NodeKey


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        result: int = args.handler(args)
        return result
    except ConfigError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return 2
    except MusherError as err:
        print(f"musher: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musher", description="Chat-first assistant daemon.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", help="bot.toml to read (default: $MUSHER_CONFIG, ./bot.toml)")
    run.add_argument("--data-dir", help="overrides [daemon] data_dir")
    run.set_defaults(handler=_run)

    check = sub.add_parser("check", help="validate the configuration and print it")
    check.add_argument("--config")
    check.set_defaults(handler=_check)

    say = sub.add_parser("say", help="post to the running daemon and print the replies")
    say.add_argument("--config")
    say.add_argument("--data-dir", help="where the running daemon keeps daemon.json")
    say.add_argument("--room", default="lobby")
    say.add_argument("--sender", default=os.environ.get("USER") or "you")
    say.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    say.add_argument(
        "text", nargs=argparse.REMAINDER, help="the message; words after it are kept as typed"
    )
    say.set_defaults(handler=_say)

    audit = sub.add_parser("audit", help="check the signed op log")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser("verify", help="verify every signature and replay the log")
    verify.add_argument("--config")
    verify.add_argument("--data-dir", help="overrides [daemon] data_dir")
    verify.add_argument("--store", help="the database URL; overrides [store] url")
    verify.set_defaults(handler=_audit_verify)

    nodes = sub.add_parser("nodes", help="list the nodes of the store and what they hold")
    nodes.add_argument("--config")
    nodes.add_argument("--data-dir", help="overrides [daemon] data_dir")
    nodes.add_argument("--store", help="the database URL; overrides [store] url")
    nodes.set_defaults(handler=_nodes)

    agent = sub.add_parser("agent", help="run a headless build node on the shared store")
    agent.add_argument("--config")
    agent.add_argument("--store", help="the database URL; overrides [store] url")
    agent.add_argument("--name", help="this node's name (default: the host name)")
    agent.add_argument("--max-agents", type=int, help="overrides [agents] max_agents")
    agent.add_argument("--workdir", default=".musher-agent", help="clones, worktrees, node key")
    agent.add_argument("--print-key", action="store_true", help="print the node key and exit")
    agent.set_defaults(handler=_agent)

    store = sub.add_parser("store", help="move the state between store backends")
    store_sub = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    copy = store_sub.add_parser("copy", help="copy an install into an empty database, verify it")
    copy.add_argument("--from", dest="source", required=True, help="sqlite:///… or postgresql://…")
    copy.add_argument("--to", dest="target", required=True, help="an empty database's URL")
    copy.set_defaults(handler=_store_copy)

    manifest = sub.add_parser(
        "slack-manifest", help="print the Slack app manifest for [transports.slack]"
    )
    manifest.add_argument("--config")
    manifest.add_argument(
        "--url", help="the daemon's public URL (http mode), e.g. https://musher.example.org"
    )
    manifest.set_defaults(handler=_slack_manifest)

    invite = sub.add_parser(
        "discord-invite", help="print the URL that adds the Discord bot to a server"
    )
    invite.add_argument("--config")
    invite.set_defaults(handler=_discord_invite)

    mcp = sub.add_parser("mcp", help="stdio MCP server for an LLM turn (started by the daemon)")
    mcp.set_defaults(handler=_mcp)
    return parser


def _settings(args: argparse.Namespace) -> tuple[Settings, Path | None]:
    path = config_path(args.config, os.environ)
    return load_settings(path), path


def _data_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.data_dir) if getattr(args, "data_dir", None) else settings.daemon.data_dir


# Libraries that log every statement or request at DEBUG: their lines would bury the
# daemon's own at log_level = "DEBUG", so they stay at INFO.
CHATTY = ("aiosqlite", "httpcore", "psycopg.pool")


def _log_to_stderr(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for name in CHATTY:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


GC_THRESHOLD = (50_000, 10, 10)
"""The cycle collector's thresholds while the daemon runs (Python's default: 700, 10, 10)."""


def collect_cycles_less() -> None:
    """Under load the daemon holds thousands of objects for the requests in flight, and
    reference counting frees nearly all of them. With Python's default first threshold (700
    allocations) the cycle collector ran every few dozen requests, found next to nothing, and
    took 10-15% of each request's CPU (B2), more with more connections open. Cycles are
    still collected, after 50,000 allocations; the objects made while starting (modules,
    configuration) are moved out of the collector's way first. B1 (``bench.dispatch``)
    runs its in-process stack the same way."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _run(args: argparse.Namespace) -> int:
    from bot.daemon import Daemon

    settings, _ = _settings(args)
    _log_to_stderr(settings.daemon.log_level)
    collect_cycles_less()
    asyncio.run(Daemon(settings, _data_dir(args, settings)).run())
    return 0


def _check(args: argparse.Namespace) -> int:
    from bot.llm.select import choose

    settings, path = _settings(args)
    choice = choose(settings)
    print(f"# configuration: {path if path else 'built-in defaults'}")
    print(f"# LLM provider: {choice.name} ({choice.reason})")
    print(render_effective(settings), end="")
    return 0


def _say(args: argparse.Namespace) -> int:
    from bot.say import say

    words = args.text[1:] if args.text[:1] == ["--"] else args.text
    if not " ".join(words).strip():
        raise ConfigError(["musher say: give the message to post, e.g. musher say status"])
    settings, _ = _settings(args)
    token = settings.http.token.get_secret_value() if settings.http.token else None
    return asyncio.run(
        say(
            _data_dir(args, settings),
            args.room,
            args.sender,
            " ".join(words),
            token,
            args.timeout,
        )
    )


def _slack_manifest(args: argparse.Namespace) -> int:
    import json

    from bot.commands.catalogue import build_registry
    from transports.slack.manifest import manifest

    settings, _ = _settings(args)
    try:
        app = manifest(settings.transports.slack, build_registry(), args.url)
    except ValueError as err:
        raise ConfigError([f"musher slack-manifest: {err}"]) from None
    print(json.dumps(app, indent=2, ensure_ascii=False))
    return 0


def _discord_invite(args: argparse.Namespace) -> int:
    from transports.discord.invite import invite_url

    settings, _ = _settings(args)
    try:
        print(invite_url(settings.transports.discord))
    except ValueError as err:
        raise ConfigError([f"musher discord-invite: {err}"]) from None
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from bot.mcp_server import main as serve_mcp

    return serve_mcp()


def _store_of(args: argparse.Namespace) -> tuple[str, Path, Settings]:
    """The store ``--store``, ``[store] url`` or the data dir names, which must exist."""
    from bot.store_url import default_url, sqlite_path

    settings, _ = _settings(args)
    data_dir = _data_dir(args, settings)
    url = args.store or settings.store.url or default_url(data_dir)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigError([f"{path}: no database here (is --data-dir or --store right?)"])
    return url, data_dir, settings


def _audit_verify(args: argparse.Namespace) -> int:
    url, data_dir, settings = _store_of(args)
    return asyncio.run(_verify(url, data_dir, _trusted(data_dir, settings), _own_key(data_dir)))


def _own_key(data_dir: Path) -> NodeKey | None:
    """The data dir's node key, if it has one."""
    if not (data_dir / "node.key").exists():
        return None
    from pipeline.keys import load_or_create

    return load_or_create(data_dir)


def _trusted(data_dir: Path, settings: Settings) -> set[str]:
    """``[store] trusted_keys`` and the data dir's own key, if it has one."""
    key = _own_key(data_dir)
    return set(settings.store.trusted_keys) | ({key.public_hex} if key else set())


async def _verify(url: str, data_dir: Path, trusted: set[str], key: NodeKey | None) -> int:
    """Verify the log as trusted by ``[store] trusted_keys`` and the data dir's own key."""
    from bot.store_url import open_db
    from pipeline.audit import verify

    db = await open_db(url, data_dir)
    try:
        report = await verify(db, trusted, key)
    finally:
        await db.aclose()
    print(report)
    return 0 if report.ok else 1


def _agent(args: argparse.Namespace) -> int:
    import socket

    from bot.headless import run_node
    from pipeline.keys import load_or_create

    workdir = Path(args.workdir)
    if args.print_key:
        print(load_or_create(workdir).public_hex)
        return 0
    settings, _ = _settings(args)
    url = args.store or settings.store.url
    if not url:
        raise ConfigError(["musher agent: --store or [store] url must name the shared store"])
    if args.max_agents is not None:
        if args.max_agents < 1:
            raise ConfigError(["musher agent: --max-agents must be at least 1"])
        agents = settings.agents.model_copy(update={"max_agents": args.max_agents})
        settings = settings.model_copy(update={"agents": agents})
    _log_to_stderr(settings.daemon.log_level)
    name = args.name or socket.gethostname()
    asyncio.run(run_node(settings, url, workdir, name))
    return 0


def _store_copy(args: argparse.Namespace) -> int:
    from bot.store_copy import copy_store

    result = asyncio.run(copy_store(args.source, args.target, Path.cwd()))
    print(result)
    return 0 if result.report.ok else 1


def _nodes(args: argparse.Namespace) -> int:
    url, data_dir, settings = _store_of(args)
    print(asyncio.run(_node_lines(url, data_dir, _trusted(data_dir, settings))))
    return 0


async def _node_lines(url: str, data_dir: Path, trusted: set[str]) -> str:
    from bot.nodes_report import node_report
    from bot.store_url import open_db
    from pipeline import leases, nodes

    db = await open_db(url, data_dir, nodes.SCHEMA + leases.SCHEMA)
    try:
        return await node_report(db, trusted)
    finally:
        await db.aclose()
