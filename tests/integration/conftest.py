from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.synapse import Human, Synapse, SynapseMissing, start_synapse, unique


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """One real Synapse for the session (installed on first use; CI=true fails without it)."""
    try:
        with start_synapse(tmp_path_factory.mktemp("synapse")) as hs:
            yield hs
    except SynapseMissing as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Synapse is not available: {err}")


@pytest.fixture
async def alice(synapse: Synapse) -> AsyncIterator[Human]:
    """A fresh person on the session's Synapse, with a real nio client."""
    human = Human(synapse, unique("alice"))
    yield human
    await human.close()
