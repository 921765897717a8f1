"""Where work runs: a lane runs one task at a time and answers with its outcome.

A lane gets a ``TaskRun`` and gives back an ``Outcome``; how the task came
and where the outcome goes is the agent's business (this package never
imports the hub or the agent). ``Lane`` is the protocol the agent holds lanes
by; ``SubprocessLane`` runs tasks as processes, ``lanes.docker_lane`` runs
containers (imported only where containers run: it brings the Docker SDK).

No module of this package imports the package itself back (``from lanes import
...``): each imports the modules it needs by their full names.
"""

from lanes.base import Lane, LaneError, Outcome, TaskRun
from lanes.subprocess import SubprocessLane

__all__ = ["Lane", "LaneError", "Outcome", "SubprocessLane", "TaskRun"]
