"""A lane on its own: real processes, no hub. Both ways of starting a task (posix_spawn
through ctypes, and Python's os.posix_spawn where ctypes cannot be used) must give a
task the same start."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from lanes import Outcome, TaskRun, cspawn
from lanes.subprocess import SubprocessLane

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux lanes")


@pytest.fixture(params=["ctypes", "os"])
def spawner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "ctypes" and not cspawn.AVAILABLE:
        pytest.skip("glibc's posix_spawn is not reachable through ctypes here")
    if request.param == "os":
        monkeypatch.setattr(cspawn, "AVAILABLE", False)
    return str(request.param)


def run(tmp_path: Path, argv: list[str], **extra: object) -> tuple[Outcome, str]:
    lane = SubprocessLane("test")
    log = tmp_path / "task.log"
    # unique on the machine: the lane kills the task's tree by this mark, and another
    # test may run a task at the same time
    task_id = f"t1-{uuid.uuid4().hex[:8]}"
    task = TaskRun(task_id=task_id, argv=argv, log=log,
                   env={"FERRY_TASK_ID": task_id, "ITEM": "7"},
                   grace=1.0, mark="FERRY_TASK_ID", **extra)  # type: ignore[arg-type]
    try:
        outcome = asyncio.run(lane.run(task))
    finally:
        lane.close()
    return outcome, log.read_text() if log.exists() else ""


def status_field(text: str, name: str) -> int:
    line = next(line for line in text.splitlines() if line.startswith(name + ":"))
    return int(line.split()[1], 16)


def test_a_task_starts_clean(tmp_path: Path, spawner: str) -> None:
    # cat is started directly, so /proc/self/status is the spawned process's own
    outcome, text = run(tmp_path, ["cat", "/proc/self/status"])
    assert outcome.status == "done" and outcome.exit_code == 0
    assert outcome.log_size == len(text.encode()) and outcome.log_tail == text[-4096:]
    ignored, blocked = status_field(text, "SigIgn"), status_field(text, "SigBlk")
    # Python ignores SIGPIPE and SIGXFSZ; a task must get them back at their default
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), (spawner, sig.name)
    assert blocked == 0, spawner


def test_own_session_environment_and_stdin(tmp_path: Path, spawner: str) -> None:
    script = ("echo \"$ITEM $FERRY_TASK_ID\"; cut -d' ' -f6 /proc/$$/stat; echo $$; cat; "
              "echo err >&2")
    outcome, text = run(tmp_path, ["sh", "-c", script])
    assert outcome.status == "done"
    item, task_id, sid, pid, err = text.split()
    assert item == "7" and task_id.startswith("t1-"), text
    assert sid == pid, "a task leads a session of its own"
    assert err == "err", "stderr goes to the same log; stdin is empty (/dev/null)"


def test_failures_are_outcomes_not_exceptions(tmp_path: Path, spawner: str) -> None:
    outcome, text = run(tmp_path, ["sh", "-c", "echo bad; exit 3"])
    assert (outcome.status, outcome.exit_code, outcome.message) == ("failed", 3, "exit code 3")
    assert text == "bad\n"
    outcome, text = run(tmp_path, ["/no/such/program"])
    assert outcome.status == "failed" and "cannot run" in outcome.message
    assert "cannot run" in text
    outcome, _ = run(tmp_path, ["no-such-program-on-path"])
    assert outcome.status == "failed" and "not found" in outcome.message
    outcome, _ = run(tmp_path, ["echo", "a\0b"])
    assert outcome.status == "failed" and "null" in outcome.message.lower()
    outcome, _ = run(tmp_path, ["sh", "-c", "kill -SEGV $$"])
    assert outcome.status == "failed" and outcome.message == "killed by SIGSEGV"
    assert outcome.exit_code == -signal.SIGSEGV


def test_timeout_stops_the_task(tmp_path: Path, spawner: str) -> None:
    outcome, _ = run(tmp_path, ["sleep", "30"], timeout=0.3)
    assert outcome.status == "failed" and outcome.message.startswith("timed out after 0.3 s")
    assert outcome.ended - outcome.started < 10


def test_working_folder(tmp_path: Path, spawner: str) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    outcome, text = run(tmp_path, ["pwd"], cwd=str(folder))
    assert outcome.status == "done" and text.strip() == str(folder)
    outcome, _ = run(tmp_path, ["pwd"], cwd=str(tmp_path / "missing"))
    assert outcome.status == "failed" and "not found" in outcome.message
    assert os.path.exists(tmp_path / "task.log")


def test_a_failing_watch_stops_the_task(tmp_path: Path, spawner: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while a task runs must not leave it running unwatched: it is stopped, whole
    tree, and fails with the reason; the lane runs the next task as usual."""
    marker = tmp_path / "pid"

    def broken(*_args: object) -> None:
        # once the task has said who it is (killed sooner, it could not say it)
        deadline = time.monotonic() + 10
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline, "the task never wrote its pid"
            time.sleep(0.01)
        raise RuntimeError("watch broke")

    monkeypatch.setattr(SubprocessLane, "_watch", broken)
    outcome, _ = run(tmp_path, ["sh", "-c", f"echo $$ > {marker}; sleep 30"])
    assert outcome.status == "failed"
    assert outcome.message == "the agent failed while running it: watch broke"
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    monkeypatch.undo()
    assert run(tmp_path, ["true"])[0].status == "done"


def test_abort_then_next_task_waits_normally(tmp_path: Path, spawner: str) -> None:
    """An abort wakes the lane at once, and leaves no wake-up behind for the next task."""
    lane = SubprocessLane("test")
    runs = [TaskRun(task_id=f"t{n}", argv=["sleep", "0.6" if n else "30"],
                    log=tmp_path / f"{n}.log", grace=1.0) for n in range(2)]
    outcomes: list[Outcome] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def started(task: TaskRun) -> None:
            if task.task_id == "t0":
                loop.call_soon_threadsafe(lane.abort, None, "stop it")

        await lane.run_many(runs, started, lambda _t, o: outcomes.append(o), lambda: True)

    try:
        asyncio.run(main())
        # a wake-up byte left in the pipe would make every later wait return at once
        assert not lane._woken
        with pytest.raises(BlockingIOError):
            os.read(lane._wake_r, 1)
    finally:
        lane.close()
    first, second = outcomes
    assert first.status == "aborted" and first.message.startswith("stop it")
    assert first.ended - first.started < 25  # stopped, not run to its end
    assert second.status == "done"
