"""``[http]``: the one HTTP server, and who may reach it (hosts, origins, timeouts)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from config.base import Secret, Section, is_loopback, located


class HttpConfig(Section):
    """``[http]``: the one HTTP server (web page, JSON API, webhooks, health)."""

    host: str = Field(default="127.0.0.1", description="Bind address; public needs a token")
    port: int = Field(default=8765, ge=0, le=65535, description="Bind port; 0 picks a free one")
    token: Secret = Field(default=None, description="Bearer token required on every /api call")
    max_body_bytes: int = Field(default=1_048_576, ge=1, description="Largest request body")
    public_hosts: list[str] = Field(
        default=[], description="Host names served besides loopback and the bound address"
    )
    allowed_origins: list[str] = Field(
        default=[], description="Origins besides the daemon's own that may post to /api"
    )
    read_timeout_s: float = Field(
        default=30.0, gt=0, description="A request's head or body must arrive within this"
    )
    max_streams_per_room: int = Field(
        default=32, ge=1, description="Open SSE streams per room or board; more get 429"
    )

    @field_validator("public_hosts")
    @classmethod
    def _bare_host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not host.strip() or any(c in host for c in "/@ "):
                raise ValueError(f"{host!r} is not a host name (write e.g. musher.example.org)")
        return [host.strip().lower() for host in hosts]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(f"{origin!r} is not an origin (write e.g. https://example.org)")
        return [origin.lower() for origin in origins]

    @model_validator(mode="after")
    def _public_bind_needs_token(self) -> HttpConfig:
        if self.token is None and not is_loopback(self.host):
            raise located([("host", "refusing to bind a non-loopback host without [http] token")])
        return self
