"""Storage and first start: migrations match the models, root is never root/root,
API keys are stored hashed."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from core.errors import ApiError
from hub import Session
from hub.permissions import rule_id
from hub.security import password_version
from hub.storage.db import MIGRATIONS, Database, alembic_config
from hub.storage.models import Base
from tests.helpers import Hub, db_query, db_rows, http, wait_for


def diff(connection):  # type: ignore[no-untyped-def]
    """What the migrated schema lacks, or has more of, than the models."""
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


async def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    db = Database("sqlite:///hub.sqlite", tmp_path)
    await db.migrate()
    await db.migrate()  # a second run changes nothing

    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
    await db.close()
    con = sqlite3.connect(tmp_path / "hub.sqlite")
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()


async def test_upgrade_from_the_first_release_keeps_clients(tmp_path: Path) -> None:
    db = Database("sqlite:///hub.sqlite", tmp_path)

    def to_first(connection):  # type: ignore[no-untyped-def]
        command.upgrade(alembic_config(connection), "0001")

    async with db.write() as conn:
        await conn.run_sync(to_first)
        await conn.exec_driver_sql(
            "INSERT INTO clients (id, code, type, description, host_id, machine_id, disabled, gone,"
            " os, username, version, wan_ip, metadata, created, modified) VALUES ('c1', 'old', 1,"
            " '', '', 'm', 0, 0, 'linux', '', '', '', '{}', '2026-01-01', '2026-01-01')")
    await db.migrate()
    async with db.read() as conn:
        row = (await conn.exec_driver_sql("SELECT code, tags, boot_id FROM clients")).one()
    assert (row[0], row[2]) == ("old", "") and row[1] in ("[]", [])
    await db.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_users_from_before_roles_keep_their_powers(tmp_path: Path, engine: str,
                                                   request: pytest.FixtureRequest) -> None:
    """Migrations run on both engines; an upgrade gives the users a hub had before roles
    existed an organization, and root stays root while the others (all admins then) become
    organization admins."""
    uri = request.getfixturevalue("postgres_url") if engine == "postgresql" \
        else "sqlite:///hub.sqlite"
    asyncio.run(_upgrade_old_users(Database(uri, tmp_path)))


async def _upgrade_old_users(db: Database) -> None:
    def to_shares(connection):  # type: ignore[no-untyped-def]
        command.upgrade(alembic_config(connection), "0004")

    async with db.write() as conn:
        await conn.run_sync(to_shares)
        for ident, name, role in (("u1", "root", "root"), ("u2", "ops", "admin")):
            await conn.exec_driver_sql(
                "INSERT INTO users (id, username, firstname, lastname, password_hash, role, "
                f"created, modified) VALUES ('{ident}', '{name}', '', '', 'x', '{role}', "
                "'2026-01-01', '2026-01-01')")
        # a node from then: it gets an organization once the users have one
        await conn.exec_driver_sql(
            "INSERT INTO nodes (id, name, description, created, modified) VALUES ('n1', "
            "'old', '', '2026-01-01', '2026-01-01')")
    await db.migrate()
    await db.migrate()  # a second start changes nothing

    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
        rows = (await conn.exec_driver_sql(
            "SELECT u.username, r.name, o.name FROM users u JOIN user_roles ur ON "
            "ur.user_id = u.id JOIN roles r ON r.id = ur.role_id JOIN organizations o ON "
            "o.id = u.organization_id ORDER BY u.username")).all()
        defaults = (await conn.exec_driver_sql(
            "SELECT count(*) FROM roles WHERE is_default")).scalar()
        placed = (await conn.exec_driver_sql(
            "SELECT (SELECT organization_id FROM nodes), "
            "(SELECT id FROM organizations WHERE name = 'root')")).one()
    assert [tuple(r) for r in rows] == [("ops", "organization admin", "root"),
                                        ("root", "root", "root")]
    assert defaults == 5
    assert placed[0] == placed[1] is not None
    await db.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_upgrade_scopes_report_keys_and_places_orphans(tmp_path: Path, engine: str,
                                                      request: pytest.FixtureRequest) -> None:
    """Migration 0007 and the start after it: report keys become their agent's, per
    bucket; a user's API key gets the version of the password it was made under; nodes
    and jobs from before organizations get one (docs/SECURITY.md)."""
    uri = request.getfixturevalue("postgres_url") if engine == "postgresql" \
        else "sqlite:///hub.sqlite"
    asyncio.run(_upgrade_to_trust(Database(uri, tmp_path)))


GRANTED = {("job", "create", "own"), ("share", "view", "collaboration")}


async def _upgrade_to_trust(db: Database) -> None:
    def to_docker(connection):  # type: ignore[no-untyped-def]
        command.upgrade(alembic_config(connection), "0006")

    bucket = "b" * 24
    stamps = "'2026-12-01', '2026-12-01'"
    async with db.write() as conn:
        await conn.run_sync(to_docker)
        for sql in (
            "INSERT INTO organizations (id, name, domain, address1, address2, zipcode, country, "
            f"public_key, created, modified) VALUES ('o1', 'root', '', '', '', '', '', '', {stamps})",
            "INSERT INTO users (id, username, firstname, lastname, password_hash, role, "
            f"organization_id, created, modified) VALUES ('u1', 'ann', '', '', 'hash-1', 'viewer', "
            f"'o1', {stamps})",
            "INSERT INTO api_keys (id, user_id, lookup, hash, description, created) VALUES "
            "('k1', 'u1', 'abcd', 'x', '', '2026-12-01')",
            f"INSERT INTO nodes (id, name, description, created, modified) VALUES ('n1', 'old', "
            f"'', {stamps})",
            "INSERT INTO jobs (id, code, kind, queue, status, priority, user_id, source_scope, "
            "source_id, destination_scope, destination_id, spec, metadata, size, created, "
            f"modified) VALUES ('j1', 'old', 'compute', 'default', 'waiting', 500, 'u1', '', '', "
            f"'', '', '{{}}', '{{}}', -1, {stamps})",
            "INSERT INTO buckets (id, job_id, client_id, status, leased_until, created) VALUES "
            f"('{bucket}', 'j1', 'c1', 'done', '2026-12-01', '2026-12-01')",
            f"INSERT INTO report_keys (key, received) VALUES ('{bucket}/end', '2026-12-01'), "
            "('not-a-bucket', '2026-12-01')",
            # a role of the organization's own that ran transfers before read/write existed
            f"INSERT INTO roles (id, name, description, organization_id, is_default, created, "
            f"modified) VALUES ('r1', 'delivery', '', 'o1', false, {stamps})",
            *(f"INSERT INTO rules (id, resource, operation, scope) VALUES ('{rule_id(*r)}', "
              f"'{r[0]}', '{r[1]}', '{r[2]}')" for r in GRANTED),
            *(f"INSERT INTO role_rules (role_id, rule_id) VALUES ('r1', '{rule_id(*r)}')"
              for r in GRANTED),
        ):
            await conn.exec_driver_sql(sql)
    await db.migrate()
    await db.migrate()  # a second start changes nothing
    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
        keys = (await conn.exec_driver_sql(
            "SELECT client_id, bucket_id, key FROM report_keys")).all()
        version = (await conn.exec_driver_sql(
            "SELECT password_version FROM api_keys")).scalar()
        node = (await conn.exec_driver_sql("SELECT organization_id FROM nodes")).scalar()
        job = (await conn.exec_driver_sql("SELECT organization_id FROM jobs")).scalar()
        rules = (await conn.exec_driver_sql(
            "SELECT r.resource, r.operation, r.scope FROM role_rules rr JOIN rules r ON "
            "r.id = rr.rule_id WHERE rr.role_id = 'r1'")).all()
    assert {tuple(r) for r in rules} == {*GRANTED, ("share", "read", "organization"),
                                        ("share", "write", "organization")}
    assert [tuple(k) for k in keys] == [("c1", bucket, f"{bucket}/end")]
    assert version == password_version("hash-1")
    assert node == "o1" and job == "o1"
    await db.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_upgrade_drops_the_folder_tasks_were_listed_from(tmp_path: Path, engine: str,
                                                         request: pytest.FixtureRequest) -> None:
    """Migration 0009: a folder is one task now, so ``tasks.folder`` goes; a task listed
    from a folder before stays, a file of its own, and a downgrade gives the column back
    empty."""
    uri = request.getfixturevalue("postgres_url") if engine == "postgresql" \
        else "sqlite:///hub.sqlite"
    asyncio.run(_upgrade_listed_tasks(Database(uri, tmp_path)))


async def _upgrade_listed_tasks(db: Database) -> None:
    def to_links(connection):  # type: ignore[no-untyped-def]
        command.upgrade(alembic_config(connection), "0008")

    def back(connection):  # type: ignore[no-untyped-def]
        command.downgrade(alembic_config(connection), "0008")

    stamps = "'2026-12-01', '2026-12-01'"
    async with db.write() as conn:
        await conn.run_sync(to_links)
        for sql in (
            "INSERT INTO users (id, username, firstname, lastname, password_hash, role, "
            f"created, modified) VALUES ('u1', 'ann', '', '', 'x', 'root', {stamps})",
            "INSERT INTO jobs (id, code, kind, queue, status, priority, user_id, source_scope, "
            "source_id, destination_scope, destination_id, spec, metadata, size, created, "
            f"modified) VALUES ('j1', 'plates', 'transfer', 'default', 'waiting', 500, 'u1', "
            f"'share', 's1', 'share', 's2', '{{}}', '{{}}', -1, {stamps})",
            "INSERT INTO tasks (id, job_id, uri, seq, item, destination, folder, status, "
            "priority, size, transferred, attempts, exit_code, message, log_tail, has_log, "
            "metadata, input, result, created, modified) VALUES ('t1', 'j1', '1', 1, "
            "'plates/a.dpx', 'in/plates/a.dpx', 'plates', 'queued', 500, 2000, 0, 0, NULL, "
            f"'', '', false, '{{}}', '', '', {stamps})",
        ):
            await conn.exec_driver_sql(sql)
    await db.migrate()
    await db.migrate()  # a second start changes nothing
    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
        task = (await conn.exec_driver_sql(
            "SELECT item, destination, status, size FROM tasks")).one()
    assert tuple(task) == ("plates/a.dpx", "in/plates/a.dpx", "queued", 2000)
    async with db.write() as conn:
        await conn.run_sync(back)
        folder = (await conn.exec_driver_sql("SELECT folder FROM tasks")).scalar()
    assert folder == ""
    await db.close()


def test_first_start_makes_a_random_root_password(start_hub, env) -> None:
    del env["FERRY_ROOT_PASSWORD"]
    hub: Hub = start_hub()
    secret = hub.paths.data_dir / "root-password.txt"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = secret.read_text().strip()
    assert len(password) >= 16
    # printed once, on the console of the start
    assert f"root password: {password}" in hub.log()
    assert Session(hub.url, username="root", password=password).user["username"] == "root"
    for guess in ("root", "password", ""):
        status, _ = http("POST", f"{hub.api}/token", {"username": "root", "password": guess})
        assert status == 401
    # a restart keeps the password and prints nothing new
    hub.stop()
    hub.start()
    assert hub.log().count("root password:") == 1
    assert Session(hub.url, username="root", password=password)


def test_root_password_from_the_environment(start_hub, env) -> None:
    hub: Hub = start_hub()
    assert not (hub.paths.data_dir / "root-password.txt").exists()
    assert "root password:" not in hub.log()
    Session(hub.url, username="root", password=env["FERRY_ROOT_PASSWORD"])


def test_weak_root_password_is_refused(tmp_path: Path, env) -> None:
    env["FERRY_ROOT_PASSWORD"] = "root"
    hub = Hub("hub", "weak", tmp_path, {"port": 0}, env)
    assert hub.launch().wait(timeout=60) == 2
    assert "FERRY_ROOT_PASSWORD is refused" in hub.log()


def test_keys_and_passwords_are_stored_hashed(hub: Hub, session: Session) -> None:
    node = session.create("Node", {"name": "n1"})
    key = session.create("ApiKey", {"description": "ci"})
    if isinstance(hub.database, Path):  # the SQLite file, write-ahead log included
        content = hub.database.read_bytes()
        for wal in hub.database.parent.glob("hub.sqlite-wal"):
            content += wal.read_bytes()
    else:
        content = repr(db_rows(hub.database)).encode()
    assert node["api_key"].encode() not in content
    assert key["api_key"].encode() not in content
    assert b"test-root-password" not in content
    hashes = [r[0] for r in db_query(hub.database, "SELECT hash FROM api_keys")]
    assert len(hashes) == 2 and all(h.startswith("$argon2id$") for h in hashes)
    [(password_hash,)] = db_query(hub.database, "SELECT password_hash FROM users")
    assert password_hash.startswith("$argon2id$")


def test_user_api_keys_log_in_and_can_be_revoked(hub: Hub, session: Session) -> None:
    key = session.create("ApiKey", {"description": "nightly script"})
    scripted = Session(hub.url, api_key=key["api_key"])
    assert scripted.user["username"] == "root"
    assert [k["id"] for k in scripted.find("ApiKey")] == [key["id"]]
    wait_for(lambda: session.get("ApiKey", key["id"])["last_used"], what="last_used")
    session.delete_one("ApiKey", key["id"])
    with pytest.raises(ApiError) as info:
        Session(hub.url, api_key=key["api_key"])
    assert info.value.status == 401


def test_node_key_reset_revokes_the_old_key(hub: Hub, session: Session) -> None:
    node = session.create("Node", {"name": "n1"})
    reset = session.update("Node", node["id"], {"api_key": "reset"})
    assert reset["api_key"] != node["api_key"]
    body = {"machine_id": "machine-0001", "code": "x"}
    assert http("POST", f"{hub.api}/agent/enroll", {**body, "api_key": node["api_key"]})[0] == 401
    assert http("POST", f"{hub.api}/agent/enroll", {**body, "api_key": reset["api_key"]})[0] == 200


def test_openapi_document(hub: Hub) -> None:
    status, doc = http("GET", f"{hub.api}/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/token", "/api/v1/find", "/api/v1/agent/enroll", "/api/v1/agent/checkin",
                 "/api/v1/{entity}/{id}", "/api/v1/link"):
        assert path in doc["paths"], path
    link = doc["paths"]["/api/v1/link"]["post"]
    assert set(link["responses"]) == {"201", "400", "401", "403", "413", "422"}
    assert {"url", "expires", "pinnedpubkey"} <= set(
        doc["components"]["schemas"]["Link"]["properties"])
    checkin = doc["paths"]["/api/v1/agent/checkin"]["post"]
    ref = checkin["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert "metrics" in schema["required"]
    assert {"c", "l", "m", "mpf", "mpt", "mvf", "mvt", "in", "out"} <= set(
        doc["components"]["schemas"]["Metrics"]["properties"])
