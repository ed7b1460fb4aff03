"""Start-up: ``diagnosis --version`` and ``--help`` import only what they need."""

import subprocess
import sys

import pytest

HEAVY = ("pandas", "scipy", "pgmpy", "numpy", "pyarrow", "networkx", "yaml")

PROBE = """
import sys
from diagnosis.cli.main import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["diagnose", "--help"]])
def test_version_and_help_import_no_heavy_package(argv):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_import_diagnosis_is_lazy_and_complete():
    code = (
        "import sys, diagnosis; before = 'numpy' in sys.modules; "
        "diagnosis.diagnose; print(before, 'numpy' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # nothing heavy on import; the first use of a name imports its module, and only what it needs
    assert out.split() == ["False", "True", "False"]


def test_dir_lists_the_public_api_and_sub_packages():
    import diagnosis

    names = set(dir(diagnosis))
    assert set(diagnosis.__all__) <= names
    assert {"inference", "model", "logs", "postmortem", "learning", "telemetry", "__version__"} <= names
    assert diagnosis.logs.__name__ == "diagnosis.logs"
    with pytest.raises(AttributeError):
        diagnosis.no_such_name  # noqa: B018
