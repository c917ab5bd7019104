"""tests/integration/validate/conftest.py - fixtures of the validate suites.

The harness fixtures (services, postgres, ...) come from
tests/integration/conftest.py; this file adds, like the migrator suites:

    source_uri   MIGRATE_TEST_MONGODB_URI when set (a real replica set), else
                 a session-wide mongosim
    mongo        a pymongo client of source_uri
    dbname       a database name unique to the test (every command is
                 restricted to it with --include, so a shared server works)
    migrate      run the built `migrate` binary: migrate(*args) -> Result
"""

import json
import os
import subprocess
import uuid

import pymongo
import pytest

from mgharness import build_path
from mgharness.mongosim import MongosimInstance


@pytest.fixture(scope="session")
def source_uri(session_services):
    uri = os.environ.get("MIGRATE_TEST_MONGODB_URI")
    if uri:
        return uri
    sim = session_services.add(MongosimInstance(session_services.root, name="source"))
    return sim.uri


@pytest.fixture
def mongo(source_uri):
    client = pymongo.MongoClient(source_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def dbname(mongo):
    name = "vt_" + uuid.uuid4().hex[:10]
    yield name
    mongo.drop_database(name)


class Result:
    """Result of one `migrate` run: rc, stdout, stderr, and its JSON output."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@pytest.fixture
def migrate():
    binary = build_path("bin", "migrate")

    def run(*args, env=None, timeout=300):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATE_")}
        full_env.update(env or {})
        proc = subprocess.run([binary, "--log-format=json", *args], capture_output=True,
                              text=True, timeout=timeout, env=full_env)
        return Result(proc)

    return run
