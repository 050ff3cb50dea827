"""Time zones are configuration read at start: project.toml, then [projects] timezone (N2)."""

from __future__ import annotations

from pathlib import Path

from bot.project_zones import apply_zones
from pipeline.engine import Engine
from pipeline.model import SystemOrigin
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

        await apply_zones(env.engine, PROJECT, "America/New_York")

        assert await zones(env.engine) == {
            PROJECT: "America/New_York",  # the default project follows [projects] timezone
            "own": "Asia/Tokyo",
            "broken": "UTC",  # an unknown zone in the file is ignored (and logged)
        }
        assert (await env.engine.project("own")).timezone == "Asia/Tokyo"
        ops = await env.ops()
        assert [kind for _, kind, _ in ops].count("project.create") == 3  # nothing rewritten
