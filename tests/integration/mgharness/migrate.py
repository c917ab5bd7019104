"""tests/integration/mgharness/migrate.py - fixtures for suites that run `migrate`.

Re-exported by mgharness.fixtures, so every suite below tests/integration
gets them (a suite's own conftest.py may override one, as the cutover suite
does for source_uri):

    source_uri   a MongoDB URI: MIGRATE_TEST_MONGODB_URI when set (a real
                 replica set), else a session-wide mongosim
    mongo        a pymongo client of source_uri, closed after the test
    dbname       a database name unique to the test, dropped after it
                 (suites restrict every command to it with --include, so a
                 shared real server works)
    migrate      migrate(*args, env=None, timeout=300) runs the built
                 `migrate` with JSON logs and a clean MIGRATE_* environment,
                 and returns a MigrateResult (rc, stdout, stderr, json())
"""

import json
import os
import subprocess
import uuid

import pytest

from .mongosim import MongosimInstance
from .paths import build_path


class MigrateResult:
    """MigrateResult is one `migrate` run: rc, stdout, stderr; json() parses stdout."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        """json parses stdout as one JSON document, or else its last line."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            return json.loads(self.stdout.strip().splitlines()[-1])

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@pytest.fixture(scope="session")
def source_uri(session_services):
    """source_uri is the MongoDB source shared by the session's tests."""
    uri = os.environ.get("MIGRATE_TEST_MONGODB_URI")
    if uri:
        return uri
    return session_services.add(MongosimInstance(session_services.root, name="source")).uri


@pytest.fixture
def mongo(source_uri):
    import pymongo

    client = pymongo.MongoClient(source_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def dbname(mongo):
    name = "mt_" + uuid.uuid4().hex[:10]
    yield name
    try:
        mongo.drop_database(name)
    except Exception:  # noqa: BLE001 - a frozen or stopped source must not fail teardown
        pass


@pytest.fixture
def migrate():
    binary = build_path("bin", "migrate")

    def run(*args, env=None, timeout=300):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATE_")}
        full_env.update(env or {})
        proc = subprocess.run([binary, "--log-format=json", *args], capture_output=True,
                              text=True, errors="replace", timeout=timeout, env=full_env)
        return MigrateResult(proc)

    return run
