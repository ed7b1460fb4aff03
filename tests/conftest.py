"""Shared fixtures: the bundled topologies."""

import pytest

from diagnosis import Topology, bundled_topology, load_topology


@pytest.fixture(scope="session")
def webshop() -> Topology:
    return load_topology(bundled_topology("webshop"))


@pytest.fixture(scope="session")
def boutique() -> Topology:
    return load_topology(bundled_topology("online-boutique"))
