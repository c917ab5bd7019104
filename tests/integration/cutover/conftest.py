"""tests/integration/cutover/conftest.py - fixtures of the cutover suite.

The harness fixtures, and mongo, dbname and migrate (mgharness/migrate.py),
come from tests/integration/conftest.py. This file overrides source_uri:
each test gets its own mongosim, because setUserWriteBlockMode is global
and a shared source would let one test's freeze break the next. It also
puts tests/integration/migrator on sys.path for that suite's helpers.
"""

import os
import sys
import uuid

import pytest

from mgharness.mongosim import MongosimInstance

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "migrator"))


@pytest.fixture
def source_uri(services):
    sim = services.add(MongosimInstance(services.root, name="source-" + uuid.uuid4().hex[:6]))
    return sim.uri
