"""The buckets this agent holds, and how each kind of bucket runs.

::

    ClaimLoop ────claims────▶ BucketPool ──run(bucket, reporter)──▶ the runner of its kind
    (claim.py)                (pool.py)   ◀──free(), stop()──────   compute.py   its lanes
    HeartbeatLoop ─answers─▶ pool.apply                              transfer.py  transfer slots
    (heartbeat.py)                                                   docker.py    docker slots

The pool keeps what every held bucket has (``Held``, base.py: its work, why it stops,
which of its tasks were aborted or have ended), starts its run on the runner of its
kind, and writes what every bucket ends with through the ``Reporter`` (reports.py):
the tasks handed back unstarted and the bucket's end. A runner (the ``Runner``
protocol, base.py) runs one kind's tasks and keeps what only that kind needs: a
compute bucket's lane, a transfer's running request, a docker run's container.

Runners are chosen by ``protocol.BucketKind`` and loaded by name (registry.py) when
the agent's settings call for them: the idle agent imports neither the Docker SDK
nor the transports. This ``__init__`` imports nothing; the modules import each other
by their full names.
"""
