"""The hub's web dashboard: the page and its assets (``pages``), and the last hour of
each agent's metrics (``history``) that its sparklines draw.

The page's script reads everything through the JSON API under the API prefix with the
user's own token, so the rules of ``hub/permissions.py`` decide what it shows; the few
endpoints made for it live in ``hub/api/dashboard.py`` and apply the same rules.
"""
