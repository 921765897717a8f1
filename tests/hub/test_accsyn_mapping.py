"""The accsyn API's mapping, piece by piece (fast; the client itself runs against a real
hub in tests/e2e/test_accsyn_client.py): queries as Ferry reads them, times as the client
decodes them, rename's new name, gz_data that would inflate past the body limit, and the
``accsyn_api`` config block."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from core import config
from core.errors import ConfigError
from hub.accsyn.calls import _query
from hub.accsyn.files import _name_in
from hub.accsyn.wire import _inflate, accsyn_times
from hub.config import AccsynApiConfig, HubConfig
from hub.entities import entity
from hub.errors import Invalid
from hub.query import parse


def test_the_clients_queries_become_ferrys() -> None:
    assert _query(entity("job"), None, None) == "Job"
    assert _query(entity("job"), 'code="x and y.png"', None) == 'Job where code="x and y.png"'
    text = _query(entity("task"), "status<>executing or status=done", "0190aa11bb22cc33dd44ee55")
    assert text == "Task where job.id=0190aa11bb22cc33dd44ee55 and " \
                   "(status<>executing or status=done)"
    assert parse(text).entity == "Task"
    with pytest.raises(Invalid, match="not a job id"):  # nothing reaches the query text
        _query(entity("task"), None, "x or 1=1")
    with pytest.raises(Invalid, match="applies to tasks"):
        _query(entity("job"), None, "0190aa11bb22cc33dd44ee55")


def test_times_come_as_accsyn_sends_them() -> None:
    record = {"created": "2026-12-05T10:00:01.250Z", "code": "2026-12-05T10:00:01.250Z.mov",
              "finished": None, "size": 3}
    assert accsyn_times(record) == {**record, "created": "2026-12-05T10:00:01.250"}


def test_rename_keeps_the_folder() -> None:
    assert _name_in("share=p/a/b.mov", "share=p/a/c.mov") == "c.mov"
    for elsewhere in ("share=p/b/c.mov", "share=p/c.mov", "share=p/a/"):
        with pytest.raises(Invalid, match="path_to"):
            _name_in("share=p/a/b.mov", elsewhere)


def test_gz_data_is_inflated_within_the_body_limit() -> None:
    small = base64.b64encode(gzip.compress(json.dumps({"tasks": ["1"]}).encode())).decode()
    assert _inflate(small, 1024) == {"tasks": ["1"]}
    bomb = base64.b64encode(gzip.compress(b"[" + b"0," * 100_000 + b"0]")).decode()
    with pytest.raises(Invalid, match="larger than 1024 bytes"):
        _inflate(bomb, 1024)


@pytest.mark.parametrize("text, key, needle", [
    ("accsyn_api: {port: 8443, certificate: /etc/hub.pem}", "application.accsyn_api.certificate",
     "give both certificate and key"),
    ("accsyn_api: {port: 8443, colour: red}", "application.accsyn_api.colour", "unknown key"),
    ("accsyn_api: {}", "application.accsyn_api", "missing required field `port`"),
    ("accsyn_api: {port: 70000}", "application.accsyn_api.port", "<= 65535"),
    ("{port: 8443, accsyn_api: {port: 8443}}", "application.accsyn_api",
     "must differ from the hub's own port"),
])
def test_bad_accsyn_api_config_names_its_key(tmp_path: Path, text: str, key: str,
                                             needle: str) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(f"application: {text}\n" if text.startswith("{") else
                    f"application:\n  {text}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, HubConfig)
    assert info.value.key == key and needle in str(info.value), info.value


def test_accsyn_api_is_off_unless_configured(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("application: {}\n")
    assert config.load(path, HubConfig).config.accsyn_api is None
    path.write_text("application:\n  accsyn_api: {port: 0, workspace_alias: AcmeVFX}\n")
    assert config.load(path, HubConfig).config.accsyn_api == AccsynApiConfig(
        port=0, workspace_alias="AcmeVFX")
