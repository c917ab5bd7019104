"""tests/integration/mgharness/fixtures.py - the harness's pytest fixtures (a plugin module).

tests/integration/conftest.py re-exports these, so every suite below
tests/integration gets them. A pytest run outside that tree can load them
with `-p mgharness.fixtures` (tests/integration on PYTHONPATH).

Function scope (a fresh instance per test, torn down after it):
    tmp_root        session: the process's TempRoot (stale roots swept first)
    services        a ServiceStack; start more instances with
                    services.postgres(...), services.etcd(...),
                    services.haproxy(backends, ...)
    postgres        a started PostgresInstance
    etcd            a started EtcdInstance
    haproxy         a started HAProxyInstance in plain TCP mode in front of
                    the `postgres` fixture
Session scope (shared by all tests of the run; do not stop them):
    session_services, session_postgres, session_etcd

For suites that run `migrate` (mgharness/migrate.py): source_uri, mongo,
dbname, migrate.

    netlab          a NetLab (mgharness/netns.py: a bridge and network
                    namespaces), removed after the test; skips the test
                    where namespaces cannot be made (not root)

Teardown is a fixture finalizer: it runs when the test fails, and when a
later fixture's setup fails after an earlier one started.
"""

import pytest

from . import netns
from .migrate import dbname, migrate, mongo, source_uri  # noqa: F401 (fixtures)
from .stack import ServiceStack
from .tmproot import default_root

__all__ = ["tmp_root", "services", "postgres", "etcd", "haproxy",
           "session_services", "session_postgres", "session_etcd",
           "source_uri", "mongo", "dbname", "migrate", "netlab"]


@pytest.fixture(scope="session")
def tmp_root():
    """tmp_root is the TempRoot of this test process; removed at session end."""
    root = default_root()
    yield root
    root.cleanup()


@pytest.fixture
def services(tmp_root):
    """services is a ServiceStack closed after the test."""
    with ServiceStack(tmp_root) as stack:
        yield stack


@pytest.fixture
def postgres(services):
    """postgres is a started PostgresInstance (trust auth) for one test."""
    return services.postgres()


@pytest.fixture
def etcd(services):
    """etcd is a started single-node EtcdInstance for one test."""
    return services.etcd()


@pytest.fixture
def haproxy(services, postgres):
    """haproxy is a started HAProxyInstance (TCP mode, no checks) in front of `postgres`."""
    return services.haproxy([(postgres.host, postgres.port)])


@pytest.fixture(scope="session")
def session_services(tmp_root):
    """session_services is a ServiceStack shared by the whole session."""
    with ServiceStack(tmp_root) as stack:
        yield stack


@pytest.fixture(scope="session")
def session_postgres(session_services):
    """session_postgres is one PostgresInstance shared by the session."""
    return session_services.postgres(name="session-postgres")


@pytest.fixture(scope="session")
def session_etcd(session_services):
    """session_etcd is one EtcdInstance shared by the session."""
    return session_services.etcd(name="session-etcd")


@pytest.fixture
def netlab():
    """netlab is a NetLab removed (and checked gone) after the test; skips without namespaces."""
    ok, why = netns.netns_available()
    if not ok:
        pytest.skip(why)
    lab = netns.NetLab()
    yield lab
    lab.close()
    assert lab.leftovers() == []
