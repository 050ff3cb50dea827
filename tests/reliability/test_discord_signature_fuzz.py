"""R9/R12 for ``POST /webhooks/discord``: hypothesis over Ed25519 signature headers and
bodies against the real endpoint (in-process, real socket, clock pinned at ``NOW``).
Figures: 5xx = 0; forged or stale requests accepted = 0; correct ones accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from bot.commands.catalogue import build_registry
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_payloads import signed
from tests.reliability.webhook_routes import (
    FUZZ,
    NOW,
    Route,
    header_bytes,
    signatures,
    timestamps,
)
from transports.discord.interactions import Interactions
from transports.discord.verify import verify_key
from transports.discord.webhook import Endpoint

KEY = SigningKey.generate()
FAKE = FakeDiscord()  # only builds payloads here; never started


class DiscordRoute(Route):
    path = "/webhooks/discord"

    def mount(self) -> None:
        key = verify_key(KEY.verify_key.encode().hex())
        endpoint = Endpoint(key, self.metrics, 4096, lambda: NOW, self.track)
        endpoint.interactions = Interactions(build_registry(), self.hand_in, [], budget=0.2)
        endpoint.follow_up = lambda it: ignore
        endpoint.mount(self.app)


async def ignore(text: str, ephemeral: bool) -> None:
    return None


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[DiscordRoute, httpx.Client]]:
    with DiscordRoute() as route, httpx.Client(timeout=10) as client:
        yield route, client


def command(text: str) -> bytes:
    return json.dumps(
        FAKE.interaction("musher", [{"name": "line", "type": 3, "value": text}])
    ).encode()


bodies = st.one_of(st.binary(max_size=600), st.text(max_size=200).map(command))


@FUZZ
@given(ts=timestamps, sig=signatures, body=bodies)
def test_forged_headers_are_refused_without_a_5xx(
    served: tuple[DiscordRoute, httpx.Client], ts: bytes, sig: bytes, body: bytes
) -> None:
    route, client = served
    before = len(route.sink.messages)
    headers = {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": header_bytes(ts),
        "X-Signature-Ed25519": header_bytes(sig),
    }
    response = client.post(route.endpoint, content=body, headers=headers)
    assert response.status_code in (401, 413), response.text
    assert len(route.sink.messages) == before


@FUZZ
@given(
    skew=st.one_of(st.integers(301, 10**9), st.integers(-(10**9), -301)), text=st.text(max_size=50)
)
def test_correct_but_stale_signatures_are_refused(
    served: tuple[DiscordRoute, httpx.Client], skew: int, text: str
) -> None:
    route, client = served
    body = command(text)
    response = client.post(route.endpoint, content=body, headers=signed(KEY, body, NOW + skew))
    assert response.status_code == 401


@FUZZ
@given(skew=st.integers(-300, 300), text=st.text(max_size=100), junk=st.binary(max_size=300))
def test_fresh_correct_signatures_are_answered_and_junk_is_a_4xx(
    served: tuple[DiscordRoute, httpx.Client], skew: int, text: str, junk: bytes
) -> None:
    route, client = served
    body = command(text)
    response = client.post(route.endpoint, content=body, headers=signed(KEY, body, NOW + skew))
    assert response.status_code == 200 and response.json()["type"] in (4, 5)
    assert route.sink.messages[-1].event_id == f"i:{json.loads(body)['id']}"
    junk_answer = client.post(route.endpoint, content=junk, headers=signed(KEY, junk, NOW + skew))
    assert 200 <= junk_answer.status_code < 500


def test_ping_replay_and_counting(served: tuple[DiscordRoute, httpx.Client]) -> None:
    route, client = served
    ping = b'{"type": 1}'
    assert client.post(route.endpoint, content=ping, headers=signed(KEY, ping, NOW)).json() == {
        "type": 1
    }
    body = command("status")
    first = client.post(route.endpoint, content=body, headers=signed(KEY, body, NOW)).json()
    again = client.post(route.endpoint, content=body, headers=signed(KEY, body, NOW)).json()
    assert first["type"] in (4, 5)
    assert again["data"]["content"] == "This command was already received."
    assert sum(m.event_id == f"i:{json.loads(body)['id']}" for m in route.sink.messages) == 1
    before = route.metrics.webhook_rejected.values["discord"]
    other = SigningKey.generate()
    assert (
        client.post(route.endpoint, content=body, headers=signed(other, body, NOW)).status_code
        == 401
    )
    assert route.metrics.webhook_rejected.values["discord"] == before + 1
