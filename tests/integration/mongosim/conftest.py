"""tests/integration/mongosim/conftest.py - fixtures of the mongosim suite.

The harness fixtures (tmp_root, services, session_services, ...) come from
tests/integration/conftest.py; this file only adds mongosim instances:

    mongosim          session-scoped default server (tests use their own
                      database names, so they can share it)
    msim_client       a pymongo client of `mongosim`, closed after the test
    mongosim_factory  start(args...) -> a fresh MongosimInstance with extra
                      options, stopped after the test
"""

import uuid

import pytest

from msim_service import MongosimInstance


@pytest.fixture(scope="session")
def mongosim(session_services):
    """mongosim is one server shared by the session (do not stop it)."""
    return session_services.add(MongosimInstance(session_services.root, name="mongosim"))


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
def mongosim_factory(services):
    """mongosim_factory(*args) starts a dedicated server with extra options."""

    def start(*args, name="mongosim"):
        return services.add(MongosimInstance(services.root, name=name, args=args))

    return start
