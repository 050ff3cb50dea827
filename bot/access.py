"""Who may talk to the bot and who is an admin, per transport (I3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """``allowed`` empty means everyone in the transport's configured rooms.

    ``admins`` None means "nobody" except where ``everyone_admin`` (the web console, whose
    senders are the local operator unless ``admins`` is set).
    """

    allowed: frozenset[str] = frozenset()
    admins: frozenset[str] | None = None
    everyone_admin: bool = False

    @classmethod
    def build(
        cls, allowed: Iterable[str], admins: Iterable[str] | None, everyone_admin: bool = False
    ) -> AccessPolicy:
        return cls(
            frozenset(allowed),
            None if admins is None else frozenset(admins),
            everyone_admin and admins is None,
        )

    def allows(self, sender: str) -> bool:
        return not self.allowed or sender in self.allowed or self.is_admin(sender)

    def is_admin(self, sender: str) -> bool:
        if self.everyone_admin:
            return True
        return self.admins is not None and sender in self.admins


_OPEN = AccessPolicy()
"""The policy of a transport without a section: everyone, no admins."""


@dataclass(frozen=True, slots=True)
class AccessPolicies:
    """Each enabled transport's policy by name; a transport without one lets nobody admin."""

    by_transport: Mapping[str, AccessPolicy]

    @classmethod
    def from_settings(cls, sections: Mapping[str, TransportAccess]) -> AccessPolicies:
        """From the ``[transports.*]`` sections (the web console's senders are admins unless
        its ``admins`` is set)."""
        return cls({
            name: AccessPolicy.build(s.allowed_users, s.admins, everyone_admin=(name == "web"))
            for name, s in sections.items()
        })  # fmt: skip

    def of(self, transport: str) -> AccessPolicy:
        found = self.by_transport.get(transport)
        return _OPEN if found is None else found


class TransportAccess(Protocol):
    """The access keys of one ``[transports.<name>]`` section."""

    @property
    def allowed_users(self) -> Sequence[str]: ...

    @property
    def admins(self) -> Sequence[str] | None: ...
