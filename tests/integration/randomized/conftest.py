"""tests/integration/randomized/conftest.py - fixtures of the randomized differential test.

The harness fixtures come from tests/integration/conftest.py. This file
puts this folder on sys.path (its modules import each other by name) and
gives each test its own source: the cutover freezes writes server-wide
(setUserWriteBlockMode), so a shared mongosim would stay frozen for the
next test. With MIGRATE_TEST_MONGODB_URI set, the real replica set is used
(own databases, unfrozen and dropped at the end of every batch).
"""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mgharness.mongosim import MongosimInstance  # noqa: E402


class Source:
    """Source: uri, real (a real replica set), restart (None, or a callable giving the URI
    of a fresh mongosim after the last one died)."""

    def __init__(self, services):
        self.services = services
        self.real = bool(os.environ.get("MIGRATE_TEST_MONGODB_URI"))
        self.uri = os.environ.get("MIGRATE_TEST_MONGODB_URI") or self._start()
        self.restart = None if self.real else self._start

    def _start(self):
        sim = self.services.add(MongosimInstance(self.services.root,
                                                 name="rsrc-" + uuid.uuid4().hex[:6]))
        self.uri = sim.uri
        return sim.uri


@pytest.fixture
def rand_source(services):
    """rand_source is a Source: a mongosim of the test's own, or the real replica set."""
    return Source(services)
