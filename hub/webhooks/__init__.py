"""Events out (issue 19): an organization's webhooks, and the hub's deliveries to them.

``events.py`` writes an event into the outbox (``webhook_deliveries``) in the
transaction of the change it tells of, so an event is sent if and only if its change
was committed, and a hub that stops loses none. ``sender.py`` (a loop each hub process
runs) delivers them, signed (``signing.py``), with retries, never in a request's or a
claim's way. ``offline.py`` notices agents that went offline, which no request does.
"""
