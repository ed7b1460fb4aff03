"""The HTTP face of ``diagnosis serve``: a FastAPI (ASGI) app over a :class:`~diagnosis.serve.service.Service`.

Every endpoint but ``GET /healthz`` needs ``Authorization: Bearer <token>``
(compared with :func:`hmac.compare_digest`) when the app has a token; the
check runs before the body is read. Bodies are limited to ``max_body``
bytes (413), validated by the pydantic models of :mod:`diagnosis.serve.models`
(422 naming the field), and a write is answered 2xx only after it is
committed. No error answers with a traceback.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from diagnosis.exceptions import DiagnosisError
from diagnosis.serve.metrics import CONTENT_TYPE
from diagnosis.serve.models import (
    ActionRequest,
    AlertmanagerPayload,
    ApproveRequest,
    CloseRequest,
    ObservationsRequest,
)
from diagnosis.serve.service import RequestError, Service

__all__ = ["MAX_BODY", "BodyGuard", "create_app"]

#: Default largest request body, bytes.
MAX_BODY = 1 << 20
_log = logging.getLogger("diagnosis.serve")


class BodyGuard:
    """ASGI middleware: bearer-token check (except ``/healthz``), then the body size limit."""

    def __init__(self, app, *, token: str | None, max_body: int = MAX_BODY):
        self.app = app
        self.token = None if token is None else token.encode("utf-8")
        self.max_body = int(max_body)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.token is not None and scope.get("path") != "/healthz":
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                return await _send_json(send, 401, {"detail": "missing or wrong bearer token"},
                                        [(b"www-authenticate", b'Bearer realm="diagnosis"')])  # fmt: skip
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                return await _send_json(send, 400, {"detail": "bad Content-Length"})
            if too_big:
                return await _send_json(send, 413, {"detail": f"request body over {self.max_body} bytes"})
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _send_json(send, 413, {"detail": f"request body over {self.max_body} bytes"})
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _send_json(send, status: int, payload: Any, extra: list | None = None) -> None:
    data = json.dumps(payload).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())] + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def create_app(
    service: Service, *, token: str | None, max_body: int = MAX_BODY, tick_seconds: float | None = None
) -> Any:
    """The ASGI app (FastAPI wrapped in :class:`BodyGuard`).

    Parameters
    ----------
    service : Service
    token : str or None
        The bearer token; None turns authentication off (the CLI allows that on loopback only).
    max_body : int
        Largest request body, bytes.
    tick_seconds : float, optional
        How often the quiet-period auto-close runs (default: a quarter of the
        quiet period, between 0.05 and 5 s).
    """
    stop = threading.Event()
    every = tick_seconds if tick_seconds is not None else min(5.0, max(0.05, service.quiet / 4))

    def ticker():
        while not stop.wait(every):
            try:
                service.tick()
            except Exception:  # keep ticking; the error is logged
                _log.exception("auto-close tick failed")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        t = threading.Thread(target=ticker, name="diagnosis-tick", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=5)
            service.wait_hooks(timeout=10)

    app = FastAPI(title="diagnosis serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def _request_error(_req: Request, exc: RequestError):
        return JSONResponse({"detail": exc.detail()}, status_code=exc.status)

    @app.exception_handler(DiagnosisError)
    async def _diagnosis_error(_req: Request, exc: DiagnosisError):
        return JSONResponse({"detail": [{"type": "value_error", "loc": ["body"], "msg": str(exc)}]}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(_req: Request, exc: Exception):
        _log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "topology": service.topology.name}

    @app.post("/api/v1/alertmanager")
    def alertmanager(payload: AlertmanagerPayload):
        return service.receive_alertmanager(payload.model_dump())

    @app.post("/api/v1/observations")
    def observations(body: ObservationsRequest):
        return service.observe(body.incident, [o.model_dump() for o in body.observations])

    @app.get("/api/v1/incidents")
    def incidents(status: str | None = None):
        if status not in (None, "open", "closed"):
            raise RequestError(422, "must be 'open' or 'closed'", loc=("query", "status"), value=status)
        return {"incidents": service.incidents(status)}

    @app.get("/api/v1/incidents/{incident_id}")
    def incident(incident_id: str, checks: bool = True):
        return service.incident(incident_id, checks=checks)

    @app.post("/api/v1/incidents/{incident_id}/actions")
    def action(incident_id: str, body: ActionRequest):
        return service.record_action(incident_id, body.action, body.target, body.outcome, time_text=body.time,
                                     note=body.note)  # fmt: skip

    @app.post("/api/v1/incidents/{incident_id}/actions/{action_name}/approve")
    def approve(incident_id: str, action_name: str, body: ApproveRequest | None = None):
        return service.approve(incident_id, action_name, body.target if body else None)

    @app.post("/api/v1/incidents/{incident_id}/close")
    def close(incident_id: str, body: CloseRequest | None = None):
        cause = body.root_cause.model_dump() if body and body.root_cause else None
        return service.close(incident_id, cause, note=body.note if body else "")

    @app.get("/metrics")
    def metrics():
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/incidents/{incident_id}", response_class=HTMLResponse)
    def page(incident_id: str):
        return HTMLResponse(incident_page(service, incident_id))

    return BodyGuard(app, token=token, max_body=max_body)


_PAGES: dict[tuple[int, str], tuple[tuple, str]] = {}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def incident_page(service: Service, incident_id: str) -> str:
    """The live incident page: status, recommendation, hooks, then the post-mortem report's sections (escaped)."""
    from diagnosis.postmortem.report import post_mortem, render_html

    view = service.incident(incident_id)
    version = (view["status"], len(view["belief_history"]), len(view["hooks"]))
    cached = _PAGES.get((id(service), incident_id))
    if cached is not None and cached[0] == version:
        body = cached[1]
    else:
        record = service.incident_record(incident_id)
        # max_nodes=1: the plan's expected cost is valued by the actions-only sequence beyond the first decision
        # (the full tree takes seconds on a live page); `diagnosis report` on the closed incident has it all.
        pm = post_mortem(service.network, record, engine=service.engine, max_nodes=1)
        body = render_html(pm, {})
        _PAGES[(id(service), incident_id)] = (version, body)
        while len(_PAGES) > 64:
            _PAGES.pop(next(iter(_PAGES)))
    rec = view["recommended_action"]
    nxt = view["next_check"]
    top = view["locations"][:3]
    rows = [
        ("Status", view["status"] + (f" (closed by {view['closed_by']})" if view["closed_by"] else "")),
        ("Top locations (observations and action outcomes)",
         ", ".join(f"{x['component']}: {x['fault_mode']} ({x['probability']:.3f})" for x in top) or "–"),
        ("Recommended action", f"{rec['action']} {rec['target']} (expected success {rec['expected_success']:.3f})"
         if rec else "–"),
        ("Next best check", f"{nxt['symptom']} (information gain {nxt['information_gain']:.3f} bits)" if nxt
         else "–" if view["next_check_computed"] else "not computed (--no-checks)"),
        ("Policy", view.get("policy_decision") or "–"),
    ]  # fmt: skip
    live = ["<h2>Live</h2><table>"]
    live += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    live.append("</table>")
    if view["hooks"]:
        live.append("<h3>Hook runs</h3><table><tr><th>action</th><th>target</th><th>state</th><th>outcome</th></tr>")
        live += [f"<tr><td>{_e(h['action'])}</td><td>{_e(h['target'])}</td><td>{_e(h['state'])}</td>"
                 f"<td>{_e(h['outcome'] or '')}</td></tr>" for h in view["hooks"]]  # fmt: skip
        live.append("</table>")
    if view["alerts"]:
        live.append("<h3>Alerts</h3><table><tr><th>alertname</th><th>symptom</th><th>status</th><th>startsAt</th></tr>")
        live += [f"<tr><td>{_e(a['alertname'])}</td><td>{_e(a['symptom'])}</td><td>{_e(a['status'])}</td>"
                 f"<td>{_e(a['starts_at'])}</td></tr>" for a in view["alerts"]]  # fmt: skip
        live.append("</table>")
    head, sep, rest = body.partition("</h1>")
    return head + sep + "\n" + "\n".join(live) + rest
