"""Which rooms follow which project: who gets pipeline notifications and audit lines (E2, D4).

A room (session) follows exactly one project, its *active* one (its ``switch``, else the
default project), once it has shown interest in the pipeline:

* it ran ``switch`` (stored in the op log as ``room.set``: survives restarts), or
* it ran a pipeline command (``status``, ``new``, ``move``, ``timer``…, typed or called by
  the LLM on the room's behalf): noted in memory at once, and rebuilt at startup from the
  ingress journal's commands of the last week.

Rooms that never used the pipeline (a WhatsApp chat asking the LLM a question, a stranger)
get nothing. The index is one entry per such room, so it stays as small as the rooms.
"""

from __future__ import annotations

from bot.journal import Journal
from pipeline.engine import Engine


class Followers:
    """The rooms following each project, kept current by :meth:`note` and :meth:`load`."""

    def __init__(self, engine: Engine, journal: Journal) -> None:
        self._engine = engine
        self._journal = journal
        self._active: dict[str, str | None] = {}  # session → its switch (None: the default)
        self._read_to = 0  # the last journal row load/refresh read
        self.shared = False  # set when other daemons journal commands too (see refresh)

    def note(self, session: str, project: str) -> None:
        """``session`` just worked on ``project`` (its active project): it follows it now."""
        self._active[session] = None if project == self._engine.default_project else project

    def following(self, project: str) -> list[str]:
        """The sessions that follow ``project`` now, sorted."""
        default = self._engine.default_project
        return sorted(s for s, p in self._active.items() if (p or default) == project)

    def project_of(self, session: str) -> str | None:
        """The project ``session`` follows, or None if it follows none."""
        if session not in self._active:
            return None
        return self._active[session] or self._engine.default_project

    async def load(self) -> int:
        """Rebuild the index from the store's rooms and the journal's commands; idempotent.

        Returns how many rooms follow a project. Rooms noted since the last load are kept.
        """
        rooms = {room.session: room.project for room in await self._engine.store.rooms()}
        for session, project in rooms.items():
            if project is not None:
                self._active[session] = project
        sessions, self._read_to = await self._journal.command_rooms_after(0)
        for session in sessions:
            self._active.setdefault(session, rooms.get(session))
        return len(self._active)

    async def refresh(self) -> None:
        """When :attr:`shared` (several daemons on one store, K2): add the rooms that ran a
        command on any daemon since the last load or refresh, so this daemon tells them of
        its changes too. One read of the journal's new rows; nothing on one daemon, whose
        :meth:`note` already saw every command."""
        if not self.shared:
            return
        sessions, self._read_to = await self._journal.command_rooms_after(self._read_to)
        for session in sessions:
            if session not in self._active:
                room = await self._engine.store.room(session)
                self._active[session] = room.project if room is not None else None
