"""``diagnosis serve``: the online loop beside Alertmanager.

Alerts arrive (``POST /api/v1/alertmanager``), each incident's diagnosis is
updated with every one, the recommended action and the next best check stay
current, recovery hooks run only when the policy allows, and every closed
incident is appended to the incident log that ``fit``, ``score``,
``timeline`` and ``report`` read. See ``docs/serve.md``.

- :mod:`~diagnosis.serve.service`: the state machine (no HTTP).
- :mod:`~diagnosis.serve.state`: the SQLite (WAL) state file.
- :mod:`~diagnosis.serve.hooks`: running hooks, and the policy.
- :mod:`~diagnosis.serve.models`: the request bodies (pydantic).
- :mod:`~diagnosis.serve.app`: the ASGI app (FastAPI), authentication, body limit.
- :mod:`~diagnosis.serve.metrics`: the Prometheus metrics.
"""

from diagnosis.serve.app import create_app
from diagnosis.serve.hooks import HookResult, Policy, run_hook
from diagnosis.serve.service import RequestError, Service
from diagnosis.serve.state import Store

__all__ = ["HookResult", "Policy", "RequestError", "Service", "Store", "create_app", "run_hook"]
