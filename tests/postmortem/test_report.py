"""Post-mortem reports: content, escaping, writing only inside the folder, and rendering in a real browser.

The browser test drives Debian's chromium (``/usr/bin/chromium``; ``apt-get
install -y chromium``) through the DevTools protocol over a pipe (standard
library only). It is skipped when chromium is missing, unless
``DIAGNOSIS_REQUIRE_BROWSER=1`` (CI sets it), which turns the skip into a failure.
"""

import fcntl
import html
import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from diagnosis import DiagnosisError, IncidentLogError, bundled_topology, read_incidents
from diagnosis.logs.schema import ActionAttempt, Incident, ObservationRecord
from diagnosis.model.topology import Action, Component, Dependency, Detector, FaultMode, Topology
from diagnosis.postmortem.report import HTML_NAME, MARKDOWN_NAME, find_incident, post_mortem, write_report

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "data" / "incidents" / "online-boutique-postmortem.jsonl"
BOUTIQUE = ROOT / "data" / "topologies" / "online-boutique.yaml"
CHROMIUM = "/usr/bin/chromium"
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    files = write_report(BOUTIQUE, LOG, "ob-2026-03-14-cart", out)
    return out, files


def _evil_topology_and_incident():
    """A topology whose names are HTML, built directly (the YAML loader would refuse these names)."""
    bad = EVIL
    comps = (
        Component("web", "service", fault_modes=(FaultMode("crash", 0.02),),
                  detectors=(Detector("latency", "web", "latency", {"impaired": 0.9}, 0.01),),
                  actions=(Action("restart", "web", {"crash": 0.9}, 1.0),)),
        Component(bad, "service", fault_modes=(FaultMode("crash", 0.05),),
                  detectors=(Detector("health", bad, "health_check", {"crash": 0.95}, 0.01, 2.0),),
                  actions=(Action("restart", bad, {"crash": 0.9}, 1.0),)),
    )  # fmt: skip
    topo = Topology(name='shop "<b>', components=comps, dependencies=(Dependency("web", bad, "call", 0.8),))
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    incident = Incident(
        id="<img src=x onerror=alert(2)>", opened=t0, topology=topo.name,
        observations=(ObservationRecord("web.latency", "fired", time=t0),
                      ObservationRecord(f"{bad}.health", "fired", time=t0 + pd.Timedelta(minutes=2))),
        actions=(ActionAttempt("restart", "web", "failure", t0 + pd.Timedelta(minutes=4)),
                 ActionAttempt("restart", bad, "success", t0 + pd.Timedelta(minutes=9))),
        cause_component=bad, cause_fault_mode="crash",
    )  # fmt: skip
    return topo, incident


def test_report_files_and_content(report_dir):
    out, files = report_dir
    assert files.folder == out.resolve()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [HTML_NAME, MARKDOWN_NAME, "contributions.png", "timeline.png", "topology.png"]
    )
    text = files.html.read_text(encoding="utf-8")
    for heading in ("Summary", "Topology and ranked fault locations", "Why the model believes it",
                    "What it would have checked and done", "How the belief evolved"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in text
    assert "redis-cart" in text and "memory_pressure" in text
    # Self-contained: every image is a data URI, nothing is fetched, no script.
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 3
    assert not re.search(r'(src|href)="(?!data:)', text)
    assert "<script" not in text.lower()
    md = files.markdown.read_text(encoding="utf-8")
    for name in ("topology.png", "timeline.png", "contributions.png"):
        assert f"]({name})" in md and (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert oct(files.html.stat().st_mode & 0o777) != oct(0o600)  # usual permissions, not mkstemp's


def test_post_mortem_values(boutique):
    frame, _ = read_incidents(LOG)
    inc = find_incident(frame, "ob-2026-03-14-cart", boutique)
    pm = post_mortem(boutique, inc)
    assert pm.diagnosis.locations[0].component == "redis-cart"
    assert pm.timeline.events[pm.decision_step + 1].kind == "action"
    assert pm.decision_time == pd.Timestamp("2026-03-14T10:07:00Z")
    assert pm.plan.steps[-1].kind == "escalate" and pm.naive.steps[-1].kind == "escalate"
    assert pm.plan.expected_cost < pm.naive.expected_cost
    assert pm.actions_cost == 3.0 + 1.0 + 3.0  # rollback, restart, scale_out of a cache
    known = {o.symptom for o in inc.observations if o.time <= pm.decision_time}
    assert pm.checks and not known & {c.symptom for c in pm.checks}
    assert "cartservice.latency" in {c.symptom for c in pm.checks}  # observed only later, at 10:14


def test_names_are_escaped(tmp_path):
    topo, incident = _evil_topology_and_incident()
    files = write_report(topo, incident, None, tmp_path)
    text = files.html.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "<img src=x" not in text and "<b>" not in text
    assert html.escape(EVIL) in text
    md = files.markdown.read_text(encoding="utf-8")
    assert "<script" not in md.lower() and "&lt;script&gt;" in md


def test_writes_only_inside_the_folder(tmp_path):
    outside = tmp_path / "outside.html"
    outside.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / HTML_NAME).symlink_to(outside)
    with pytest.raises(DiagnosisError, match="refusing to write .*post_mortem.html.*outside"):
        write_report(BOUTIQUE, LOG, "ob-2026-03-20-payment", out, formats=["html"])
    assert outside.read_text() == "keep me"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DiagnosisError, match="exists and is not a folder"):
        write_report(BOUTIQUE, LOG, "ob-2026-03-20-payment", afile)


def test_incident_selection_errors(tmp_path, boutique, webshop):
    with pytest.raises(IncidentLogError, match="no incident 'ob-2026-03-14-crt'; did you mean 'ob-2026-03-14-cart'"):
        find_incident(LOG, "ob-2026-03-14-crt", boutique)
    with pytest.raises(IncidentLogError, match="holds 2 incidents; name one with --incident"):
        find_incident(LOG, None, boutique)
    with pytest.raises(IncidentLogError, match="does not fit topology 'webshop'"):
        find_incident(LOG, "ob-2026-03-14-cart", webshop)
    broken = tmp_path / "log.jsonl"
    broken.write_text(LOG.read_text().splitlines()[0].replace('"fired"', '"fird"', 1) + "\n")
    with pytest.raises(IncidentLogError, match="incident 'ob-2026-03-14-cart' was set aside") as info:
        find_incident(broken, "ob-2026-03-14-cart", boutique)
    assert info.value.rows
    with pytest.raises(DiagnosisError, match="unknown report format 'pdf'"):
        write_report(BOUTIQUE, LOG, "ob-2026-03-14-cart", tmp_path / "r", formats=["pdf"])


# ----------------------------------------------------------------------------- the browser
class _DevTools:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, profile: Path):
        a, self._w = os.pipe()
        self._r, b = os.pipe()
        # The child's ends go to fds >= 10 (never 3 or 4), then bash puts them on 3 and 4 for chromium.
        to_child_r, from_child_w = fcntl.fcntl(a, fcntl.F_DUPFD, 10), fcntl.fcntl(b, fcntl.F_DUPFD, 10)
        os.close(a)
        os.close(b)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=1280,2000", "about:blank"]  # fmt: skip
        shell = f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self.proc = subprocess.Popen(["/bin/bash", "-c", shell, CHROMIUM, *args], pass_fds=(to_child_r, from_child_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._read(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._r)
        os.close(self._w)


_PROBE = """JSON.stringify({
  images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]),
  scripts: document.getElementsByTagName('script').length,
  headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
  text: document.body.innerText,
  scrollWidth: document.documentElement.scrollWidth,
  title: document.title
})"""


def _render(path: Path, profile: Path) -> tuple[dict, list[dict]]:
    dt = _DevTools(profile)
    try:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            dt.send(f"{domain}.enable", session=session)
        dt.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        dt.wait_for("Page.loadEventFired")
        probe = dt.send("Runtime.evaluate", {"expression": _PROBE, "returnByValue": True}, session=session)
        result = json.loads(probe["result"]["value"])
        errors = [
            e for e in dt.events
            if e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert"))
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")
        ]  # fmt: skip
        return result, errors
    finally:
        dt.close()


@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("DIAGNOSIS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium)")
        pytest.skip(
            f"{CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium) to run the browser check"
        )
    return CHROMIUM


def test_report_renders_in_headless_chromium(chromium, report_dir, tmp_path):
    _, files = report_dir
    result, errors = _render(files.html, tmp_path / "profile")
    assert not errors, errors
    assert result["scripts"] == 0
    assert result["title"] == "Post-mortem: ob-2026-03-14-cart"
    assert result["headings"] == ["Summary", "Topology and ranked fault locations", "Why the model believes it",
                                  "What it would have checked and done", "How the belief evolved"]  # fmt: skip
    assert len(result["images"]) == 3
    for complete, width, height, shown in result["images"]:
        assert complete and width > 300 and height > 100 and shown > 300  # decoded and laid out
    assert result["scrollWidth"] <= 1280  # nothing overflows the window sideways


def test_escaped_names_render_as_text(chromium, tmp_path):
    topo, incident = _evil_topology_and_incident()
    files = write_report(topo, incident, None, tmp_path / "out", formats=["html"])
    result, errors = _render(files.html, tmp_path / "profile")
    assert not errors, errors
    assert result["scripts"] == 0
    assert EVIL in result["text"] and "<img src=x onerror=alert(2)>" in result["text"]
    assert all(img[0] and img[1] > 0 for img in result["images"])


def _cli(*argv):
    import io

    from diagnosis.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_an_unknown_incident_id_names_the_ids_the_log_holds():
    from importlib import resources

    pm = resources.files("diagnosis").joinpath("data", "incidents", "online-boutique-postmortem.jsonl")
    code, _, err = _cli("timeline", "-t", bundled_topology("online-boutique"), pm, "--incident", "nope")
    assert code == 1 and "Traceback" not in err
    assert "no incident 'nope'; it holds 2 incidents (first ids: ['ob-2026-03-14-cart', " in err
