"""Config files: application or environments, validated; errors name key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig
from core import config
from core.errors import ConfigError
from hub.config import HubConfig

REFERENCE_STYLE = """
environments:
  test:
    description: Test
    type: test
    ip: 0.0.0.0
    port: 5000
    api_path: /api
    uri: sqlite:///test.sqlite
    allow_drop_all: True
    jwt_secret_key: super-secret-key-of-at-least-32-bytes!
    logging:
      level:        DEBUG
      file:         test.log
      use_console:  True
      backup_count: 5
      max_size:     1024
      format:       "%(asctime)s - %(name)-14s - %(levelname)-8s - %(message)s"
      datefmt:      "%Y-%m-%d %H:%M:%S"
    smtp:
      port: 587
      server: smtp.yourmailserver.com
      username: your-username
      password: super-secret-password
    support_email: your-support@email.com
    email_token_validity_minutes: 60
  prod:
    port: 7700
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_reference_environments_load(tmp_path: Path) -> None:
    path = write(tmp_path, REFERENCE_STYLE)
    loaded = config.load(path, HubConfig, "test")
    cfg = loaded.config
    assert loaded.section == "test"
    assert (cfg.ip, cfg.port, cfg.uri, cfg.api_prefix) == ("0.0.0.0", 5000, "sqlite:///test.sqlite",
                                                          "/api/v1")
    assert cfg.logging.level == "DEBUG" and cfg.logging.max_size == 1024
    assert cfg.smtp is not None and cfg.smtp.server == "smtp.yourmailserver.com"
    # type test means day-long user tokens, as the reference says; prod means 6 hours
    assert cfg.user_token_lifetime("test").total_seconds() == 24 * 3600
    prod = config.load(path, HubConfig, "prod")
    assert prod.config.port == 7700
    assert prod.config.user_token_lifetime(prod.section).total_seconds() == 6 * 3600


def test_short_token_secret_is_refused(tmp_path: Path) -> None:
    # the reference's own example secret is too short to sign HS256 tokens safely
    path = write(tmp_path, "application:\n  jwt_secret_key: super-secret-key!\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, HubConfig)
    assert info.value.key == "application.jwt_secret_key"
    said = str(info.value)
    assert "at key 'application.jwt_secret_key'" in said  # which key
    assert "17 characters" in said and "at least 32" in said  # what is wrong
    assert "guess a short secret offline" in said  # why
    assert "secrets.token_hex(32)" in said and "remove the key" in said  # how to fix it
    assert "super-secret-key!" not in said  # a secret is never echoed


REFERENCE_EXAMPLE = Path(__file__).parents[1] / "reference" / "data" / "server-config.yaml"


def test_the_reference_example_loads_as_printed_but_for_its_short_secret(tmp_path: Path
                                                                        ) -> None:
    """server-cli.rst's example file: ``application: ...`` and ``prod: ...`` stand for
    sections left out; its ``jwt_secret_key`` is refused on purpose (above); with a long
    one, the file loads and ``vpn_server`` is accepted with a warning naming it."""
    printed = REFERENCE_EXAMPLE.read_text()
    with pytest.raises(ConfigError) as info:
        config.load(REFERENCE_EXAMPLE, HubConfig)
    assert info.value.key == "environments.test.jwt_secret_key"
    path = write(tmp_path, printed.replace("super-secret-key!", "k" * 40))
    loaded = config.load(path, HubConfig)
    assert loaded.section == "test"  # the only environment written out
    cfg = loaded.config
    assert (cfg.ip, cfg.port, cfg.api_prefix, cfg.uri) == ("0.0.0.0", 5000, "/api/v1",
                                                          "sqlite:///test.sqlite")
    assert cfg.allow_drop_all and cfg.environment_type(loaded.section) == "test"
    assert cfg.logging.file == "test.log" and cfg.logging.datefmt == "%Y-%m-%d %H:%M:%S"
    assert cfg.smtp is not None and cfg.smtp.port == 587
    assert (cfg.support_email, cfg.email_token_validity_minutes) == (
        "your-support@email.com", 60)
    [warning] = loaded.warnings
    assert "'environments.test.vpn_server' is accepted and not used" in warning
    assert "docker runs have no network" in warning


def test_an_elided_section_is_left_out(tmp_path: Path) -> None:
    path = write(tmp_path, "application: ...\nenvironments:\n  dev: ...\n  prod:\n"
                           "    port: 7702\n")
    loaded = config.load(path, HubConfig)
    assert (loaded.section, loaded.config.port) == ("prod", 7702)
    with pytest.raises(ConfigError, match="environment 'dev' is not defined"):
        config.load(path, HubConfig, "dev")


def test_application_section(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, "application:\n  port: 7711\n"), HubConfig)
    assert loaded.section == "application" and loaded.config.port == 7711


def test_config_is_immutable(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, "application: {}\n"), HubConfig).config
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("text, key, needle", [
    ("application:\n  colour: red\n", "application.colour", "unknown key"),
    ("application:\n  logging:\n    colour: red\n", "application.logging.colour", "unknown key"),
    ("application:\n  port: seven\n", "application.port", "Expected `int`"),
    ("application:\n  port: 70000\n", "application.port", "<= 65535"),
    ("application:\n  logging:\n    level: LOUD\n", "application.logging.level", "LOUD"),
    ("application:\n  logging:\n    use_console: maybe\n", "application.logging.use_console",
     "Expected `bool`"),
    ("environments:\n  staging: {}\n", "environments.staging", "unknown environment"),
    ("application: {}\nextra: 1\n", "extra", "unknown key"),
    ("application: [1, 2]\n", "application", "must be a mapping"),
    ("environments:\n  prod:\n    smtp:\n      port: 1\n", "environments.prod.smtp",
     "missing required field `server`"),
])
def test_bad_values_name_key_and_file(tmp_path: Path, text: str, key: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path, HubConfig)
    assert info.value.key == key
    assert info.value.file == str(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "application:\n  port: [1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML.*line \d+") as info:
        config.load(path, HubConfig)
    assert info.value.file == str(path)


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("- 1\n", "must be a mapping"),
    ("environments:\n  test: {}\n  prod: {}\n", "choose one with --environment"),
    ("environments: {}\n", "neither"),
])
def test_structure_errors(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        config.load(write(tmp_path, text), HubConfig)


def test_missing_environment_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "environments:\n  test: {}\n")
    with pytest.raises(ConfigError, match="environment 'acc' is not defined"):
        config.load(path, HubConfig, "acc")
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        config.load(path, HubConfig, "qa")


def test_application_asked_for_but_absent(tmp_path: Path) -> None:
    path = write(tmp_path, "environments:\n  test: {}\n")
    with pytest.raises(ConfigError, match="no 'application' section"):
        config.load(path, HubConfig, "application")


@pytest.mark.parametrize("value, ok", [("/api", True), ("/ferry/api", True), ("/api/", False),
                                       ("api", False), ("/v2", False)])
def test_api_path_must_end_in_api(tmp_path: Path, value: str, ok: bool) -> None:
    path = write(tmp_path, f"application:\n  api_path: {value}\n")
    if ok:
        assert config.load(path, HubConfig).config.api_prefix == value + "/v1"
    else:
        with pytest.raises(ConfigError) as info:
            config.load(path, HubConfig)
        assert info.value.key == "application.api_path"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml", HubConfig)


def test_agent_config_requires_hub_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing required field `hub`"):
        config.load(write(tmp_path, "application: {api_key: abcdefgh}\n"), AgentConfig)
    for bad in ("ftp://x", "http://127.0.0.1:99999", "http://[::1", "http://", "hub.local:7700",
                "http://h:1/?a=b"):
        with pytest.raises(ConfigError) as info:
            config.load(write(tmp_path, f"application: {{hub: '{bad}', api_key: abcdefgh}}\n"),
                        AgentConfig)
        assert info.value.key == "application.hub", bad
    ok = config.load(write(tmp_path, "application: {hub: 'https://hub.example/ferry'}\n"),
                     AgentConfig)
    assert ok.config.hub == "https://hub.example/ferry"
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "application: {hub: 'http://x', lanes: -1}\n"), AgentConfig)
    assert info.value.key == "application.lanes"
    no_compute = config.load(write(tmp_path, "application: {hub: 'http://x', lanes: 0}\n"),
                             AgentConfig)
    assert no_compute.config.lanes == 0  # refuses compute work altogether


def test_write_atomic_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.yaml"
    config.write_atomic(target, "a: 1\n")
    assert target.read_text() == "a: 1\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.yaml"]


def test_hub_timings_must_fit_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "application: {lease_seconds: 4, heartbeat_interval: 3}\n"),
                    HubConfig)
    assert info.value.key == "application.heartbeat_interval"
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "application: {job_inactive_after: 10, "
                                    "job_archive_after: 5}\n"), HubConfig)
    assert info.value.key == "application.job_archive_after"


@pytest.mark.parametrize("section, key, needle", [
    ("{slots: 0}", "application.docker.slots", ">= 1"),
    ("{memory: lots}", "application.docker", "`docker.memory`: expected bytes"),
    ("{images: {patterns: ['(']}}", "application.docker.images", "not a valid regex"),
    ("{images: {digests: [sha256:abc]}}", "application.docker.images", "64 hex digits"),
    ("{images: {tags: [x]}}", "application.docker.images.tags", "unknown key"),
    ("{network: host}", "application.docker.network", "unknown key"),
])
def test_bad_docker_sections_name_the_key(tmp_path: Path, section: str, key: str,
                                          needle: str) -> None:
    path = write(tmp_path, f"application: {{hub: 'http://h:1', docker: {section}}}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, AgentConfig)
    assert info.value.key == key, str(info.value)
    assert needle in str(info.value)
    good = config.load(write(tmp_path, "application: {hub: 'http://h:1', docker: {slots: 3, "
                             "memory: 2g, images: {names: ['studio/avg:2']}}}\n"), AgentConfig)
    assert good.config.docker is not None and good.config.docker.memory_bytes == 2 << 30
