"""The OOM killer's view of the agent and its work (Linux ``oom_score_adj``).

When memory runs out the kernel kills the process with the highest score. The
agent lowers its own (it holds the leases, the outbox and every task's
outcome) and raises its tasks' and containers' (a task that outgrew the node
is the one to go), so that a node short of memory loses one task, reported
as failed, rather than the agent and everything it runs.
"""

from __future__ import annotations

from pathlib import Path

AGENT_OOM_SCORE = -500  # the agent: among the last the OOM killer picks
TASK_OOM_SCORE = 500  # its tasks and containers: picked before the agent


def set_oom_score(score: int, pid: int | str = "self") -> bool:
    """Set a process's ``oom_score_adj`` (Linux); False where that cannot be done (another
    OS, or lowering it without the privilege)."""
    path = Path(f"/proc/{pid}/oom_score_adj")
    try:
        path.write_text(str(score))
        return True
    except OSError:
        return False


def oom_score(pid: int | str = "self") -> int | None:
    try:
        return int(Path(f"/proc/{pid}/oom_score_adj").read_text())
    except (OSError, ValueError):
        return None
