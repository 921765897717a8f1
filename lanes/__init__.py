"""Where work runs: a lane runs one task at a time and answers with its outcome.

A lane gets a ``TaskRun`` and gives back an ``Outcome``; how the task came
and where the outcome goes is the agent's business (this package never
imports the hub or the agent). ``Lane`` is the protocol the agent holds lanes
by; ``lanes.subprocess.SubprocessLane`` runs tasks as processes,
``lanes.docker_lane.DockerLane`` runs containers (it brings the Docker SDK).

This ``__init__`` imports only ``lanes.base``: importing the package costs nothing,
and no module of it imports the package back (each imports the modules it needs by
their full names).
"""

from lanes.base import Lane, LaneError, Outcome, TaskRun

__all__ = ["Lane", "LaneError", "Outcome", "TaskRun"]
