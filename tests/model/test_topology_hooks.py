"""Action hooks in the topology (run by diagnosis serve --execute): forms, round trip, errors."""

import pytest


# --------------------------------------------------------------------------- action hooks (diagnosis serve)
def _with_hook(hook):
    from diagnosis import Topology

    return Topology.from_dict(
        {"name": "s", "components": [{"name": "checkout", "actions": {"restart": {"hook": hook}}}]}
    )


def test_action_hook_forms_parse_and_round_trip():
    from diagnosis import Topology

    argv = _with_hook(["/bin/echo", "restart"])
    restart = next(a for a in argv.actions if a.name == "restart")
    assert restart.hook.argv == ("/bin/echo", "restart") and restart.hook.kind == "argv"
    assert restart.hook.timeout == 30.0 and restart.success["crash"] == 0.9  # default success kept
    url = _with_hook({"url": "http://127.0.0.1:9/hook", "timeout": 5})
    hook = next(a for a in url.actions if a.name == "restart").hook
    assert (hook.kind, hook.url, hook.timeout) == ("url", "http://127.0.0.1:9/hook", 5.0)
    assert next(a for a in _with_hook("https://x.example/h").actions if a.name == "restart").hook.url
    assert Topology.from_dict(argv.to_dict()) == argv and Topology.from_dict(url.to_dict()) == url
    assert all(a.hook is None for a in argv.actions if a.name != "restart")


@pytest.mark.parametrize(
    "hook, message",
    [
        ([], "non-empty list of strings"),
        (["ok", 3], "non-empty list of strings"),
        ("ftp://host/x", "http:// or https://"),
        ("kubectl rollout restart", "http:// or https://"),
        ({"argv": ["a"], "url": "http://h/x"}, "exactly one of"),
        ({"timeout": 3}, "exactly one of"),
        ({"argv": ["a"], "timeout": 0}, "timeout"),
        ({"argv": ["a"], "timeout": True}, "timeout"),
        ({"argv": ["a"], "shell": True}, "unknown field 'shell'"),
        (7, "expected a mapping"),
    ],
)
def test_bad_action_hooks_are_topology_errors(hook, message):
    from diagnosis import TopologyError

    with pytest.raises(TopologyError, match="actions.restart.hook") as info:
        _with_hook(hook)
    assert message in str(info.value)
