"""The peer benchmark's pure parts: tags, call-log analysis, the table, the fake LLM's log.

``make bench-peers`` installs and runs the peers; these tests need none of them.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from bench.peers.analysis import (
    Answer,
    Call,
    Run,
    Sent,
    Tag,
    max_concurrent,
    median_figures,
    room_name,
    summarise,
    table,
    tags_in,
)
from bench.peers.llm import FakeLlm, call_tags
from bench.peers.workloads import is_answer


def call(n: int, room: str | None, tags: set[str], start: float, end: float | None) -> Call:
    return Call(n=n, room=room, tags=frozenset(tags), start=start, end=end)


def test_tags_are_found_in_any_prompt_shape() -> None:
    text = "[alice] w1x2r0m1 please reply\n[alice] w1x2r0m12 please reply; w1r0m1 is no tag"
    assert tags_in(text) == [Tag("w1x2r0", 1), Tag("w1x2r0", 12)]
    assert room_name(3, 1, 17) == "w3x1r17"
    assert Tag("w3x1r17", 2).tag == "w3x1r17m2"


def test_a_call_belongs_to_the_room_of_its_last_user_message() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "w1x1r0m1 please reply"},
            {"role": "assistant", "content": "ANSWER 1 for w1x1r0"},
            {"role": "user", "content": [{"type": "text", "text": "w1x1r0m2 please reply"}]},
        ]
    }
    room, tags = call_tags(body)
    assert room == "w1x1r0"
    assert tags == {"w1x1r0m1", "w1x1r0m2"}
    assert call_tags({"messages": [{"role": "user", "content": "summarise this chat"}]}) == (
        None,
        frozenset(),
    )


def test_max_concurrent_counts_overlaps_not_touching_calls() -> None:
    calls = [
        call(1, "a", set(), 0.0, 2.0),
        call(2, "b", set(), 1.0, 3.0),
        call(3, "c", set(), 2.0, 4.0),  # starts as 1 ends: 2 open, not 3
        call(4, "d", set(), 3.5, None),  # never ended: open until the end of the run
    ]
    assert max_concurrent(calls, until=10.0) == 2
    assert max_concurrent([], until=1.0) == 0


def burst_run() -> Run:
    """A 5-message burst in one room; three calls; two answers, one before the last message."""
    sent = [Sent("w1x1r0", f"w1x1r0m{k}", 0.2 * (k - 1)) for k in range(1, 6)]
    calls = [
        call(1, "w1x1r0", {"w1x1r0m1"}, 0.1, 0.5),
        call(2, "w1x1r0", {"w1x1r0m1", "w1x1r0m2", "w1x1r0m3"}, 0.6, 2.6),
        call(3, "w1x1r0", {"w1x1r0m1", "w1x1r0m2", "w1x1r0m3", "w1x1r0m4"}, 2.7, 4.7),
        call(4, None, set(), 4.8, 5.0),  # the peer's housekeeping
    ]
    calls[1].cancelled = True
    answers = [Answer("w1x1r0", 0.5), Answer("w1x1r0", 4.8)]
    return Run(sent=sent, calls=calls, answers=answers, notices=[Answer("w1x1r0", 0.7)])


def test_summary_of_a_burst() -> None:
    figures = summarise(burst_run())
    assert figures["rooms"] == 1
    assert figures["messages"] == 5
    assert figures["llm_calls"] == 3
    assert figures["calls_per_room"] == 3.0
    assert figures["lost"] == 1  # m5 reached no call
    assert figures["answers_per_room"] == 2.0
    assert figures["notices_per_room"] == 1.0
    # the answer at 0.5 s came before the last message (0.8 s): the first after it is at 4.8
    assert figures["first_answer_s"] == 4.0
    assert figures["last_answer_s"] == 4.0
    assert figures["unanswered_rooms"] == 0
    assert figures["max_concurrent"] == 1
    assert figures["other_calls"] == 1
    assert figures["cancelled_calls"] == 1


def test_summary_over_rooms_takes_median_first_and_worst_last() -> None:
    rooms = [room_name(3, 1, i) for i in range(3)]
    sent = [Sent(r, f"{r}m1", 0.0) for r in rooms]
    calls = [call(i + 1, r, {f"{r}m1"}, 0.1, 2.1) for i, r in enumerate(rooms)]
    answers = [Answer(rooms[0], 2.0), Answer(rooms[1], 3.0), Answer(rooms[1], 9.0)]
    figures = summarise(Run(sent=sent, calls=calls, answers=answers))
    assert figures["calls_per_room"] == 1.0
    assert figures["calls_max"] == 1
    assert figures["lost"] == 0
    assert figures["first_answer_s"] == 2.5
    assert figures["last_answer_s"] == 9.0
    assert figures["unanswered_rooms"] == 1
    assert figures["max_concurrent"] == 3


def test_medians_skip_missing_values_and_any_timeout_counts() -> None:
    runs = [
        {"calls_per_room": 1.0, "first_answer_s": None, "timed_out": False},
        {"calls_per_room": 3.0, "first_answer_s": 2.0, "timed_out": True},
        {"calls_per_room": 2.0, "first_answer_s": 4.0, "timed_out": False},
    ]
    assert median_figures(runs) == {
        "calls_per_room": 2.0,
        "first_answer_s": 3.0,
        "timed_out": True,
    }
    assert median_figures([]) == {}


def test_table_has_a_row_per_system_and_workload() -> None:
    figures = summarise(burst_run())
    text = table([("nanobot 0.3.5", "W1", figures), ("musher-steer", "all", {"error": "no"})])
    lines = text.splitlines()
    assert lines[0].startswith("| system | workload | LLM calls per burst | lost |")
    assert lines[2] == "| nanobot 0.3.5 | W1 | 3 | 1 | 2 | 4 | 4 | 1 |"
    assert lines[3] == "| musher-steer | all | no | | | | | |"


def test_only_the_llm_text_is_an_answer() -> None:
    assert is_answer("ANSWER 3 for w1x1r0")
    assert not is_answer("⚡ Interrupting current task. I'll respond to your message shortly.")
    assert not is_answer("[progress] ANSWER 3 for w1x1r0")


async def test_fake_llm_answers_both_ways_and_logs_each_call() -> None:
    async with FakeLlm(latency_s=0.0) as llm, aiohttp.ClientSession() as http:
        url = llm.base_url + "/chat/completions"
        user = {"role": "user", "content": "w2x1r0m1 please reply"}
        async with http.post(url, json={"model": "m", "messages": [user]}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["choices"][0]["message"]["content"] == "ANSWER 1 for w2x1r0"
        stream = {"model": "m", "messages": [user], "stream": True}
        async with http.post(url, json=stream) as response:
            text = await response.text()
        assert "ANSWER 2 for w2x1r0" in text
        assert text.rstrip().endswith("data: [DONE]")
        async with http.get(llm.base_url + "/models") as response:
            assert (await response.json())["data"][0]["id"] == "fake-model"
        async with http.post(llm.base_url + "/responses", json={}) as response:
            assert response.status == 404
    assert [(c.n, c.room, set(c.tags), c.cancelled) for c in llm.calls] == [
        (1, "w2x1r0", {"w2x1r0m1"}, False),
        (2, "w2x1r0", {"w2x1r0m1"}, False),
    ]
    assert all(c.end is not None for c in llm.calls)
    assert llm.in_flight == 0
    assert llm.unknown == ["POST /v1/responses"]


async def test_fake_llm_marks_a_call_the_client_gave_up_on() -> None:
    async with FakeLlm(latency_s=0.5) as llm:
        started, ended = asyncio.Event(), asyncio.Event()
        llm.on_call = lambda call: started.set()
        llm.on_end = lambda call: ended.set()
        user = {"role": "user", "content": "w2x1r0m1 please reply"}
        body = {"model": "m", "messages": [user], "stream": True}
        async with aiohttp.ClientSession() as http:
            request = asyncio.create_task(http.post(llm.base_url + "/chat/completions", json=body))
            await started.wait()
            request.cancel()  # an interrupted turn: the client hangs up before the answer
            with contextlib.suppress(asyncio.CancelledError):
                await request
        await ended.wait()
    assert [(c.room, c.cancelled, c.end is not None) for c in llm.calls] == [("w2x1r0", True, True)]
