"""Where work runs: a lane runs one task at a time and answers with its outcome.

A lane gets a ``TaskRun`` and gives back an ``Outcome``; how the task came
and where the outcome goes is the agent's business (this package never
imports the hub or the agent).
"""

from lanes.base import LaneError, Outcome, TaskRun
from lanes.subprocess import SubprocessLane

__all__ = ["LaneError", "Outcome", "SubprocessLane", "TaskRun"]
