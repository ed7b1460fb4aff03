"""Fault tests of `diagnosis score`: kill -9 at every kind of moment, two runs on one output, a full disk.

Each kill test runs `score` in a child process that sends itself SIGKILL at an
exact moment (a patched function), then runs a plain `score` again and checks
the result equals an uninterrupted run: the same rows in the same order, the
same rejects, the same metrics, and nothing left behind (no parts folder, no
hidden temporaries, no lock file).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import hostile_helpers
import pytest
from hostile_helpers import WEBSHOP, files_in, is_root, read_jsonl, refused, run

small_log_fixture = hostile_helpers.small_log_fixture  # the shared fixture "small_log"

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 25


def _hostile_log(small_log: Path, folder: Path) -> Path:
    """The small log plus records that must be set aside: a duplicate id in a later chunk, a bad line."""
    lines = small_log.read_text().splitlines()
    dup = json.loads(lines[3])
    lines.insert(70, json.dumps(dup))  # id of line 4 again, two chunks later
    lines.insert(40, "{truncated")
    path = folder / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _score_argv(log: Path, out: Path) -> list[str]:
    return ["score", "-t", str(WEBSHOP), str(log), "--out", str(out), "--chunk-size", str(CHUNK), "--format", "json"]


#: name -> Python code run in the child before scoring; each sends SIGKILL at one moment.
KILLS = {
    # after chunk 1's rows are written, before its stats file marks it done
    "mid_chunk": """
        import diagnosis.logs.scoring as s
        orig = s._atomic_write
        def patched(path, write):
            if str(path).endswith("part-000001.stats.json"):
                kill()
            orig(path, write)
        s._atomic_write = patched
    """,
    # between chunks: chunks 0..2 done
    "between_chunks": """
        import diagnosis.logs.scoring as s
        orig = s._write_part
        def patched(parts, index, *a):
            orig(parts, index, *a)
            if index == 2:
                kill()
        s._write_part = patched
    """,
    # the final merge has written its temporary file, not yet renamed it into place
    "final_merge": """
        import os
        real = os.replace
        def patched(src, dst):
            if str(dst) == OUT:
                kill()
            real(src, dst)
        os.replace = patched
    """,
    # the output is in place, the rejects and summary are not
    "after_output": """
        import os
        real = os.replace
        def patched(src, dst):
            real(src, dst)
            if str(dst) == OUT:
                kill()
        os.replace = patched
    """,
    # the final removal of the parts folder, half done
    "final_cleanup": """
        import shutil, diagnosis.logs.scoring as s
        from pathlib import Path
        def patched(path, *a, **k):
            files = sorted(Path(path).glob("part-*"))
            for f in files[: len(files) // 2]:
                f.unlink()
            kill()
        s.shutil.rmtree = patched
    """,
}


def _child(code: str, argv: list[str], out: Path) -> subprocess.Popen:
    script = textwrap.dedent(
        """
        import os, signal, sys
        OUT = {out!r}
        def kill():
            os.kill(os.getpid(), signal.SIGKILL)
        {code}
        from diagnosis.cli import main
        sys.exit(main({argv!r}))
        """
    ).format(out=str(out), code=textwrap.indent(textwrap.dedent(code), "").strip(), argv=argv)
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def reference(small_log, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    log = _hostile_log(small_log, folder)
    out = folder / "scored.jsonl"
    code, stdout, err = run(*_score_argv(log, out))
    assert code == 0, err
    return log, out, json.loads(stdout)


def _same_result(out: Path, ref_out: Path, summary: dict, ref_summary: dict) -> None:
    assert out.read_bytes() == ref_out.read_bytes()

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "source"} for r in rows]

    rej = read_jsonl(f"{out}.rejects.jsonl")
    assert strip(rej) == strip(read_jsonl(f"{ref_out}.rejects.jsonl"))
    assert [r["reason"][:25] for r in rej] == ["not valid JSON (truncated", "duplicate incident id (fi"]
    for k in ("n_scored", "n_rejected", "n_chunks", "metrics"):
        assert summary[k] == ref_summary[k], k


def test_reference_run_sets_aside_the_duplicate_across_chunks(reference):
    log, out, summary = reference
    rows = read_jsonl(out)
    ids = [r["incident_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 120
    assert summary["n_scored"] == 120 and summary["n_rejected"] == 2
    dup = read_jsonl(f"{out}.rejects.jsonl")[1]
    assert dup["location"] == "line 72" and "first at line 4" in dup["reason"]


@pytest.mark.parametrize("point", list(KILLS))
def test_kill_9_then_a_plain_rerun_equals_an_uninterrupted_run(reference, tmp_path, point):
    ref_log, ref_out, ref_summary = reference
    log = tmp_path / "log.jsonl"
    shutil.copy2(ref_log, log)  # same size and mtime: the same run
    out = tmp_path / "scored.jsonl"
    proc = _child(KILLS[point], _score_argv(log, out), out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    code, stdout, err = run(*_score_argv(log, out))
    assert code == 0, err
    _same_result(out, ref_out, json.loads(stdout), ref_summary)
    assert files_in(tmp_path) == {
        "log.jsonl",
        "scored.jsonl",
        "scored.jsonl.rejects.jsonl",
        "scored.jsonl.summary.json",
    }


@pytest.mark.parametrize("point", ["between_chunks", "final_merge", "final_cleanup"])
def test_kill_9_on_a_parquet_log_then_a_plain_rerun_equals_an_uninterrupted_run(reference, tmp_path, point):
    ref_log, _, _ = reference
    log = tmp_path / "log.parquet"
    code, _, err = run("convert", ref_log, "--out", log, "--rejects", tmp_path / "convert.rejects.jsonl")
    assert code == 0, err
    (tmp_path / "convert.rejects.jsonl").unlink()
    whole = tmp_path / "whole.jsonl"
    code, stdout, err = run(*_score_argv(log, whole))
    assert code == 0, err
    out = tmp_path / "scored.jsonl"
    proc = _child(KILLS[point], _score_argv(log, out), out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    code, again, err = run(*_score_argv(log, out))
    assert code == 0, err
    assert out.read_bytes() == whole.read_bytes()
    assert json.loads(again)["metrics"] == json.loads(stdout)["metrics"]
    assert files_in(tmp_path) == {
        "log.parquet", "whole.jsonl", "whole.jsonl.rejects.jsonl", "whole.jsonl.summary.json",
        "scored.jsonl", "scored.jsonl.rejects.jsonl", "scored.jsonl.summary.json",
    }  # fmt: skip


def test_a_stale_parts_folder_says_what_to_do_and_restart_discards_it(reference, tmp_path):
    ref_log, ref_out, ref_summary = reference
    log = tmp_path / "log.jsonl"
    shutil.copy2(ref_log, log)
    out = tmp_path / "scored.jsonl"
    proc = _child(KILLS["between_chunks"], _score_argv(log, out), out)
    proc.communicate(timeout=120)
    err = refused([*_score_argv(log, out), "--top-k", "3"], f"{out}.parts", "same arguments", "--restart")
    assert not out.exists()
    code, stdout, err = run(*_score_argv(log, out), "--restart")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["n_chunks_resumed"] == 0
    _same_result(out, ref_out, summary, ref_summary)


def test_two_runs_on_one_out_never_mix(reference, small_log, tmp_path):
    ref_log, ref_out, _ = reference
    out = tmp_path / "scored.jsonl"
    slow = """
        import os, time, diagnosis.logs.scoring as s
        orig = s._write_part
        def patched(*a):
            orig(*a)
            open(OUT + ".ready", "w").close()
            deadline = time.time() + 60
            while not os.path.exists(OUT + ".go") and time.time() < deadline:
                time.sleep(0.05)  # hold the lock, mid-run, until the second run has tried
        s._write_part = patched
    """
    proc = _child(slow, _score_argv(ref_log, out), out)
    try:
        deadline = time.time() + 60
        while not Path(f"{out}.ready").exists():
            assert time.time() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        other = tmp_path / "other.jsonl"
        shutil.copy(small_log, other)
        err = refused(_score_argv(other, out), str(out), f"another run (pid {proc.pid})")
        assert "Traceback" not in err
    finally:
        Path(f"{out}.go").touch()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.read_bytes() == ref_out.read_bytes()  # the first run's log alone
    Path(f"{out}.ready").unlink()
    Path(f"{out}.go").unlink()
    assert files_in(tmp_path) == {
        "other.jsonl",
        "scored.jsonl",
        "scored.jsonl.rejects.jsonl",
        "scored.jsonl.summary.json",
    }


def test_full_disk_is_a_one_line_error_and_leaves_no_partial_output(reference, tmp_path):
    if not is_root():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the full-disk test as root (it mounts a small tmpfs)")
        pytest.skip("needs root to mount a small tmpfs (runs in CI, which is root)")
    ref_log, _, _ = reference
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], check=True)
    try:
        out = disk / "scored.jsonl"
        err = refused(_score_argv(ref_log, out), "no space left on device")
        assert str(disk) in err
        assert not out.exists()
        assert not [n for n in os.listdir(disk) if n.endswith(".tmp") or n.startswith(".")]
    finally:
        subprocess.run(["umount", str(disk)], check=True)
