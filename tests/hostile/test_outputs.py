"""No output can destroy an input: same path, symlink or hard link, for every verb with an output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import hostile_helpers
import pytest
from hostile_helpers import WEBSHOP, files_in, refused, run

small_log_fixture = hostile_helpers.small_log_fixture  # the shared fixture "small_log"


def _links(src: Path, folder: Path) -> dict[str, Path]:
    sym = folder / f"sym-{src.name}"
    hard = folder / f"hard-{src.name}"
    sym.symlink_to(src)
    os.link(src, hard)
    return {"same": src, "symlink": sym, "hardlink": hard}


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_score_out_equal_to_the_log_is_refused_and_the_log_is_intact(small_log, tmp_path, how):
    log = tmp_path / "log.jsonl"
    shutil.copy(small_log, log)
    before = log.read_bytes()
    out = _links(log, tmp_path)[how]
    refused(["score", "-t", WEBSHOP, log, "--out", out], str(out), "destroy the input", repr(str(log)))
    assert log.read_bytes() == before
    assert not any(n.endswith((".parts", ".summary.json", ".lock")) for n in files_in(tmp_path))


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_convert_out_equal_to_the_input_is_refused(small_log, tmp_path, how):
    log = tmp_path / "log.jsonl"
    shutil.copy(small_log, log)
    with log.open("a") as fh:
        fh.write("{not json\n")
    before = log.read_bytes()
    out = _links(log, tmp_path)[how]
    refused(["convert", log, "--out", out], str(out), "destroy the input")
    assert log.read_bytes() == before


def test_convert_rejects_file_equal_to_the_input_is_refused(small_log, tmp_path):
    log = tmp_path / "log.jsonl"
    shutil.copy(small_log, log)
    refused(["convert", log, "--out", tmp_path / "x.parquet", "--rejects", log], "destroy the input")
    assert log.read_bytes() == small_log.read_bytes()
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_fit_out_equal_to_the_topology_is_refused_and_its_comments_survive(small_log, tmp_path, how):
    topo = tmp_path / "webshop.yaml"
    shutil.copy(WEBSHOP, topo)
    with topo.open("a") as fh:
        fh.write("# a hand-written comment\n")
    before = topo.read_bytes()
    out = _links(topo, tmp_path)[how]
    refused(["fit", "-t", topo, small_log, "--out", out], str(out), "destroy the input")
    assert topo.read_bytes() == before


@pytest.mark.parametrize(
    "argv",
    [
        lambda t, log: ["simulate", "-t", t, "-n", 3, "--out", t, "--format", "jsonl"],
        lambda t, log: ["export", t, "--to", t],
        lambda t, log: ["import", "alertmanager", log, "-t", t, "--out", log],
        lambda t, log: ["query", "--model", t, "--target", "x", "--out", t],
        lambda t, log: ["topology", "from-traces", log, "--out", log],
        lambda t, log: ["import", "nezha", log, "--out", log],
        lambda t, log: ["detect", "-t", t, "--metrics", log, "--windows", log, "--out", log],
        lambda t, log: ["report", "-t", t, log, "--out", t.parent],
    ],
    ids=["simulate", "export", "alertmanager", "query", "from-traces", "nezha", "detect", "report"],
)
def test_every_verb_with_an_output_refuses_an_input(small_log, tmp_path, argv):
    topo = tmp_path / "webshop.yaml"
    shutil.copy(WEBSHOP, topo)
    log = tmp_path / "log.jsonl"
    shutil.copy(small_log, log)
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    refused(argv(topo, log), "input")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot


def test_out_that_is_an_existing_folder_is_refused_before_any_work(small_log, tmp_path):
    out = tmp_path / "scored.jsonl"
    out.mkdir()
    refused(["score", "-t", WEBSHOP, small_log, "--out", out], str(out), "existing folder")
    assert files_in(tmp_path) == {"scored.jsonl"}


def test_out_in_a_missing_folder_is_refused(small_log, tmp_path):
    refused(["convert", small_log, "--out", tmp_path / "nope" / "x.jsonl"], "does not exist")


def test_parts_path_that_is_a_file_is_one_clear_error(small_log, tmp_path):
    out = tmp_path / "scored.jsonl"
    Path(f"{out}.parts").write_text("in the way")
    refused(["score", "-t", WEBSHOP, small_log, "--out", out], f"{out}.parts", "is a file")
    assert not out.exists()


def test_check_outputs_compares_inodes_and_resolved_paths(tmp_path):
    from diagnosis._files import check_outputs
    from diagnosis.exceptions import OutputError

    a = tmp_path / "a.txt"
    a.write_text("x")
    os.link(a, tmp_path / "b.txt")
    with pytest.raises(OutputError, match="same file"):
        check_outputs([tmp_path / "b.txt"], [a])
    with pytest.raises(OutputError, match="holds the input"):
        check_outputs([], [a], folders=[tmp_path])
    check_outputs([tmp_path / "c.txt"], [a])  # a new file is fine


def test_the_lock_names_the_holder_and_is_released(tmp_path):
    from diagnosis._files import output_lock
    from diagnosis.exceptions import OutputError

    out = tmp_path / "o.jsonl"
    with output_lock(out) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(OutputError, match=rf"another run \(pid {os.getpid()}\)"):
            with output_lock(out):
                pass
    assert not lock.exists()
    with output_lock(out):  # free again
        pass


def test_read_only_folder_is_a_one_line_error(small_log, tmp_path):
    if not _can_mount():
        pytest.skip("needs root (a read-only tmpfs mount) -- run as root or in CI")
    ro = tmp_path / "ro"
    ro.mkdir()
    net = tmp_path / "w.bif"
    assert run("export", WEBSHOP, "--to", net)[0] == 0
    alerts = tmp_path / "alerts.json"
    alerts.write_text('{"status": "firing", "alerts": []}')
    subprocess_run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)])
    try:
        for argv in (
            ["simulate", "-t", WEBSHOP, "-n", 3, "--out", ro / "s.jsonl"],
            ["score", "-t", WEBSHOP, small_log, "--out", ro / "s.jsonl"],
            ["export", WEBSHOP, "--to", ro / "n.bif"],
            ["convert", small_log, "--out", ro / "c.parquet"],
            ["query", "--model", net, "--observe", "symptom__db__latency=fired", "--target", "fault__db",
             "--out", ro / "p.csv"],
            ["import", "alertmanager", alerts, "-t", WEBSHOP, "--out", ro / "a.jsonl"],
        ):  # fmt: skip
            refused(argv, str(ro), "read-only file system")
        assert os.listdir(ro) == []
    finally:
        subprocess_run(["umount", str(ro)])


def _can_mount() -> bool:
    from hostile_helpers import is_root

    if os.environ.get("CI") == "true" and not is_root():
        pytest.fail("CI must run the mount tests as root")
    return is_root()


def subprocess_run(cmd):
    import subprocess

    subprocess.run(cmd, check=True, capture_output=True)


def test_an_output_inside_an_input_folder_is_refused(small_log, tmp_path):
    parts = tmp_path / "log"
    parts.mkdir()
    assert run("convert", small_log, "--out", parts / "part-0.parquet")[0] == 0
    refused(["score", "-t", WEBSHOP, parts, "--out", parts / "scored.parquet"], "inside the input folder")
    refused(["convert", parts, "--out", parts / "again.parquet"], "inside the input folder")
    assert files_in(parts) == {"part-0.parquet", "part-0.parquet.rejects.jsonl"}


def test_detect_output_inside_a_telemetry_folder_is_refused(tmp_path):
    shop = Path(__file__).resolve().parents[2] / "data" / "telemetry" / "shopfloor"
    metrics = tmp_path / "metrics"
    shutil.copytree(shop / "metrics", metrics)
    argv = ["detect", "-t", shop / "topology.yaml", "--metrics", metrics, "--windows", shop / "windows.csv"]
    refused([*argv, "--out", metrics / "incidents.jsonl"], "inside the input folder", repr(str(metrics)))
    assert files_in(metrics) == {"shopfloor.csv"}
