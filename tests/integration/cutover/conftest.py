"""tests/integration/cutover/conftest.py - fixtures of the cutover suite.

The harness fixtures (services, postgres, etcd, ...) come from
tests/integration/conftest.py. This file adds, after the migrator suite's
pattern:

    source_uri   a MongoDB URI of a mongosim started for this test only
                 (setUserWriteBlockMode is global: a shared source would let
                 one test's freeze break the next)
    mongo        a pymongo client of source_uri
    dbname       a database name unique to the test
    migrate      run the built `migrate` binary: migrate(*args) -> Result

and puts tests/integration/migrator on sys.path for its helpers.
"""

import json
import os
import subprocess
import sys
import uuid

import pymongo
import pytest

from mgharness import build_path
from mgharness.mongosim import MongosimInstance

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "migrator"))


@pytest.fixture
def source_uri(services):
    sim = services.add(MongosimInstance(services.root, name="source-" + uuid.uuid4().hex[:6]))
    return sim.uri


@pytest.fixture
def mongo(source_uri):
    client = pymongo.MongoClient(source_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def dbname(mongo):
    return "ct_" + uuid.uuid4().hex[:10]


class Result:
    """Result of one `migrate` run: rc, stdout, stderr."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        return json.loads(self.stdout.strip().splitlines()[-1])

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
