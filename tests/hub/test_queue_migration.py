"""Migration 0011 on both engines: every organization gets the queues its jobs name, each
job is linked to its own, and no task is lost on the way (``tasks`` cascade from
``jobs``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command

from hub.storage.db import Database, alembic_config
from tests.hub.test_hub_bootstrap import diff


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_upgrade_makes_the_queues_jobs_name(tmp_path: Path, engine: str,
                                            request: pytest.FixtureRequest) -> None:
    uri = request.getfixturevalue("postgres_url") if engine == "postgresql" \
        else "sqlite:///hub.sqlite"
    asyncio.run(_upgrade_jobs(Database(uri, tmp_path)))


async def _upgrade_jobs(db: Database) -> None:
    def to_reasons(connection):  # type: ignore[no-untyped-def]
        command.upgrade(alembic_config(connection), "0010")

    stamps = "'2026-12-01', '2026-12-01'"
    async with db.write() as conn:
        await conn.run_sync(to_reasons)
        for org in ("o1", "o2"):
            await conn.exec_driver_sql(
                "INSERT INTO organizations (id, name, domain, address1, address2, zipcode, "
                f"country, public_key, created, modified) VALUES ('{org}', '{org}', '', '', "
                f"'', '', '', '', {stamps})")
        for job, org, queue in (("j1", "o1", "comp"), ("j2", "o1", "comp"),
                                ("j3", "o1", "default"), ("j4", "o2", "comp")):
            await conn.exec_driver_sql(
                "INSERT INTO jobs (id, code, kind, queue, status, priority, organization_id, "
                "source_scope, source_id, destination_scope, destination_id, spec, metadata, "
                f"size, created, modified) VALUES ('{job}', 'old', 'compute', '{queue}', "
                f"'waiting', 500, '{org}', '', '', '', '', '{{}}', '{{}}', -1, {stamps})")
            await conn.exec_driver_sql(
                "INSERT INTO tasks (id, job_id, uri, item, status, priority, attempts, seq, "
                "size, transferred, destination, input, result, message, log_tail, has_log, "
                f"metadata, created, modified) VALUES ('t{job}', '{job}', '0', '1', 'queued', "
                f"500, 0, 0, -1, 0, '', '', '', '', '', false, '{{}}', {stamps})")
    await db.migrate()
    await db.migrate()  # a second start changes nothing
    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
        linked = (await conn.exec_driver_sql(
            "SELECT j.id, q.organization_id, q.name, q.priority, q.status FROM jobs j "
            "JOIN queues q ON q.id = j.queue_id ORDER BY j.id")).all()
        queues = (await conn.exec_driver_sql("SELECT count(*) FROM queues")).scalar()
        tasks = (await conn.exec_driver_sql("SELECT count(*) FROM tasks")).scalar()
        same = (await conn.exec_driver_sql(
            "SELECT count(DISTINCT queue_id) FROM jobs WHERE id IN ('j1', 'j2')")).scalar()
    assert [tuple(r) for r in linked] == [
        ("j1", "o1", "comp", 500, "open"), ("j2", "o1", "comp", 500, "open"),
        ("j3", "o1", "default", 500, "open"), ("j4", "o2", "comp", 500, "open")]
    assert (queues, tasks, same) == (3, 4, 1)
    await db.close()
