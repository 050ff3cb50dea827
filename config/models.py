"""The shape of bot.toml: one pydantic model per section, with defaults and cross-field checks.

Every model forbids unknown keys. Secrets are ``SecretStr``, so they never show up in
``repr``, logs or ``musher check``. Checks that involve several keys (an enabled transport
without its credentials, a public bind without a token) raise a *located* error: a
``PydanticCustomError`` of type ``LOCATED_ERROR`` whose context lists ``(key, problem)``
pairs relative to the model that raised it, so that the loader can point at each key.

Defaults are given as ``Field(default=...)`` (keyword, not positional): without the pydantic
mypy plugin, that is what lets mypy see that a field is optional in the constructor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.agents import AgentsConfig
from config.base import LOCATED_ERROR as LOCATED_ERROR
from config.base import Secret, Section, check_secret
from config.base import is_loopback as is_loopback
from config.base import located as _located
from config.http import HttpConfig

_URL = r"^https?://"
_NUMERIC_IDS = ConfigDict(coerce_numbers_to_str=True)
"""For tables of ids that people write as numbers (snowflakes, phone numbers): 123 -> "123"."""
_PROJECT_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_E164 = r"^\+[1-9][0-9]{1,14}$"
_SNOWFLAKE = r"^[0-9]{1,20}$"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
BusyMode = Literal["collect", "interrupt", "steer"]
ProviderName = Literal["auto", "claude-cli", "openai", "anthropic", "echo", "none"]
ToolAccess = Literal["commands", "ask", "project"]


class DaemonConfig(Section):
    """``[daemon]``: process-wide settings."""

    data_dir: Path = Field(default=Path(".musher"), description="Database and state directory")
    name: str = Field(default="musher", min_length=1, description="Bot name, stripped as mention")
    log_level: LogLevel = Field(default="INFO", description="Minimum level of log lines")
    shutdown_timeout_s: float = Field(default=10.0, gt=0, description="Graceful shutdown limit")
    reconcile_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between the pipeline subscribers' reconciles"
    )
    misfire_grace_s: float = Field(
        default=600.0, ge=0, description="A timer missed by up to this many seconds still fires"
    )
    notify_window_s: float = Field(
        default=1.0, ge=0, description="Pipeline notifications to a room merge over this window"
    )


class StoreConfig(Section):
    """[store]: where the state lives (K1) and the cluster's timings (K2, K3)."""

    url: str | None = Field(
        default=None,
        pattern=r"^(sqlite:///.+|postgres(ql)?://.+)$",
        description="sqlite:///<path> or postgresql://…; unset = <data_dir>/musher.db",
    )
    lease_ttl_s: float = Field(default=15.0, gt=0, description="Seconds a lease lasts")
    claim_ttl_s: float = Field(default=120.0, gt=0, description="Seconds a build claim lasts")
    trusted_keys: list[str] = Field(default=[], description="Node keys whose ops are accepted")

    @field_validator("trusted_keys")
    @classmethod
    def _hex_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if not re.fullmatch(r"[0-9a-f]{64}", key):
                raise ValueError(f"{key!r} is not a public key (64 lowercase hex digits)")
        return keys


class AccessConfig(Section):
    """``[access]``: how unknown senders are treated."""

    reply_to_strangers: bool = Field(default=False, description="One refusal per stranger a day")


class DispatcherConfig(Section):
    """``[dispatcher]``: coalescing of free text into LLM turns."""

    coalesce_window_ms: int = Field(default=1500, ge=0, description="Quiet time closing a batch")
    max_wait_ms: int = Field(default=7500, ge=0, description="Longest a batch ever waits")
    coalesce_quiet_ms: int = Field(
        default=300, ge=0, description="Quiet time closing a batch where typing is reported"
    )
    busy_mode: BusyMode = Field(default="collect", description="Messages during a turn")
    queue_cap: int = Field(default=50, ge=1, description="Queued messages per room before folding")
    idle_session_ttl_s: float = Field(default=600.0, gt=0, description="Idle room lifetime")

    @model_validator(mode="after")
    def _wait_covers_window(self) -> DispatcherConfig:
        if self.max_wait_ms < self.coalesce_window_ms:
            problem = f"must be >= coalesce_window_ms ({self.coalesce_window_ms})"
            raise _located([("max_wait_ms", problem)])
        return self


class ClaudeCliConfig(Section):
    """``[llm.claude_cli]``: the ``claude`` command-line provider."""

    command: list[str] = Field(default=["claude"], min_length=1, description="Program to run")
    args: list[str] = Field(default=[], description="Extra arguments for every call")
    env: dict[str, str] = Field(default={}, description="Extra environment variables")
    model: str | None = Field(default=None, description="Model; unset = the CLI's default")


class OpenAIConfig(Section):
    """``[llm.openai]``: any OpenAI-compatible chat completions API."""

    base_url: str = Field(default="https://api.openai.com/v1", pattern=_URL, description="API URL")
    model: str = Field(default="gpt-4o-mini", description="Model name")
    api_key: Secret = Field(default=None, description="API key (unset for local servers)")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds per HTTP request")
    max_retries: int = Field(default=3, ge=0, description="Retries on 429 and 5xx")


class AnthropicConfig(Section):
    """``[llm.anthropic]``: the Anthropic Messages API."""

    base_url: str = Field(default="https://api.anthropic.com", pattern=_URL, description="API URL")
    model: str = Field(default="claude-sonnet-4-5", description="Model name")
    api_key: Secret = Field(default=None, description="API key")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds per HTTP request")
    max_retries: int = Field(default=3, ge=0, description="Retries on 429 and 5xx")
    max_tokens: int = Field(default=4096, ge=1, description="Largest answer per request")


class EchoConfig(Section):
    """``[llm.echo]``: the built-in echo provider for tests and demos."""

    delay_s: float = Field(default=0.0, ge=0, description="Seconds each echo turn takes")


class LlmConfig(Section):
    """``[llm]``: which provider answers free text, and its limits."""

    provider: ProviderName = Field(default="auto", description="Which LLM answers free text")
    history_size: int = Field(default=20, ge=0, description="Past turns kept per room")
    turn_timeout_s: float = Field(default=600.0, gt=0, description="Seconds before a turn dies")
    tools: ToolAccess = Field(
        default="commands",
        description="commands = musher's only; ask = also file and shell tools in the project,"
        " each use approved in the room; project = ask, with reading files pre-allowed",
    )
    permission_timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds a tool use waits for approval before denied"
    )
    claude_cli: ClaudeCliConfig = Field(default_factory=ClaudeCliConfig, description="claude CLI")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="OpenAI-compatible")
    anthropic: AnthropicConfig = Field(default_factory=AnthropicConfig, description="Anthropic")
    echo: EchoConfig = Field(default_factory=EchoConfig, description="echo provider")


class ProjectEntry(Section):
    """One ``[[projects.entry]]``: a project registered at startup unless it exists."""

    name: str = Field(pattern=_PROJECT_NAME, description="Project name")
    path: Path | None = Field(default=None, description="Its directory; relative to root")
    remote: str | None = Field(default=None, max_length=2048, description="Git remote URL")


class ProjectsConfig(Section):
    """``[projects]``: where projects live and how they run."""

    root: Path = Field(default=Path("projects"), description="Where new projects are created")
    default: str | None = Field(
        default=None, pattern=_PROJECT_NAME, description="Default project; unset = current dir"
    )
    timezone: str = Field(default="UTC", description="IANA time zone for HH:MM timers")
    sandbox: Literal["none", "bwrap", "docker", "podman"] = Field(
        default="none", description="Where gates and agents run project code"
    )
    sandbox_network: bool = Field(default=True, description="Network inside the sandbox")
    git_user_name: str | None = Field(
        default=None, max_length=200, description="Author of a new project's first commit"
    )
    git_user_email: str | None = Field(default=None, max_length=200, description="Its email")
    entry: list[ProjectEntry] = Field(default=[], description="Projects registered at startup")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class TransportConfig(Section):
    """Keys every ``[transports.*]`` table has."""

    enabled: bool = Field(default=False, description="Run this transport")
    allowed_users: list[str] = Field(default=[], description="Who may talk; empty = everyone")
    admins: list[str] | None = Field(default=None, description="Who may run admin commands")

    def _missing(self, section: str, keys: list[str]) -> list[tuple[str, str]]:
        """Return a problem for every dotted key of ``keys`` that is unset."""
        problem = f"required when [transports.{section}] is enabled"
        return [(key, problem) for key in keys if _lookup(self, key) is None]


def _lookup(model: BaseModel, dotted: str) -> object:
    value: object = model
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


class WebConfig(TransportConfig):
    """``[transports.web]``: the daemon's own page; its senders are admins unless ``admins``.

    Without ``users`` the console is one operator and a name typed on the page grants no
    rights, so ``admins`` and ``allowed_users`` may only name configured ``users``.
    """

    enabled: bool = Field(default=True, description="Serve the web page and chat box")
    users: dict[str, SecretStr] = Field(
        default={}, description="Web user name -> token (or sha256:<hex> of it)"
    )

    @field_validator("users")
    @classmethod
    def _users(cls, users: dict[str, SecretStr]) -> dict[str, SecretStr]:
        seen: set[str] = set()
        for name, token in users.items():
            if not _USER_NAME.fullmatch(name):
                raise ValueError(f"{name!r}: user names are 1-64 characters of A-Z a-z 0-9 . _ -")
            check_secret(token)
            if token.get_secret_value() in seen:
                raise ValueError(f"{name!r}: two users have the same token")
            seen.add(token.get_secret_value())
        return users

    @model_validator(mode="after")
    def _names_are_users(self) -> WebConfig:
        problems = [
            (key, f"{name!r} is not in [transports.web] users (typed names grant nothing)")
            for key, names in (("admins", self.admins or []), ("allowed_users", self.allowed_users))
            for name in names
            if name not in self.users
        ]
        if problems:
            raise _located(problems)
        return self


class MatrixConfig(TransportConfig):
    """``[transports.matrix]``: a Matrix account (matrix-nio)."""

    homeserver: str | None = Field(default=None, pattern=_URL, description="Homeserver URL")
    user_id: str | None = Field(default=None, description="Bot user id, @musher:example.org")
    password: Secret = Field(default=None, description="Login password (or access_token)")
    access_token: Secret = Field(default=None, description="Access token (or password)")
    device_name: str = Field(default="musher", description="Device name of the login")
    rooms: list[str] = Field(default=[], description="Room ids or aliases to serve")
    encryption: bool = Field(
        default=False, description="Read and write encrypted rooms (needs the musher[e2e] extra)"
    )

    @model_validator(mode="after")
    def _credentials(self) -> MatrixConfig:
        if self.enabled:
            problems = self._missing("matrix", ["homeserver", "user_id"])
            if self.password is None and self.access_token is None:
                either = "password or access_token is required when [transports.matrix] is enabled"
                problems.append(("password", either))
            if problems:
                raise _located(problems)
        return self


class SlackConfig(TransportConfig):
    """``[transports.slack]``: a Slack app over Socket Mode or HTTP (slack-bolt)."""

    mode: Literal["socket", "http"] = Field(default="socket", description="How events arrive")
    bot_token: Secret = Field(default=None, description="Bot token (xoxb-...)")
    app_token: Secret = Field(default=None, description="App token for socket mode (xapp-...)")
    signing_secret: Secret = Field(default=None, description="Signing secret for http mode")
    channels: list[str] = Field(default=[], description="Channel ids; empty = where invited")
    command: str = Field(default="/musher", pattern=r"^/\S+$", description="Slash command")
    api_base_url: str = Field(
        default="https://slack.com/api/", pattern=_URL, description="Web API base URL"
    )

    @model_validator(mode="after")
    def _credentials(self) -> SlackConfig:
        if self.enabled:
            second = "signing_secret" if self.mode == "http" else "app_token"
            if problems := self._missing("slack", ["bot_token", second]):
                raise _located(problems)
        return self


class DiscordConfig(TransportConfig):
    """``[transports.discord]``: a Discord bot (discord.py)."""

    model_config = _NUMERIC_IDS

    bot_token: Secret = Field(default=None, description="Bot token")
    application_id: str | None = Field(
        default=None, pattern=_SNOWFLAKE, description="Application id; unset = learnt at login"
    )
    public_key: str | None = Field(default=None, description="Key for the interactions endpoint")
    guilds: list[Annotated[str, Field(pattern=_SNOWFLAKE)]] = Field(
        default=[], description="Guild ids to register commands in"
    )
    channels: list[Annotated[str, Field(pattern=_SNOWFLAKE)]] = Field(
        default=[], description="Channel ids to serve"
    )
    api_base_url: str = Field(
        default="https://discord.com/api/v10", pattern=_URL, description="REST API base URL"
    )
    gateway_url: str | None = Field(
        default=None, pattern=r"^wss?://", description="Gateway URL; unset = Discord's"
    )

    @field_validator("public_key")
    @classmethod
    def _ed25519_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be the application's public key: 64 hexadecimal digits")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> DiscordConfig:
        if self.enabled and (problems := self._missing("discord", ["bot_token"])):
            raise _located(problems)
        return self


class WhatsAppMetaConfig(Section):
    """``[transports.whatsapp.meta]``: the Meta WhatsApp Cloud API."""

    model_config = _NUMERIC_IDS

    access_token: Secret = Field(default=None, description="Graph API access token")
    phone_number_id: str | None = Field(
        default=None, pattern=_SNOWFLAKE, description="Sending phone number id"
    )
    app_secret: Secret = Field(default=None, description="Secret for X-Hub-Signature-256")
    verify_token: Secret = Field(default=None, description="Token for the GET handshake")
    graph_base_url: str = Field(
        default="https://graph.facebook.com", pattern=_URL, description="Graph API base URL"
    )
    api_version: str = Field(default="v21.0", pattern=r"^v[0-9]+\.[0-9]+$", description="Version")


class WhatsAppTwilioConfig(Section):
    """``[transports.whatsapp.twilio]``: WhatsApp through Twilio."""

    account_sid: str | None = Field(default=None, description="Account SID")
    auth_token: Secret = Field(default=None, description="Auth token; also verifies webhooks")
    from_number: str | None = Field(
        default=None, pattern=r"^whatsapp:\+[1-9][0-9]{1,14}$", description="Sender number"
    )
    api_base_url: str = Field(default="https://api.twilio.com", pattern=_URL, description="API")
    public_url: str | None = Field(
        default=None, pattern=_URL, description="Webhook URL as Twilio signs it"
    )


class WhatsAppConfig(TransportConfig):
    """``[transports.whatsapp]``: WhatsApp through Meta or Twilio."""

    model_config = _NUMERIC_IDS

    provider: Literal["meta", "twilio"] = Field(default="meta", description="Which API to use")
    allowed_numbers: list[Annotated[str, Field(pattern=_E164)]] = Field(
        default=[], description="Senders served (E.164); empty = all"
    )
    meta: WhatsAppMetaConfig = Field(default_factory=WhatsAppMetaConfig, description="Meta")
    twilio: WhatsAppTwilioConfig = Field(default_factory=WhatsAppTwilioConfig, description="Twilio")

    @model_validator(mode="after")
    def _credentials(self) -> WhatsAppConfig:
        if self.enabled:
            if self.provider == "meta":
                keys = ["access_token", "phone_number_id", "app_secret", "verify_token"]
            else:
                keys = ["account_sid", "auth_token", "from_number"]
            dotted = [f"{self.provider}.{key}" for key in keys]
            if problems := self._missing("whatsapp", dotted):
                raise _located(problems)
        return self


class TransportsConfig(Section):
    """``[transports]``: one table per chat protocol; several may run at once."""

    web: WebConfig = Field(default_factory=WebConfig, description="Local web page")
    matrix: MatrixConfig = Field(default_factory=MatrixConfig, description="Matrix")
    slack: SlackConfig = Field(default_factory=SlackConfig, description="Slack")
    discord: DiscordConfig = Field(default_factory=DiscordConfig, description="Discord")
    whatsapp: WhatsAppConfig = Field(default_factory=WhatsAppConfig, description="WhatsApp")


class Settings(BaseSettings):
    """The whole configuration: bot.toml overridden by ``MUSHER_<SECTION>__<KEY>`` variables.

    Build it with ``config.load_settings``, which reads the file and an explicit environment
    and turns every validation error into one readable line. ``Settings()`` on its own reads
    only ``os.environ`` (no file). Note that ``Settings.model_validate`` also reads
    ``os.environ``: pydantic-settings runs its sources from ``__init__``.
    """

    model_config = SettingsConfigDict(
        env_prefix="MUSHER_", env_nested_delimiter="__", env_ignore_empty=True, extra="forbid"
    )

    daemon: DaemonConfig = Field(default_factory=DaemonConfig, description="Process")
    http: HttpConfig = Field(default_factory=HttpConfig, description="HTTP server")
    access: AccessConfig = Field(default_factory=AccessConfig, description="Access control")
    dispatcher: DispatcherConfig = Field(default_factory=DispatcherConfig, description="Batching")
    llm: LlmConfig = Field(default_factory=LlmConfig, description="LLM provider")
    store: StoreConfig = Field(default_factory=StoreConfig, description="State backend")
    projects: ProjectsConfig = Field(default_factory=ProjectsConfig, description="Projects")
    agents: AgentsConfig = Field(default_factory=AgentsConfig, description="Coding agents")
    transports: TransportsConfig = Field(default_factory=TransportsConfig, description="Chats")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then ``os.environ``; no dotenv or secret files."""
        return init_settings, env_settings
