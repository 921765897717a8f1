"""Progress lines on the agent (issue 18): which output lines are progress lines, how a
running task's log is read for them, and what rides on the heartbeats and the end report,
against the in-process fake hub with real lanes."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.buckets.progress import MAX_LINE, ProgressScanner, Said, parse
from agent.fakehub import FakeHub
from protocol.work import MAX_OUTPUTS
from tests.agent.test_loops import config, hub, running

__all__ = ["hub"]  # the fake hub fixture
PY = sys.executable


def test_progress_lines_and_what_stays_log() -> None:
    assert parse(b'{"progress": 42.5, "stage": "render"}') == Said(42.5, "render")
    assert parse(b'{"progress": 100}') == Said(100.0)
    assert parse(b'{"stage": "denoise"}') == Said(stage="denoise")
    assert parse(b'{"output": "/out/0001.exr"}') == Said(output="/out/0001.exr")
    assert parse(b'{"progress": 0, "output": "a b.exr"}') == Said(0.0, output="a b.exr")
    for log in (b"rendering frame 1", b"{not json}", b"[1, 2]", b'"progress"', b"{}",
                b'{"progress": 42, "eta": 30}',  # another key: structured log, not ours
                b'{"progress": 101}', b'{"progress": -1}', b'{"progress": "42"}',
                b'{"progress": true}', b'{"progress": null}', b'{"stage": 5}',
                b'{"output": ""}', b'{"output": 7}', b'{"output": "a\\nb"}',
                b'{"stage": "' + b"x" * 256 + b'"}',
                b'{"output": "' + b"x" * 1025 + b'"}',
                b'{"progress": 1e999}',
                b'{"stage": "' + b"x" * MAX_LINE + b'"}'):
        assert parse(log) is None, log


def test_the_scanner_reads_whole_lines_once(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_bytes(b'starting\n  {"progress": 10, "stage": "load"}  \n{"output": "a.exr"}\n'
                    b'{"progress": 2')  # a line not ended yet
    scanner = ProgressScanner(log)
    news = scanner.news()
    assert news is not None
    assert (news.progress, news.stage, news.outputs) == (10.0, "load", ["a.exr"])
    assert scanner.news() is None  # nothing new
    with log.open("ab") as fh:
        fh.write(b'0}\n{"output": "a.exr"}\n{"output": "b.exr"}\n' + b"y" * (MAX_LINE + 10)
                 + b'{"progress": 99}\n{"progress": 30, "stage": "render"}')
    news = scanner.news()
    assert news is not None  # the long line, ending like a progress line, is log
    assert (news.progress, news.stage, news.outputs) == (20.0, "load", ["b.exr"])
    whole = scanner.whole()  # the task ended: its last line counts without an end of line
    assert whole is not None
    assert (whole.progress, whole.stage, whole.outputs) == (30.0, "render", ["a.exr", "b.exr"])


def test_outputs_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("".join(f'{{"output": "/out/{n}.exr"}}\n' for n in range(MAX_OUTPUTS + 5)))
    whole = ProgressScanner(log).whole()
    assert whole is not None and len(whole.outputs) == MAX_OUTPUTS
    quiet = tmp_path / "quiet.log"
    quiet.write_text('plain output\n{"progress": 500}\n')
    assert ProgressScanner(quiet).whole() is None  # it said nothing: the report says nothing


async def test_progress_rides_on_heartbeats_and_the_end_report(hub: FakeHub,
                                                              tmp_path: Path) -> None:
    script = ("import sys, time\n"
              "for n in range(1, 5):\n"
              "    print('frame', n, 'of 4')\n"
              "    print('{\"progress\": %d, \"stage\": \"render\"}' % (n * 25 - 5))\n"
              "    print('{\"output\": \"/out/%d.exr\"}' % n, flush=True)\n"
              "    time.sleep(0.3)\n"
              "print('{\"stage\": \"done\"}', end='', flush=True)\n")
    bucket = hub.lease([PY, "-c", script])
    (task,) = bucket.tasks
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    beats = [body.task_progress[task.id] for _, body in hub.heartbeats
             if task.id in body.task_progress]
    assert len(beats) >= 2, "progress came live, in more than one heartbeat"
    assert [b.progress for b in beats] == sorted(b.progress for b in beats)
    sent = [path for b in beats for path in b.outputs]
    assert len(sent) == len(set(sent))  # each output once
    end = hub.task_report(task.id, "done")
    assert (end.progress, end.stage) == (95.0, "done")
    assert end.outputs == [f"/out/{n}.exr" for n in range(1, 5)]
    assert "frame 1 of 4" in end.log_tail and '{"progress": 20' in end.log_tail


async def test_a_task_that_ends_at_once_reports_its_progress(hub: FakeHub,
                                                             tmp_path: Path) -> None:
    """A task that ends before it is told of as started (no heartbeat saw it run): its end
    report alone carries what it said."""
    bucket = hub.lease([PY, "-c", "print('{\"progress\": 100, \"output\": \"o.exr\"}')"])
    (task,) = bucket.tasks
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    end = hub.task_report(task.id, "done")
    assert (end.progress, end.stage, end.outputs) == (100.0, None, ["o.exr"])


async def test_a_task_without_progress_lines_reports_none(hub: FakeHub, tmp_path: Path) -> None:
    bucket = hub.lease([PY, "-c", "print('{\"progress\": \"soon\"}'); print('hello')"])
    (task,) = bucket.tasks
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    end = hub.task_report(task.id, "done")
    assert (end.progress, end.stage, end.outputs) == (None, None, None)
    assert end.log_tail == '{"progress": "soon"}\nhello\n'
    assert all(not body.task_progress for _, body in hub.heartbeats)
