"""tests/integration/mongosim/conftest.py - fixtures of the mongosim suite.

The harness fixtures (tmp_root, services, session_services, ...) come from
tests/integration/conftest.py; this file only adds mongosim instances. The
suite runs twice: against a replica set (`mongosim`) and against a sharded
cluster (`mongosim --shards 3`, pymongo talking to its router), so every
check holds in both modes; tests that are about a replica set only carry
the `replset_only` marker, those about sharding live in test_sharded.py.

    mode              "replset" or "sharded" (session-scoped parameter)
    mongosim          session-scoped default server of the mode (tests use
                      their own database names, so they can share it)
    msim_client       a pymongo client of `mongosim`, closed after the test
    mongosim_factory  start(args...) -> a fresh server of the mode with
                      extra options, stopped after the test
    dbname            a database name unique to the test

In sharded mode the servers run with --periodic-noop-interval-secs 1: a
merged change stream waits for every shard's high-water mark, and an idle
shard only moves it with its periodic no-op (10 s by default, as MongoDB).
"""

import uuid

import pytest

from mgharness.mongosim import MongosimCluster
from msim_service import MongosimInstance

MODES = ("replset", "sharded")
SHARDS = 3
SHARDED_ARGS = ("--periodic-noop-interval-secs", "1")


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "replset_only: checks a replica set's own behaviour (hello of a "
                            "member, replSetGetStatus, ...): not run against the router")
    config.addinivalue_line("markers", "sharded_only: checks the sharded cluster (test_sharded.py)")


@pytest.fixture(scope="session", params=MODES)
def mode(request):
    """mode is the deployment the suite runs against."""
    return request.param


@pytest.fixture(autouse=True)
def _one_mode_only(request, mode):
    if mode == "sharded" and request.node.get_closest_marker("replset_only"):
        pytest.skip("replica-set behaviour; the sharded checks are in test_sharded.py")
    if mode == "replset" and request.node.get_closest_marker("sharded_only"):
        pytest.skip("sharded cluster behaviour")


def make_server(mode, root, name, args=()):
    """make_server returns an unstarted server of the mode with extra options."""
    if mode == "sharded":
        extra = list(args)
        if "--periodic-noop-interval-secs" not in extra:
            extra = list(SHARDED_ARGS) + extra
        return MongosimCluster(root, name=name, shards=SHARDS, args=extra)
    return MongosimInstance(root, name=name, args=args)


@pytest.fixture(scope="session")
def mongosim(session_services, mode):
    """mongosim is one server of the mode shared by the session (do not stop it)."""
    return session_services.add(make_server(mode, session_services.root, "mongosim-" + mode))


@pytest.fixture
def msim_client(mongosim):
    """msim_client is a pymongo client of the shared server."""
    client = mongosim.client()
    yield client
    client.close()


@pytest.fixture
def dbname():
    """dbname is a database name unique to the test."""
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
def mongosim_factory(services, mode):
    """mongosim_factory(*args) starts a dedicated server of the mode with extra options."""

    def start(*args, name="mongosim"):
        return services.add(make_server(mode, services.root, name, args))

    return start
