"""tests/integration/security/conftest.py - fixtures of the security suite.

The harness fixtures, mongo, dbname and migrate come from
tests/integration/conftest.py. source_uri is overridden: each test gets
its own mongosim, because a cutover's freeze is global to the server.
"""

import uuid

import pytest

from mgharness.mongosim import MongosimInstance


@pytest.fixture
def source_uri(services):
    sim = services.add(MongosimInstance(services.root, name="source-" + uuid.uuid4().hex[:6]))
    return sim.uri
