"""Pipeline values: impossible states refuse to exist, the board views, and op log round trips."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import PipelineError
from pipeline.model import (
    STAGE_NAMES,
    Abandoned,
    AgentOrigin,
    Archived,
    Backlog,
    Badge,
    Blocked,
    Coding,
    Column,
    Done,
    Frozen,
    Item,
    ItemKind,
    Merge,
    MergeFailure,
    Origin,
    Qa,
    Rejected,
    ReviewHold,
    Stage,
    Superseded,
    SystemOrigin,
    UserOrigin,
    badge,
    column,
    is_finished,
    is_resumable,
    stage_from_dict,
    stage_name,
    stage_to_dict,
)

ORIGIN = UserOrigin(transport="web", user="alice", room="lobby")

# --- invalid stages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: Frozen(resume_to=Frozen(resume_to=Backlog())),  # type: ignore[arg-type]
        lambda: Frozen(resume_to=Done(merge_commit=None)),  # type: ignore[arg-type]
        lambda: Frozen(resume_to=Archived()),  # type: ignore[arg-type]
        lambda: Frozen(resume_to=Abandoned(reason="x")),  # type: ignore[arg-type]
        lambda: Frozen(resume_to=Superseded(by=2)),  # type: ignore[arg-type]
        lambda: Frozen(resume_to=Rejected(reason="x")),  # type: ignore[arg-type]
        lambda: Frozen(resume_to="coding"),  # type: ignore[arg-type]
        lambda: Superseded(by=0),
        lambda: Superseded(by=-3),
        lambda: Superseded(by=True),
        lambda: Superseded(by="4"),  # type: ignore[arg-type]
        lambda: Rejected(reason=""),
        lambda: Rejected(reason="   "),
        lambda: Abandoned(reason=""),
        lambda: Blocked(reason=""),
        lambda: ReviewHold(reason="\n"),
        lambda: Archived(reason=""),
        lambda: MergeFailure(kind="", reason="x"),
        lambda: MergeFailure(kind="merge conflict", reason="x"),
        lambda: MergeFailure(kind="conflict", reason=""),
        lambda: Done(merge_commit=""),
        lambda: Done(merge_commit="abc 123"),
        lambda: Done(merge_commit=123),  # type: ignore[arg-type]
    ],
)
def test_invalid_stages_cannot_be_built(build: Callable[[], Stage]) -> None:
    with pytest.raises(PipelineError):
        build()


def test_stages_are_immutable_values() -> None:
    assert Blocked(reason="x") == Blocked(reason="x")
    assert hash(Frozen(resume_to=Backlog())) == hash(Frozen(resume_to=Backlog()))
    assert Archived().reason == "completed"
    with pytest.raises(AttributeError):
        Blocked(reason="x").reason = "y"  # type: ignore[misc]


# --- names and views (P2), transcribed from DESIGN.md ---------------------------------------

VIEWS: list[tuple[Stage, str, Column, Badge, bool]] = [
    (Backlog(), "backlog", Column.BACKLOG, Badge.ACTIVE, False),
    (Coding(), "coding", Column.CODING, Badge.ACTIVE, False),
    (Qa(), "qa", Column.QA, Badge.ACTIVE, False),
    (Merge(), "merge", Column.MERGE, Badge.ACTIVE, False),
    (Done(merge_commit="abc1234"), "done", Column.DONE, Badge.DONE, True),
    (Done(merge_commit=None), "done", Column.DONE, Badge.DONE, True),
    (Archived(), "archived", Column.ARCHIVED, Badge.ACTIVE, True),
    (Blocked(reason="x"), "blocked", Column.CODING, Badge.BLOCKED, False),
    (ReviewHold(reason="x"), "review-hold", Column.QA, Badge.REVIEW_HOLD, False),
    (MergeFailure("conflict", "x"), "merge-failure", Column.MERGE, Badge.MERGE_FAILURE, False),
    (Frozen(resume_to=Backlog()), "frozen", Column.BACKLOG, Badge.FROZEN, False),
    (Frozen(resume_to=Coding()), "frozen", Column.CODING, Badge.FROZEN, False),
    (Frozen(resume_to=Qa()), "frozen", Column.QA, Badge.FROZEN, False),
    (Frozen(resume_to=ReviewHold("x")), "frozen", Column.QA, Badge.FROZEN, False),
    (Frozen(resume_to=MergeFailure("k", "x")), "frozen", Column.MERGE, Badge.FROZEN, False),
    (Abandoned(reason="x"), "abandoned", Column.CLOSED, Badge.ABANDONED, True),
    (Superseded(by=9), "superseded", Column.CLOSED, Badge.SUPERSEDED, True),
    (Rejected(reason="x"), "rejected", Column.CLOSED, Badge.REJECTED, True),
]


@pytest.mark.parametrize(("stage", "name", "col", "bdg", "finished"), VIEWS, ids=repr)
def test_name_column_badge_and_finished(
    stage: Stage, name: str, col: Column, bdg: Badge, finished: bool
) -> None:
    assert stage_name(stage) == name
    assert column(stage) == col
    assert badge(stage) == bdg
    assert is_finished(stage) is finished
    assert is_resumable(stage) is (not finished and name != "frozen")


def test_view_values_are_the_wire_strings() -> None:
    assert [c.value for c in Column] == [
        "backlog",
        "coding",
        "qa",
        "merge",
        "done",
        "closed",
        "archived",
    ]
    assert {b.value for b in Badge} == {
        "active",
        "frozen",
        "review-hold",
        "blocked",
        "merge-failure",
        "abandoned",
        "superseded",
        "rejected",
        "done",
    }
    assert set(STAGE_NAMES) == {name for _, name, _, _, _ in VIEWS}


def test_done_never_shows_a_merge_failure_badge() -> None:
    assert badge(Done(merge_commit=None)) == Badge.DONE


# --- stage (de)serialisation ----------------------------------------------------------------

reasons = st.text(min_size=1).filter(str.strip)
kinds = st.from_regex(r"[a-z][a-z-]{0,15}", fullmatch=True)
open_stages: st.SearchStrategy[Stage] = st.one_of(
    st.builds(Backlog),
    st.builds(Coding),
    st.builds(Qa),
    st.builds(Merge),
    st.builds(Blocked, reason=reasons),
    st.builds(ReviewHold, reason=reasons),
    st.builds(
        MergeFailure, kind=st.from_regex(r"[a-z][a-z-]{0,15}", fullmatch=True), reason=reasons
    ),
)
finished_stages: st.SearchStrategy[Stage] = st.one_of(
    st.builds(Done, merge_commit=st.none() | st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True)),
    st.builds(Archived, reason=reasons),
    st.builds(Abandoned, reason=reasons),
    st.builds(Superseded, by=st.integers(min_value=1, max_value=10**9)),
    st.builds(Rejected, reason=reasons),
)
stages = st.one_of(open_stages, finished_stages, st.builds(Frozen, resume_to=open_stages))


@given(stages)
def test_stage_dict_round_trips_exactly(stage: Stage) -> None:
    data = stage_to_dict(stage)
    assert data["stage"] == stage_name(stage)
    assert stage_from_dict(data) == stage
    through_json = json.loads(json.dumps(data))
    assert stage_from_dict(through_json) == stage
    assert stage_to_dict(stage_from_dict(through_json)) == data


def test_stage_dict_shapes() -> None:
    assert stage_to_dict(Backlog()) == {"stage": "backlog"}
    assert stage_to_dict(Done()) == {"stage": "done", "merge_commit": None}
    assert stage_to_dict(MergeFailure("conflict", "x")) == {
        "stage": "merge-failure",
        "kind": "conflict",
        "reason": "x",
    }
    assert stage_to_dict(Frozen(resume_to=Blocked("gate"))) == {
        "stage": "frozen",
        "resume_to": {"stage": "blocked", "reason": "gate"},
    }
    assert stage_to_dict(Superseded(by=4)) == {"stage": "superseded", "by": 4}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"stage": "current"},
        {"stage": "2_current"},
        {"stage": "Backlog"},
        {"stage": 3},
        {"stage": "backlog", "reason": "x"},
        {"stage": "done"},
        {"stage": "blocked"},
        {"stage": "blocked", "reason": ""},
        {"stage": "blocked", "reason": 5},
        {"stage": "superseded", "by": "3"},
        {"stage": "superseded", "by": 3.0},
        {"stage": "superseded", "by": 0},
        {"stage": "merge-failure", "kind": "conflict"},
        {"stage": "frozen", "resume_to": {"stage": "done", "merge_commit": None}},
        {"stage": "frozen", "resume_to": {"stage": "frozen", "resume_to": {"stage": "qa"}}},
        {"stage": "frozen", "resume_to": "qa"},
        {"stage": "frozen"},
    ],
    ids=repr,
)
def test_stage_from_dict_rejects_unknown_shapes(data: dict[str, Any]) -> None:
    with pytest.raises(PipelineError):
        stage_from_dict(data)


def test_stage_from_dict_rejects_non_objects() -> None:
    with pytest.raises(PipelineError):
        stage_from_dict(["backlog"])  # type: ignore[arg-type]


# --- origins ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "data", "label"),
    [
        (ORIGIN, {"transport": "web", "user": "alice", "room": "lobby"}, "alice (web:lobby)"),
        (AgentOrigin(agent="claude", name="coder-1"), {"agent": "claude", "name": "coder-1"}, None),
        (SystemOrigin(system="timers", reason="timer 3 fired"), None, None),
    ],
)
def test_origins_round_trip(origin: Origin, data: dict[str, str] | None, label: str | None) -> None:
    if data is not None:
        assert origin.to_dict() == data
    assert Origin.from_dict(origin.to_dict()) == origin
    assert Origin.from_dict(json.loads(json.dumps(origin.to_dict()))) == origin
    if label is not None:
        assert origin.describe() == label
    assert origin.describe()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"kind": "user", "id": ""},
        {"transport": "web", "user": "", "room": "lobby"},
        {"transport": "web", "user": "alice"},
        {"transport": "web", "user": "alice", "room": "lobby", "extra": "x"},
        {"agent": "claude", "name": " "},
        {"agent": "claude", "name": 7},
        {"system": "", "reason": "x"},
    ],
    ids=repr,
)
def test_origin_from_dict_rejects_blank_or_unknown_shapes(data: dict[str, Any]) -> None:
    with pytest.raises(PipelineError):
        Origin.from_dict(data)


@pytest.mark.parametrize(
    "build",
    [
        lambda: UserOrigin(transport="", user="a", room="r"),
        lambda: UserOrigin(transport="web", user="a", room=""),
        lambda: AgentOrigin(agent="claude", name=""),
        lambda: SystemOrigin(system="timers", reason=""),
    ],
)
def test_blank_origins_cannot_be_built(build: Callable[[], Origin]) -> None:
    with pytest.raises(PipelineError):
        build()


def test_origin_base_is_abstract() -> None:
    with pytest.raises(TypeError):
        Origin()  # type: ignore[abstract]


# --- items -----------------------------------------------------------------------------------


def make_item(**overrides: Any) -> Item:
    fields: dict[str, Any] = {
        "number": 12,
        "kind": ItemKind.BUG,
        "title": "Login page",
        "origin": ORIGIN,
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    return Item(**{**fields, **overrides})


def test_item_defaults() -> None:
    item = make_item()
    assert item.stage == Backlog()
    assert (item.body, item.depends_on, item.epic, item.retries) == ("", (), None, 0)
    assert item.label == "#12 Login page"


@pytest.mark.parametrize(
    "overrides",
    [
        {"number": 0},
        {"number": -1},
        {"number": True},
        {"title": ""},
        {"title": "  "},
        {"title": "two\nlines"},
        {"kind": "story"},
        {"depends_on": (12,)},
        {"depends_on": (3, 3)},
        {"depends_on": (0,)},
        {"depends_on": [3]},
        {"epic": 12},
        {"epic": 0},
        {"retries": -1},
        {"stage": "backlog"},
        {"origin": {"transport": "web", "user": "alice", "room": "lobby"}},
        {"created_at": float("nan")},
        {"updated_at": "now"},
        {"body": None},
    ],
    ids=repr,
)
def test_invalid_items_cannot_be_built(overrides: dict[str, Any]) -> None:
    with pytest.raises(PipelineError):
        make_item(**overrides)


def test_item_kinds() -> None:
    assert [k.value for k in ItemKind] == ["story", "bug", "spike", "refactor", "epic"]
