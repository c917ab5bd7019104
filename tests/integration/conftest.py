"""tests/integration/conftest.py - make mgharness importable and provide its fixtures.

pytest loads this file for every test file below tests/integration, also
for suites in nested folders (tests/integration/<area>/test_*.py), so they
can simply `from mgharness import PostgresInstance` and use the fixtures
`tmp_root`, `services`, `postgres`, `etcd`, `haproxy`, `session_services`,
`session_postgres`, `session_etcd` (see mgharness/fixtures.py).

A nested folder must not re-export these fixtures in its own conftest.py:
a second definition of the session fixture `tmp_root` would clean the
shared temp root while the first is still in use.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mgharness.fixtures import *  # noqa: E402,F401,F403  (pytest finds fixtures by name)
