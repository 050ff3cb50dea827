"""Time zones follow configuration at start: project.toml, then [projects] timezone (N2, N3).

A change is a ``project.set`` op like any other (S3: no in-memory override), so the op log
says when and why a project's zone changed, and nothing is written when they agree.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.engine import Engine
from pipeline.model import SystemOrigin
from pipeline.projects import Projects
from tests.unit.pipeline_env import PROJECT, pipeline_env

SETUP = SystemOrigin("test", "setup")


async def zones(engine: Engine) -> dict[str, str]:
    return {p.name: p.timezone for p in await engine.projects()}


async def test_project_toml_wins_then_the_default_projects_setting(tmp_path: Path) -> None:
    async with pipeline_env(tmp_path, timezone="Europe/London") as env:
        own = tmp_path / "own"
        (own / ".musher").mkdir(parents=True)
        (own / ".musher" / "project.toml").write_text('stack = "python"\ntimezone = "Asia/Tokyo"\n')
        await env.engine.ensure_project("own", str(own), timezone="UTC", origin=SETUP)
        broken = tmp_path / "broken"
        (broken / ".musher").mkdir(parents=True)
        (broken / ".musher" / "project.toml").write_text('timezone = "Mars/Olympus"\n')
        await env.engine.ensure_project("broken", str(broken), timezone="UTC", origin=SETUP)
        env.engine.default_project = PROJECT

        assert await Projects(env.engine).follow_files("America/New_York") == 2

        assert await zones(env.engine) == {
            PROJECT: "America/New_York",  # the default project follows [projects] timezone
            "own": "Asia/Tokyo",
            "broken": "UTC",  # an unknown zone in the file is ignored (and logged)
        }
        kinds = [kind for _, kind, _ in await env.ops()]
        assert kinds.count("project.set") == 2  # each change is an op in the log

        # A second start with nothing edited writes nothing.
        assert await Projects(env.engine).follow_files("America/New_York") == 0
        assert [kind for _, kind, _ in await env.ops()].count("project.set") == 2
