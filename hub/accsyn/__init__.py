"""accsyn's own Python client (``accsyn-python-api``) against a Ferry hub: ``/api/v3``.

The client speaks JSON over HTTPS: a login (``PUT /api/v3/api/login``, the user's name
and API key in its ``Authorization`` header, the workspace in ``X-Accsyn-Workspace``)
that answers a session id, then one endpoint, ``/api/v3/event``, through which every
call goes as an event (``uri`` such as ``job/find``, ``data``, ``query``, ``id``).
Each answer is ``{"result": ...}`` or ``{"message": ...}``, which the client raises as
its ``AccsynException``.

Every call maps onto the entity layer the native API (``hub/api``) calls, with the
caller's context built by the same checks (``hub.api.common.context_of``): nothing is
reachable here that ``/api/v1`` would refuse. The pieces, read in this order:
``wire.py`` (events in, answers out), ``login.py`` (who is calling), ``calls.py`` (the
entity calls), ``files.py`` (files of shares), ``app.py`` (the application and its
TLS listener). docs/ACCSYN.md is the user's page.
"""
