"""The shared belief state's messages for findings it cannot place."""

from __future__ import annotations

import io

from diagnosis import bundled_topology
from diagnosis.cli import main


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_tried_action_on_an_unknown_target_lists_the_targets():
    ob = bundled_topology("online-boutique")
    code, _, err = _run("explain", "-t", ob, "-o", "frontend.latency=fired", "--tried", "restart@nosuch=failure")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: unknown action 'restart' on target 'nosuch'; targets with actions: [")
    assert "'checkoutservice'" in err
    code, _, err = _run(
        "explain", "-t", ob, "-o", "frontend.latency=fired", "--tried", "restart@checkoutservic=failure"
    )
    assert code == 1 and "did you mean 'checkoutservice'" in err
    code, _, err = _run(
        "explain", "-t", ob, "-o", "frontend.latency=fired", "--tried", "reboot@checkoutservice=failure"
    )
    assert code == 1 and "actions of 'checkoutservice': ['restart', 'rollback', 'scale_out']" in err
