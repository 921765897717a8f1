"""Job logic: what jobs and tasks are, what users may do to them, how agents get them.

Nothing here knows HTTP or the API's records (``hub/entities``, ``hub/api``): refusals
are ``hub.errors`` exceptions, and the entities call in.

* ``registry.py``: the kinds of job by ``protocol.BucketKind``; ``kind.py`` says what a
  kind is. One module per kind, with its spec, creation and leasing: ``compute.py``,
  ``transfer.py`` (with ``transfer_paths.py`` and ``transfer_tasks.py``), ``docker.py``.
* ``actions.py``: start, change and delete jobs, add and change tasks; ``writes.py``:
  the rules for those writes that every kind shares.
* ``status.py``: job and task statuses, and a job's status kept in step with its tasks.
* ``queues.py``: the queue a job waits in, one of its organization's (the records are
  ``hub/entities/queues.py``); ``limits.py``: the limits a job holds and its
  ``max_lanes``, and how many buckets they leave room for (``hub/entities/limits.py``).
* ``engines.py``: a compute job made from an engine and its arguments (the records are
  ``hub/entities/engines.py``); ``progress.py``: what running tasks' progress lines say.
* ``dispatch.py``: claims, heartbeats, lease ends, waking on news of work
  (``hub/wakeup.py``); ``leases.py``, ``claimers.py`` and ``targets.py`` serve it,
  ``filters.py`` says what a compute job's targets are and whom they match, and
  ``reasons.py`` why a job waits (no agent matches it, or a limit is full); ``reports.py`` applies agents'
  reports.
"""
