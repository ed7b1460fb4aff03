"""Recovery hooks and the policy that lets them run.

A hook (:class:`diagnosis.model.topology.Hook`) is an argument list or an
HTTP webhook. :func:`run_hook` runs one and returns a :class:`HookResult`:

* **argv**: run without a shell (``subprocess.run`` with a list), with a
  timeout, in a small environment -- ``PATH``, ``HOME``, ``LANG`` and
  ``DIAGNOSIS_INCIDENT``, ``DIAGNOSIS_TARGET``, ``DIAGNOSIS_ACTION``,
  ``DIAGNOSIS_EXPECTED_SUCCESS`` (never the server's token). Exit code 0 is
  ``success``, any other ``failure``; a timeout or a program that cannot be
  started is ``unknown`` (the action may not have run: no evidence).
* **url**: a JSON POST ``{incident, action, target, expected_success}``
  (redirects are not followed). A 2xx status is ``success``, any other
  status ``failure``; a connection error or timeout is ``unknown``.

The outcome is the action's outcome, so the hook should succeed only when
the action restored the service.

:class:`Policy` decides when the server may run one: only with ``execute``;
only the recommended action (highest expected success among the untried);
only when its expected success is at least ``min_success`` and the
incident's actions stay within ``budget``; at most one hook per target at a
time; at most ``rate_limit`` runs per target in ``rate_window`` seconds;
with ``approval``, each run waits for
``POST /api/v1/incidents/{id}/actions/{action}/approve``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from diagnosis._validation import Interval, validate_params
from diagnosis.model.topology import Hook

__all__ = ["OUTPUT_LIMIT", "HookResult", "Policy", "run_hook"]

#: Characters of a hook's stdout / stderr / response body kept in the record.
OUTPUT_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Policy:
    """When ``diagnosis serve`` may run a hook (see the module docstring).

    Parameters
    ----------
    execute : bool, default False
        Run hooks at all.
    min_success : float, default 0.5
        Least expected success ``P(R | D, a)`` of the action.
    budget : float, default inf
        Most total cost of the actions tried in one incident, this one included.
    rate_limit : int, default 1
        Most hook runs per target in ``rate_window`` seconds.
    rate_window : float, default 300
    approval : bool, default False
        Every run waits for an approval.
    """

    execute: bool = False
    min_success: float = 0.5
    budget: float = math.inf
    rate_limit: int = 1
    rate_window: float = 300.0
    approval: bool = False

    def __post_init__(self):
        validate_params(
            {f: getattr(self, f) for f in ("min_success", "budget", "rate_limit", "rate_window")},
            {
                "min_success": [Interval(float, 0.0, 1.0, closed="both")],
                "budget": [Interval(float, 0.0, None, closed="left")],
                "rate_limit": [Interval(int, 1, None, closed="left")],
                "rate_window": [Interval(float, 0.0, None, closed="left")],
            },
            caller="Policy",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "execute": self.execute,
            "min_success": self.min_success,
            "budget": None if math.isinf(self.budget) else self.budget,
            "rate_limit": self.rate_limit,
            "rate_window": self.rate_window,
            "approval": self.approval,
        }


@dataclass(frozen=True, slots=True)
class HookResult:
    """What one hook run did.

    Attributes
    ----------
    outcome : {"success", "failure", "unknown"}
    kind : {"argv", "url"}
    exit_code, http_status : int or None
    duration : float
        Seconds.
    error : str
        Why the outcome is unknown (timeout, cannot start, connection error).
    output : str
        The end of stdout and stderr (argv) or of the response body (url).
    """

    outcome: str
    kind: str
    exit_code: int | None
    http_status: int | None
    duration: float
    error: str
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "http_status": self.http_status,
            "duration_s": round(self.duration, 4),
            "error": self.error,
            "output": self.output,
        }


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[-OUTPUT_LIMIT:]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: D102 - a redirect is the webhook's answer, not followed
        return None


def run_hook(hook: Hook, *, incident: str, action: str, target: str, expected_success: float) -> HookResult:
    """Run one hook and report its outcome (see the module docstring)."""
    start = time.monotonic()
    if hook.argv is not None:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        env.update(
            DIAGNOSIS_INCIDENT=incident,
            DIAGNOSIS_TARGET=target,
            DIAGNOSIS_ACTION=action,
            DIAGNOSIS_EXPECTED_SUCCESS=f"{expected_success:.6f}",
        )
        try:
            done = subprocess.run(
                list(hook.argv),
                shell=False,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=hook.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = _tail((exc.stdout or b"") + b"\n" + (exc.stderr or b""))
            return HookResult("unknown", "argv", None, None, time.monotonic() - start,
                              f"timed out after {hook.timeout:g} s", out)  # fmt: skip
        except OSError as exc:
            return HookResult("unknown", "argv", None, None, time.monotonic() - start, f"cannot start: {exc}", "")
        out = _tail(done.stdout + (b"\n" + done.stderr if done.stderr else b""))
        outcome = "success" if done.returncode == 0 else "failure"
        return HookResult(outcome, "argv", done.returncode, None, time.monotonic() - start, "", out)
    body = json.dumps(
        {"incident": incident, "action": action, "target": target, "expected_success": expected_success}
    ).encode()
    req = urllib.request.Request(
        hook.url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "diagnosis"}
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=hook.timeout) as resp:
            status, text = resp.status, resp.read(OUTPUT_LIMIT * 2)
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read(OUTPUT_LIMIT * 2) if exc.fp else b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return HookResult("unknown", "url", None, None, time.monotonic() - start, f"request failed: {reason}", "")
    outcome = "success" if 200 <= status < 300 else "failure"
    return HookResult(outcome, "url", None, status, time.monotonic() - start, "", _tail(text))
