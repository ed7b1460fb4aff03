"""The ``serve`` verb: run the online diagnosis service (``docs/serve.md``)."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
from typing import TextIO

from diagnosis.exceptions import DiagnosisError

__all__ = ["TOKEN_ENV", "register"]

#: Environment variable holding the bearer token when no --token-file is given.
TOKEN_ENV = "DIAGNOSIS_SERVE_TOKEN"


def register(verbs) -> None:
    """Add the ``serve`` verb to the ``diagnosis`` parser."""
    p = verbs.add_parser(
        "serve", help="run the online service: Alertmanager webhook in, live diagnoses, recovery hooks under a policy"
    )
    p.add_argument("--topology", "-t", required=True, metavar="T", help="topology with 'alerts' rules (and hooks)")
    p.add_argument("--state", required=True, metavar="STATE.sqlite", help="SQLite state file (created when missing)")
    p.add_argument("--log", required=True, metavar="INCIDENTS.jsonl", help="incident log closed incidents go to")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9095, help="port (default 9095; 0 picks a free one)")
    p.add_argument("--token-file", metavar="F", help=f"file holding the bearer token (default: ${TOKEN_ENV})")
    p.add_argument("--window", default="15min", help="alerts starting within this of an incident join it (15min)")
    p.add_argument("--quiet", type=float, default=300.0, metavar="S",
                   help="seconds after every alert is resolved before an incident closes itself (300)")  # fmt: skip
    p.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES", help="largest request body (1 MiB)")
    p.add_argument("--engine", default="auto", help="inference engine (default auto)")
    p.add_argument("--no-checks", dest="checks", action="store_false",
                   help="leave the next best check out of incidents (it takes minutes on large platforms)")  # fmt: skip
    g = p.add_argument_group("recovery hooks (never run without --execute)")
    g.add_argument("--execute", action="store_true", help="run action hooks when the policy allows")
    g.add_argument("--min-success", type=float, default=0.5, metavar="P",
                   help="least expected success of the action (0.5)")  # fmt: skip
    g.add_argument("--budget", type=float, default=math.inf, metavar="COST",
                   help="most total cost of the actions of one incident (no limit)")  # fmt: skip
    g.add_argument("--rate-limit", type=int, default=1, metavar="N", help="most hook runs per target per window (1)")
    g.add_argument("--rate-window", type=float, default=300.0, metavar="S", help="the rate limit's window (300 s)")
    g.add_argument("--approval", action="store_true",
                   help="every hook run waits for POST /api/v1/incidents/{id}/actions/{action}/approve")  # fmt: skip
    p.set_defaults(func=_serve)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_token(token_file: str | None) -> str | None:
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise DiagnosisError(f"cannot read the token file {token_file!r}: {exc.strerror}") from None
        if not token:
            raise DiagnosisError(f"the token file {token_file!r} is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def _serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    import uvicorn

    from diagnosis.model.topology import load_topology
    from diagnosis.serve import Policy, Service, create_app

    token = _read_token(args.token_file)
    if token is None and not _loopback(args.host):
        raise DiagnosisError(
            f"refusing to listen on {args.host!r} without a token: give --token-file or set ${TOKEN_ENV} "
            "(only a loopback address may run without one)"
        )
    if not 0 <= args.port <= 65535:
        raise DiagnosisError(f"--port must be in 0..65535. Got {args.port} instead.")
    if args.max_body < 1024:
        raise DiagnosisError(f"--max-body must be at least 1024 bytes. Got {args.max_body} instead.")
    policy = Policy(execute=args.execute, min_success=args.min_success, budget=args.budget,
                    rate_limit=args.rate_limit, rate_window=args.rate_window, approval=args.approval)  # fmt: skip
    topology = load_topology(args.topology)
    service = Service(topology, args.state, args.log, window=args.window, quiet=args.quiet, policy=policy,
                      engine=args.engine, checks=args.checks)  # fmt: skip
    app = create_app(service, token=token, max_body=args.max_body)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY: without it a kept-alive client's delayed ACK holds each
    # response's body back ~40 ms behind its headers.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(2048)  # connections queue from now on: a client told the address is not refused
    except OSError as exc:
        sock.close()
        service.close_store()
        raise DiagnosisError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    port = sock.getsockname()[1]
    where = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    auth = "bearer token required" if token else "no token (loopback only)"
    hooks = "hooks run under the policy" if args.execute else "hooks off"
    print(f"diagnosis serve: listening on http://{where}:{port} ({auth}; {hooks})", file=out, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        service.close_store()
