"""The P3 state machine, checked against a table transcribed from DESIGN.md (not the code)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import PipelineError
from pipeline.model import (
    Abandoned,
    Archived,
    Backlog,
    Blocked,
    Coding,
    Done,
    Frozen,
    Item,
    ItemKind,
    Merge,
    MergeFailure,
    Qa,
    Rejected,
    ReviewHold,
    Stage,
    Superseded,
    UserOrigin,
)
from pipeline.transitions import (
    MOVE_TARGETS,
    Abandon,
    Accept,
    Block,
    Event,
    Freeze,
    Hold,
    Merged,
    MergeFailed,
    Move,
    QaFail,
    QaPass,
    Reject,
    Release,
    Reopen,
    RetryMerge,
    Start,
    Submit,
    Supersede,
    TransitionError,
    Unblock,
    Unfreeze,
    allowed_moves,
    event_name,
    transition,
)

NOW = 2_000.0
ORIGIN = UserOrigin(transport="web", user="alice", room="lobby")


def make_item(stage: Stage, *, retries: int = 0, number: int = 12) -> Item:
    return Item(
        number=number,
        kind=ItemKind.STORY,
        title="Login page",
        body="As a user…",
        stage=stage,
        depends_on=(3, 4),
        epic=2,
        retries=retries,
        origin=ORIGIN,
        created_at=1_000.0,
        updated_at=1_500.0,
    )


# --- DESIGN.md P3, transcribed ---------------------------------------------------------------

OPEN: frozenset[type] = frozenset(
    {Backlog, Coding, Qa, Merge, Blocked, ReviewHold, MergeFailure}
)  # "non-terminal": not finished and not Frozen

STAGES: list[tuple[str, Stage]] = [
    ("backlog", Backlog()),
    ("coding", Coding()),
    ("qa", Qa()),
    ("merge", Merge()),
    ("done-commit", Done(merge_commit="abc1234")),
    ("done-manual", Done(merge_commit=None)),
    ("archived", Archived(reason="completed")),
    ("blocked", Blocked(reason="flaky gate")),
    ("review-hold", ReviewHold(reason="needs a designer")),
    ("merge-failure", MergeFailure(kind="conflict", reason="src/app.py")),
    ("frozen-backlog", Frozen(resume_to=Backlog())),
    ("frozen-coding", Frozen(resume_to=Coding())),
    ("frozen-merge-failure", Frozen(resume_to=MergeFailure(kind="gates", reason="red"))),
    ("abandoned", Abandoned(reason="no longer needed")),
    ("superseded", Superseded(by=20)),
    ("rejected", Rejected(reason="out of scope")),
]


def _resume(stage: Stage) -> Stage:
    assert isinstance(stage, Frozen)
    return stage.resume_to


def _freeze(stage: Stage) -> Stage:
    return Frozen(resume_to=stage)  # type: ignore[arg-type]


# event label -> (event, stages it may leave, resulting stage)
TABLE: dict[str, tuple[Event, frozenset[type], Callable[[Stage], Stage]]] = {
    "start": (Start(), frozenset({Backlog}), lambda s: Coding()),
    "move coding": (Move("coding"), frozenset({Backlog}), lambda s: Coding()),
    "move backlog": (
        Move("backlog"),
        frozenset({Coding, Qa, Merge, MergeFailure}),
        lambda s: Backlog(),
    ),
    "submit": (Submit(), frozenset({Coding}), lambda s: Qa()),
    "move qa": (Move("qa"), frozenset({Coding}), lambda s: Qa()),
    "qa_pass": (QaPass(), frozenset({Qa, Coding}), lambda s: Merge()),
    "move merge": (Move("merge"), frozenset({Qa, Coding}), lambda s: Merge()),
    "qa_fail": (QaFail(max_retries=3), frozenset({Qa}), lambda s: Coding()),
    "merged": (
        Merged(merge_commit="f00dfeed"),
        frozenset({Merge, Qa, Coding}),
        lambda s: Done(merge_commit="f00dfeed"),
    ),
    "move done": (Move("done"), frozenset({Merge, Qa, Coding}), lambda s: Done(None)),
    "merge_failed": (
        MergeFailed(kind="no-commits", reason="branch has no commits"),
        frozenset({Merge}),
        lambda s: MergeFailure(kind="no-commits", reason="branch has no commits"),
    ),
    "retry_merge": (RetryMerge(), frozenset({MergeFailure}), lambda s: Merge()),
    "accept": (Accept(), frozenset({Done}), lambda s: Archived(reason="completed")),
    "move archived": (Move("archived"), frozenset({Done}), lambda s: Archived("completed")),
    "block": (
        Block(reason="waiting on API keys"),
        frozenset({Backlog, Coding, Qa, Merge, MergeFailure}),
        lambda s: Blocked(reason="waiting on API keys"),
    ),
    "unblock": (Unblock(), frozenset({Blocked}), lambda s: Backlog()),
    "hold": (Hold(reason="legal review"), frozenset({Qa}), lambda s: ReviewHold("legal review")),
    "release": (Release(), frozenset({ReviewHold}), lambda s: Qa()),
    "freeze": (Freeze(), OPEN, _freeze),
    "unfreeze": (Unfreeze(), frozenset({Frozen}), _resume),
    "abandon": (Abandon(reason="dropped"), OPEN, lambda s: Abandoned(reason="dropped")),
    "supersede": (Supersede(by=30), OPEN, lambda s: Superseded(by=30)),
    "reject": (Reject(reason="won't fix"), OPEN, lambda s: Rejected(reason="won't fix")),
    "reopen": (Reopen(), frozenset({Abandoned, Superseded, Rejected}), lambda s: Backlog()),
}

CASES = [
    pytest.param(label, stage, id=f"{label}-from-{sid}")
    for label, (sid, stage) in itertools.product(TABLE, STAGES)
]


def test_table_covers_every_event_type_and_move_target() -> None:
    assert {type(event) for event, _, _ in TABLE.values()} == set(get_args(Event))
    assert {e.target for e, _, _ in TABLE.values() if isinstance(e, Move)} == set(MOVE_TARGETS)


@pytest.mark.parametrize(("label", "stage"), CASES)
def test_every_event_from_every_stage_follows_the_table(label: str, stage: Stage) -> None:
    event, sources, target = TABLE[label]
    item = make_item(stage)
    if type(stage) in sources:
        after = transition(item, event, NOW)
        assert after.stage == target(stage)
        assert after.updated_at == NOW
        assert (after.number, after.title, after.body, after.depends_on, after.epic) == (
            item.number,
            item.title,
            item.body,
            item.depends_on,
            item.epic,
        )
        assert (after.origin, after.created_at, after.kind) == (ORIGIN, 1_000.0, ItemKind.STORY)
    else:
        with pytest.raises(TransitionError) as refused:
            transition(item, event, NOW)
        assert refused.value.item_number == 12
        assert refused.value.stage == stage
        assert refused.value.event == event


# --- freeze --------------------------------------------------------------------------------

open_stages = st.one_of(
    st.just(Backlog()),
    st.just(Coding()),
    st.just(Qa()),
    st.just(Merge()),
    st.builds(Blocked, reason=st.text(min_size=1).filter(str.strip)),
    st.builds(ReviewHold, reason=st.text(min_size=1).filter(str.strip)),
    st.builds(
        MergeFailure,
        kind=st.sampled_from(["conflict", "gates", "no-commits"]),
        reason=st.text(min_size=1).filter(str.strip),
    ),
)


@given(stage=open_stages, retries=st.integers(0, 9))
def test_freeze_then_unfreeze_restores_the_exact_stage(stage: Stage, retries: int) -> None:
    item = make_item(stage, retries=retries)
    frozen = transition(item, Freeze(), NOW)
    assert frozen.stage == Frozen(resume_to=stage)  # type: ignore[arg-type]
    thawed = transition(frozen, Unfreeze(), NOW + 1)
    assert thawed.stage == stage
    assert thawed.retries == retries
    assert thawed == dataclasses.replace(item, updated_at=NOW + 1)


def test_freeze_from_backlog_unfreezes_to_backlog_not_coding() -> None:
    # bug 1105 in the prior system
    thawed = transition(transition(make_item(Backlog()), Freeze(), NOW), Unfreeze(), NOW)
    assert thawed.stage == Backlog()


def test_freezing_a_frozen_item_is_refused() -> None:
    item = make_item(Frozen(resume_to=Qa()))
    with pytest.raises(TransitionError, match=r"^#12 is in frozen; cannot freeze\."):
        transition(item, Freeze(), NOW)


# --- qa_fail retries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retries", "max_retries", "expect_blocked"),
    [(0, 3, False), (2, 3, False), (3, 3, True), (0, 0, True), (5, 3, True), (0, 1, False)],
)
def test_qa_fail_retries_then_blocks(retries: int, max_retries: int, expect_blocked: bool) -> None:
    after = transition(make_item(Qa(), retries=retries), QaFail(max_retries=max_retries), NOW)
    assert after.retries == retries + 1
    if expect_blocked:
        assert isinstance(after.stage, Blocked)
        assert str(retries + 1) in after.stage.reason
    else:
        assert after.stage == Coding()


def test_qa_fail_block_reason_carries_the_detail() -> None:
    item = make_item(Qa(), retries=2)
    after = transition(item, QaFail(max_retries=2, detail="test_login failed"), NOW)
    assert isinstance(after.stage, Blocked)
    assert "3" in after.stage.reason
    assert "test_login failed" in after.stage.reason


def test_three_rounds_of_qa_fail_with_max_two_end_blocked() -> None:
    item = make_item(Qa())
    for _ in range(2):
        item = transition(item, QaFail(max_retries=2), NOW)
        assert item.stage == Coding()
        item = transition(item, Submit(), NOW)
    item = transition(item, QaFail(max_retries=2), NOW)
    assert isinstance(item.stage, Blocked)
    assert item.retries == 3


@pytest.mark.parametrize(
    ("stage", "event"),
    [(Blocked(reason="x"), Unblock()), (Abandoned(reason="x"), Reopen())],
)
def test_unblock_and_reopen_give_a_fresh_retry_budget(stage: Stage, event: Event) -> None:
    after = transition(make_item(stage, retries=4), event, NOW)
    assert after.stage == Backlog()
    assert after.retries == 0


def test_other_transitions_keep_retries() -> None:
    assert transition(make_item(Coding(), retries=2), Submit(), NOW).retries == 2
    assert transition(make_item(Qa(), retries=2), Freeze(), NOW).retries == 2


# --- move ----------------------------------------------------------------------------------

EXPECTED_MOVES: dict[str, tuple[str, ...]] = {
    "backlog": ("coding",),
    "coding": ("qa", "merge", "done", "backlog"),
    "qa": ("merge", "done", "backlog"),
    "merge": ("done", "backlog"),
    "done-commit": ("archived",),
    "done-manual": ("archived",),
    "merge-failure": ("backlog",),
}


@pytest.mark.parametrize(("sid", "stage"), STAGES, ids=[sid for sid, _ in STAGES])
def test_allowed_moves(sid: str, stage: Stage) -> None:
    assert allowed_moves(stage) == EXPECTED_MOVES.get(sid, ())


def test_move_targets() -> None:
    assert MOVE_TARGETS == ("backlog", "coding", "qa", "merge", "done", "archived")


@pytest.mark.parametrize("target", ["frozen", "blocked", "QA", "", "closed"])
def test_move_to_an_unknown_stage_is_invalid(target: str) -> None:
    with pytest.raises(PipelineError, match="valid stages: backlog, coding, qa, merge, done"):
        Move(target)


def test_move_done_records_no_merge_commit() -> None:
    assert transition(make_item(Merge()), Move("done"), NOW).stage == Done(merge_commit=None)


# --- refusals and their messages -------------------------------------------------------------


def test_refusal_names_item_stage_and_event() -> None:
    with pytest.raises(TransitionError) as refused:
        transition(make_item(Coding()), Accept(), NOW)
    assert str(refused.value) == "#12 is in coding; cannot accept."
    assert refused.value.allowed == ("qa", "merge", "done", "backlog")


def test_refused_move_lists_where_the_item_can_go() -> None:
    with pytest.raises(TransitionError) as refused:
        transition(make_item(Coding()), Move("archived"), NOW)
    message = str(refused.value)
    assert message.startswith("#12 is in coding; cannot move to archived.")
    assert message.endswith("It can go to: qa, merge, done, backlog.")


def test_refused_move_from_a_stage_with_no_moves() -> None:
    with pytest.raises(TransitionError, match=r"#12 is in archived; .* cannot be moved\."):
        transition(make_item(Archived()), Move("backlog"), NOW)


def test_refusal_on_a_frozen_item_says_to_unfreeze() -> None:
    with pytest.raises(TransitionError, match=r"^#12 is in frozen; cannot start\. Unfreeze it"):
        transition(make_item(Frozen(resume_to=Backlog())), Start(), NOW)


def test_refusal_does_not_touch_the_item() -> None:
    item = make_item(Done(merge_commit="abc1234"))
    with pytest.raises(TransitionError):
        transition(item, Start(), NOW)
    assert item == make_item(Done(merge_commit="abc1234"))


def test_superseding_an_item_by_itself_is_refused() -> None:
    with pytest.raises(PipelineError, match="#12 cannot be superseded by itself"):
        transition(make_item(Coding()), Supersede(by=12), NOW)


FINISHED = [stage for _, stage in STAGES if isinstance(stage, Done | Archived)] + [
    Abandoned(reason="x"),
    Superseded(by=3),
    Rejected(reason="x"),
]


@pytest.mark.parametrize("stage", FINISHED, ids=repr)
def test_finished_stages_leave_only_by_accept_or_reopen(stage: Stage) -> None:
    leaves = []
    for label, (event, _, _) in TABLE.items():
        try:
            transition(make_item(stage), event, NOW)
        except TransitionError:
            continue
        leaves.append(label)
    if isinstance(stage, Done):
        assert leaves == ["accept", "move archived"]
    elif isinstance(stage, Archived):
        assert leaves == []
    else:
        assert leaves == ["reopen"]


# --- events ----------------------------------------------------------------------------------


def test_event_names() -> None:
    names = {label: event_name(event) for label, (event, _, _) in TABLE.items()}
    assert names == {label: label for label in TABLE}


@pytest.mark.parametrize(
    "build",
    [
        lambda: QaFail(max_retries=-1),
        lambda: QaFail(max_retries=True),
        lambda: Block(reason="  "),
        lambda: Hold(reason=""),
        lambda: Abandon(reason=""),
        lambda: Reject(reason=""),
        lambda: Supersede(by=0),
        lambda: Supersede(by=True),
        lambda: MergeFailed(kind="", reason="x"),
        lambda: MergeFailed(kind="conflict", reason=" "),
        lambda: Merged(merge_commit="two words"),
        lambda: Merged(merge_commit=""),
    ],
)
def test_invalid_events_cannot_be_built(build: Callable[[], Event]) -> None:
    with pytest.raises(PipelineError):
        build()


# --- property: any walk stays inside the table ------------------------------------------------


@given(st.lists(st.sampled_from(list(TABLE)), max_size=40))
def test_random_walks_only_produce_valid_items(labels: list[str]) -> None:
    item = make_item(Backlog())
    for step, label in enumerate(labels):
        event, sources, target = TABLE[label]
        before = item.stage
        try:
            item = transition(item, event, NOW + step)
        except TransitionError:
            assert type(before) not in sources
            continue
        assert type(before) in sources
        assert item.stage == target(before)
        assert item.updated_at == NOW + step
