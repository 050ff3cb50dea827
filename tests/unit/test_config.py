"""bot.toml and MUSHER_* variables: defaults, precedence, friendly errors, redaction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from config import Settings, config_path, load_settings, render_effective
from config.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "bot.toml.example"
SLACK_HTTP = """
[transports.slack]
enabled = true
mode = "http"
bot_token = "xoxb-1"
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so files are labelled ``bot.toml`` as users see them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(text: str, name: str = "bot.toml") -> Path:
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env or {})
    return caught.value.problems


# --- defaults and precedence -------------------------------------------------------------


def test_without_a_file_the_builtin_defaults_apply() -> None:
    settings = load_settings(None, {})

    assert settings.daemon.data_dir == Path(".musher")
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8765
    assert settings.http.token is None
    assert settings.dispatcher.coalesce_window_ms == 1500
    assert settings.dispatcher.max_wait_ms == 7500
    assert settings.llm.provider == "auto"
    assert settings.llm.claude_cli.command == ["claude"]
    assert settings.agents.profiles()[0].command[:2] == ["claude", "-p"]
    assert settings.transports.web.enabled
    assert not any(
        transport.enabled
        for transport in (
            settings.transports.matrix,
            settings.transports.slack,
            settings.transports.discord,
            settings.transports.whatsapp,
        )
    )


def test_a_given_environment_is_used_instead_of_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MUSHER_HTTP__PORT", "9999")

    assert load_settings(None, {}).http.port == 8765
    assert load_settings(None).http.port == 9999


def test_the_file_overrides_the_defaults(in_tmp: Path) -> None:
    path = write_config('[http]\nport = 9000\n\n[llm.claude_cli]\nmodel = "opus"\n')

    settings = load_settings(path, {})

    assert settings.http.port == 9000
    assert settings.http.host == "127.0.0.1"
    assert settings.llm.claude_cli.model == "opus"
    assert settings.llm.claude_cli.command == ["claude"]


def test_the_environment_overrides_one_nested_key_and_keeps_the_others(in_tmp: Path) -> None:
    path = write_config(SLACK_HTTP + 'signing_secret = "file-secret"\n[llm]\nhistory_size = 5\n')
    env = {
        "MUSHER_TRANSPORTS__SLACK__BOT_TOKEN": "xoxb-env",
        "MUSHER_LLM__CLAUDE_CLI__MODEL": "haiku",
        "MUSHER_HTTP__PORT": "0",
    }

    settings = load_settings(path, env)

    slack = settings.transports.slack
    assert slack.bot_token is not None
    assert slack.bot_token.get_secret_value() == "xoxb-env"
    assert slack.signing_secret is not None
    assert slack.signing_secret.get_secret_value() == "file-secret"
    assert slack.mode == "http"
    assert settings.llm.claude_cli.model == "haiku"
    assert settings.llm.history_size == 5
    assert settings.http.port == 0


def test_list_and_table_values_in_the_environment_are_json() -> None:
    env = {
        "MUSHER_PROJECTS__ENTRY": '[{"name": "app"}]',
        "MUSHER_LLM__CLAUDE_CLI__ENV": '{"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}',
    }

    settings = load_settings(None, env)

    assert [e.name for e in settings.projects.entry] == ["app"]
    assert settings.llm.claude_cli.env == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}


def test_musher_config_and_empty_variables_are_not_settings() -> None:
    env = {"MUSHER_CONFIG": "elsewhere.toml", "MUSHER_HTTP__TOKEN": ""}

    assert load_settings(None, env).http.token is None


# --- choosing the file -------------------------------------------------------------------


def test_an_explicit_path_wins_over_musher_config(in_tmp: Path) -> None:
    write_config("", "bot.toml")
    write_config("", "other.toml")
    write_config("", "explicit.toml")

    assert config_path("explicit.toml", {"MUSHER_CONFIG": "other.toml"}) == Path("explicit.toml")
    assert config_path(None, {"MUSHER_CONFIG": "other.toml"}) == Path("other.toml")
    assert config_path(None, {}) == Path("bot.toml")


def test_without_any_file_there_is_no_path(in_tmp: Path) -> None:
    assert config_path(None, {}) is None


def test_a_missing_explicit_file_is_refused(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: no such file \(given with --config\)"):
        config_path("missing.toml", {})


def test_a_missing_musher_config_file_is_refused(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"gone\.toml: no such file \(named by \$MUSHER_CONFIG\)"):
        config_path(None, {"MUSHER_CONFIG": "gone.toml"})


# --- friendly errors ---------------------------------------------------------------------


def test_an_unknown_key_gets_a_did_you_mean_hint(in_tmp: Path) -> None:
    path = write_config("[dispatcher]\ncoalesce_window = 1000\n")

    assert problems_of(path) == [
        "bot.toml: dispatcher.coalesce_window: unknown key (did you mean 'coalesce_window_ms'?)"
    ]


def test_an_unknown_key_without_a_close_match_gets_no_hint(in_tmp: Path) -> None:
    path = write_config("[transports.web]\ncolour = 'blue'\n")

    assert problems_of(path) == ["bot.toml: transports.web.colour: unknown key"]


def test_an_unknown_section_in_the_environment_is_reported() -> None:
    problems = problems_of(None, {"MUSHER_DISPATCHR__QUEUE_CAP": "3"})

    assert problems == [
        "environment: dispatchr: unknown key (did you mean 'dispatcher'?)"
        " (from MUSHER_DISPATCHR__QUEUE_CAP)"
    ]


def test_a_wrong_type_names_the_key(in_tmp: Path) -> None:
    path = write_config('[http]\nport = "eighty"\n')

    [problem] = problems_of(path)

    assert problem.startswith("bot.toml: http.port: Input should be a valid integer")


def test_every_problem_is_reported_at_once(in_tmp: Path) -> None:
    path = write_config(
        '[http]\nport = 70000\n[dispatcher]\nbusy_mode = "panic"\n'
        '[projects]\ntimezone = "Mars/Olympus"\n[agents]\nmerge_on = 1\nmax_agentz = 3\n'
    )

    problems = problems_of(path, {"MUSHER_LLM__TURN_TIMEOUT_S": "soon"})

    assert [problem.split(": ")[1] for problem in problems] == [
        "http.port",
        "dispatcher.busy_mode",
        "llm.turn_timeout_s",
        "projects.timezone",
        "agents.merge_on",
        "agents.max_agentz",
    ]
    assert problems[2].startswith("environment: llm.turn_timeout_s: ")
    assert "bot.toml: projects.timezone: unknown time zone 'Mars/Olympus'" in problems


def test_list_items_and_tables_of_the_wrong_shape_are_located(in_tmp: Path) -> None:
    path = write_config('http = 8080\n[[agents.profile]]\nname = "fast"\ncommand = ["claude", 3]\n')

    assert problems_of(path) == [
        "bot.toml: http: should be a table",
        "bot.toml: agents.profile[0].command[1]: Input should be a valid string",
    ]


def test_numeric_ids_may_be_written_as_numbers(in_tmp: Path) -> None:
    path = write_config(
        "[transports.discord]\napplication_id = 1234567890123\nguilds = [42]\n"
        "[transports.whatsapp.meta]\nphone_number_id = 555\n"
    )

    settings = load_settings(path, {})

    assert settings.transports.discord.application_id == "1234567890123"
    assert settings.transports.discord.guilds == ["42"]
    assert settings.transports.whatsapp.meta.phone_number_id == "555"


def test_invalid_toml_is_reported_with_its_line(in_tmp: Path) -> None:
    path = write_config("[http]\nport = 80\nhost = \n")

    [problem] = problems_of(path)

    assert re.fullmatch(r"bot\.toml: line 3, column \d+: invalid TOML: .+", problem)


def test_invalid_json_in_a_variable_names_the_variable() -> None:
    [problem] = problems_of(None, {"MUSHER_TRANSPORTS__WEB__ALLOWED_USERS": "alice"})

    assert problem.startswith(
        "environment: transports.web.allowed_users: invalid JSON in"
        " MUSHER_TRANSPORTS__WEB__ALLOWED_USERS"
    )


@pytest.mark.parametrize("token", ["", "   ", "\\t"])
def test_an_empty_or_blank_secret_is_refused(in_tmp: Path, token: str) -> None:
    path = write_config(f'[http]\ntoken = "{token}"\n')

    assert problems_of(path) == [
        "bot.toml: http.token: must not be empty or only spaces (leave the key out instead)"
    ]


def test_a_blank_web_user_token_is_refused(in_tmp: Path) -> None:
    path = write_config('[transports.web]\nusers = { alice = "  " }\n')

    [problem] = problems_of(path)
    assert problem.startswith("bot.toml: transports.web.users: ")
    assert "must not be empty or only spaces" in problem


def test_web_admins_must_be_configured_users(in_tmp: Path) -> None:
    path = write_config('[transports.web]\nadmins = ["boss"]\n')

    assert problems_of(path) == [
        "bot.toml: transports.web.admins: 'boss' is not in [transports.web] users"
        " (typed names grant nothing)"
    ]


def test_web_users_with_their_admins_load(in_tmp: Path) -> None:
    path = write_config(
        '[transports.web]\nusers = { boss = "tok-boss-1", ann = "sha256:' + "ab" * 32 + '" }\n'
        'admins = ["boss"]\nallowed_users = ["boss", "ann"]\n'
    )

    web = load_settings(path, {}).transports.web
    assert web.admins == ["boss"] and sorted(web.users) == ["ann", "boss"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("public_hosts", '["https://x.org"]'), ("allowed_origins", '["x.org"]')],
)
def test_hosts_and_origins_are_checked(in_tmp: Path, key: str, value: str) -> None:
    [problem] = problems_of(write_config(f"[http]\n{key} = {value}\n"))

    assert problem.startswith(f"bot.toml: http.{key}: ")


def test_max_wait_must_cover_the_coalesce_window(in_tmp: Path) -> None:
    path = write_config("[dispatcher]\ncoalesce_window_ms = 2000\nmax_wait_ms = 1000\n")

    assert problems_of(path) == [
        "bot.toml: dispatcher.max_wait_ms: must be >= coalesce_window_ms (2000)"
    ]


# --- cross-key rules ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org", ""])
def test_a_public_host_without_a_token_is_refused(in_tmp: Path, host: str) -> None:
    path = write_config(f'[http]\nhost = "{host}"\n')

    assert problems_of(path) == [
        "bot.toml: http.host: refusing to bind a non-loopback host without [http] token"
    ]


def test_a_public_host_set_from_the_environment_is_blamed_on_it() -> None:
    assert problems_of(None, {"MUSHER_HTTP__HOST": "0.0.0.0"}) == [
        "environment: http.host: refusing to bind a non-loopback host without [http] token"
    ]


def test_a_public_host_with_a_token_is_accepted(in_tmp: Path) -> None:
    path = write_config('[http]\nhost = "0.0.0.0"\ntoken = "s3cret"\n')

    assert load_settings(path, {}).http.host == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_token(host: str) -> None:
    assert load_settings(None, {"MUSHER_HTTP__HOST": host}).http.host == host


def test_slack_http_mode_without_signing_secret_is_refused(in_tmp: Path) -> None:
    path = write_config(SLACK_HTTP)

    assert problems_of(path) == [
        "bot.toml: transports.slack.signing_secret: required when [transports.slack] is enabled"
    ]


def test_slack_socket_mode_needs_both_tokens(in_tmp: Path) -> None:
    path = write_config("[transports.slack]\nenabled = true\n")

    assert problems_of(path) == [
        "bot.toml: transports.slack.bot_token: required when [transports.slack] is enabled",
        "bot.toml: transports.slack.app_token: required when [transports.slack] is enabled",
    ]


def test_a_disabled_transport_needs_no_credentials(in_tmp: Path) -> None:
    path = write_config('[transports.slack]\nmode = "http"\n')

    assert not load_settings(path, {}).transports.slack.enabled


def test_an_enabled_transport_with_credentials_from_the_environment_loads(in_tmp: Path) -> None:
    path = write_config(SLACK_HTTP)

    settings = load_settings(path, {"MUSHER_TRANSPORTS__SLACK__SIGNING_SECRET": "shh"})

    assert settings.transports.slack.enabled


@pytest.mark.parametrize(
    ("table", "missing"),
    [
        ("[transports.matrix]\nenabled = true\n", ["homeserver", "user_id", "password"]),
        ("[transports.discord]\nenabled = true\n", ["bot_token"]),
        (
            "[transports.whatsapp]\nenabled = true\n",
            [
                "meta.access_token",
                "meta.phone_number_id",
                "meta.app_secret",
                "meta.verify_token",
            ],
        ),
        (
            '[transports.whatsapp]\nenabled = true\nprovider = "twilio"\n',
            ["twilio.account_sid", "twilio.auth_token", "twilio.from_number"],
        ),
    ],
)
def test_enabled_transports_name_each_missing_credential(
    in_tmp: Path, table: str, missing: list[str]
) -> None:
    path = write_config(table)
    section = table.split("]")[0].lstrip("[")

    keys = [problem.split(": ")[1] for problem in problems_of(path)]

    assert keys == [f"{section}.{key}" for key in missing]


def test_matrix_accepts_an_access_token_instead_of_a_password(in_tmp: Path) -> None:
    path = write_config(
        "[transports.matrix]\nenabled = true\nhomeserver = 'http://127.0.0.1:8008'\n"
        "user_id = '@bot:localhost'\naccess_token = 'syt_x'\n"
    )

    assert load_settings(path, {}).transports.matrix.enabled


# --- redaction and rendering -------------------------------------------------------------


def test_secrets_never_appear_in_repr_str_or_the_rendering() -> None:
    env = {
        "MUSHER_HTTP__TOKEN": "tok-AAAA",
        "MUSHER_TRANSPORTS__DISCORD__BOT_TOKEN": "disc-BBBB",
        "MUSHER_LLM__OPENAI__API_KEY": "sk-CCCC",
    }

    settings = load_settings(None, env)
    rendered = render_effective(settings)

    for text in (repr(settings), str(settings), rendered, settings.model_dump_json()):
        for secret in ("tok-AAAA", "disc-BBBB", "sk-CCCC"):
            assert secret not in text
    assert 'token = "**********"' in rendered
    assert 'api_key = "**********"' in rendered
    assert "# access_token is not set" in rendered


def test_the_rendering_reads_back_to_equal_settings(in_tmp: Path) -> None:
    path = write_config(
        '[daemon]\nname = "Büro \\"bot\\""\nlog_level = "DEBUG"\n'
        '[http]\nport = 0\n[dispatcher]\nbusy_mode = "interrupt"\nidle_session_ttl_s = 0.5\n'
        '[llm.claude_cli]\nargs = ["--x", "tab\\there"]\nenv = { "A.B" = "1", PLAIN = "2" }\n'
        '[projects]\ndefault = "myapp"\ntimezone = "Europe/London"\n'
        '[[projects.entry]]\nname = "api"\nremote = "git@example.org:me/api.git"\n'
        '[transports.web]\nadmins = []\n[transports.whatsapp]\nallowed_numbers = ["+4477"]\n'
    )
    settings = load_settings(path, {})

    again = load_settings(write_config(render_effective(settings), "rendered.toml"), {})

    assert again == settings
    assert again.llm.claude_cli.env == {"A.B": "1", "PLAIN": "2"}
    assert [entry.name for entry in again.projects.entry] == ["api"]


def test_the_rendering_has_every_table() -> None:
    rendered = render_effective(load_settings(None, {}))

    headers = re.findall(r"^\[(.+)\]$", rendered, flags=re.MULTILINE)
    assert headers == [
        "daemon",
        "http",
        "access",
        "dispatcher",
        "llm",
        "llm.claude_cli",
        "llm.openai",
        "llm.anthropic",
        "llm.echo",
        "store",
        "projects",
        "agents",
        "transports.web",
        "transports.matrix",
        "transports.slack",
        "transports.discord",
        "transports.whatsapp",
        "transports.whatsapp.meta",
        "transports.whatsapp.twilio",
    ]


def test_the_store_url_is_shown_with_its_password_redacted(in_tmp: Path) -> None:
    url = "postgresql://musher:hunter2@db.internal:5432/musher"
    settings = load_settings(write_config(f'[store]\nurl = "{url}"\n'), {})

    rendered = render_effective(settings)

    assert settings.store.url == url
    assert "hunter2" not in rendered
    assert 'url = "postgresql://musher:***@db.internal:5432/musher"' in rendered
    assert "lease_ttl_s = 15.0" in rendered and "claim_ttl_s = 120.0" in rendered


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('url = "mysql://x"', "store.url"),
        ('trusted_keys = ["abc"]', "store.trusted_keys"),
        ("lease_ttl_s = 0", "store.lease_ttl_s"),
    ],
)
def test_a_bad_store_setting_is_named(in_tmp: Path, toml: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(f"[store]\n{toml}\n"), {})
    assert problem in str(caught.value)


# --- bot.toml.example --------------------------------------------------------------------

COMMENTED_KEY = re.compile(r"^# ([a-z_]+) = (.*)$")


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= model_keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def uncommented_example(*, with_examples: bool) -> str:
    lines = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = COMMENTED_KEY.match(line)
        if match and (with_examples or not match[2].endswith("# example")):
            line = line.removeprefix("# ")
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_example_lists_every_key_once_in_its_section() -> None:
    listed: list[str] = []
    section = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if header := re.fullmatch(r"\[(.+)\]", line):
            section = header[1]
        elif match := COMMENTED_KEY.match(line):
            listed.append(f"{section}.{match[1]}")

    assert sorted(listed) == sorted(model_keys(Settings))


def test_the_example_loads_as_it_is(in_tmp: Path) -> None:
    settings = load_settings(EXAMPLE, {})

    assert settings == load_settings(None, {})


def test_the_example_shows_the_true_defaults(in_tmp: Path) -> None:
    path = write_config(uncommented_example(with_examples=False))

    assert load_settings(path, {}) == load_settings(None, {})


def test_the_example_values_are_valid(in_tmp: Path) -> None:
    path = write_config(uncommented_example(with_examples=True))

    settings = load_settings(path, {})

    assert settings.projects.default == "myapp"


def test_web_user_tokens_are_redacted_when_rendered(in_tmp: Path) -> None:
    path = write_config('[transports.web]\nusers = { alice = "tok-alice-secret" }\n')

    rendered = render_effective(load_settings(path, {}))

    assert 'users = { alice = "**********" }' in rendered
    assert "tok-alice-secret" not in rendered


def test_discord_and_whatsapp_ids_numbers_and_keys_are_checked(in_tmp: Path) -> None:
    path = write_config(
        '[transports.discord]\npublic_key = "abc"\nchannels = ["general"]\n'
        'gateway_url = "http://x"\n'
        '[transports.whatsapp]\nallowed_numbers = ["07700 900123"]\n'
        '[transports.whatsapp.meta]\napi_version = "21"\n'
        '[transports.whatsapp.twilio]\nfrom_number = "+14155238886"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    text = "\n".join(caught.value.problems)
    for key in (
        "transports.discord.public_key",
        "transports.discord.channels",
        "transports.discord.gateway_url",
        "transports.whatsapp.allowed_numbers",
        "transports.whatsapp.meta.api_version",
        "transports.whatsapp.twilio.from_number",
    ):
        assert key in text
    good = write_config(
        f'[transports.discord]\npublic_key = "{"ab" * 32}"\nchannels = [123]\n'
        '[transports.whatsapp]\nallowed_numbers = ["+447700900123"]\n',
        "good.toml",
    )
    assert load_settings(good, {}).transports.discord.channels == ["123"]


def test_agent_profiles_default_to_a_claude_coder_and_qa(in_tmp: Path) -> None:
    settings = load_settings(
        write_config('[[agents.profile]]\nname = "fast"\nmodel = "haiku"\n'), {}
    )

    profiles = {p.name: p for p in settings.agents.profiles()}

    assert set(profiles) == {"fast", "qa"}
    assert profiles["fast"].role == "coder"
    assert profiles["fast"].command[-3:] == ["--output-format", "stream-json", "--verbose"]
    assert settings.agents.merge_on == "daemon"


def test_bad_agent_profiles_are_located(in_tmp: Path) -> None:
    path = write_config(
        '[[agents.profile]]\nname = "a"\nrole = "boss"\n'
        '[[agents.profile]]\nname = "b"\nprompt = "fix {itme}"\n'
        '[[agents.profile]]\nname = "b"\n'
    )

    problems = problems_of(path)

    assert problems[0].startswith("bot.toml: agents.profile[0].role: ")
    assert problems[1].startswith("bot.toml: agents.profile[1].prompt: ")
    assert "{itme}" in problems[1]
