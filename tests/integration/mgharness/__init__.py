"""tests/integration/mgharness/__init__.py - integration harness: real services on loopback.

Starts throwaway PostgreSQL 15, single-node etcd 3.4 and HAProxy instances
for pytest suites under tests/integration, and guarantees they go away:
own process group, PR_SET_PDEATHSIG=SIGKILL, bounded SIGTERM/SIGINT then
SIGKILL teardown, and one temp root per test process (stale roots of dead
runs are swept at start). See docs/testing.md, "Integration harness".

Suites import it as `from mgharness import ...`; tests/integration/conftest.py
puts tests/integration on sys.path and provides the pytest fixtures
(mgharness.fixtures).
"""

import os as _os

# libmongoc (Debian builds it with automatic init) creates /dev/shm/mongoc-<pid>
# for its counters before main() runs, and a process killed with SIGKILL
# leaves that file behind. A later process that reuses the pid then prints a
# plain-text "Falling back to malloc for counters." warning on stderr before
# our logger is installed, which breaks every test that reads stderr as JSON
# lines. The counters are only for mongoc-stat; every process the harness
# starts inherits this switch, which skips the shared memory entirely.
_os.environ.setdefault("MONGOC_DISABLE_SHM", "1")

from .errors import HarnessError, PortInUseError, ServiceStartError
from .etcd import EtcdError, EtcdInstance
from .haproxy import Backend, HAProxyInstance
from .paths import build_dir, build_path, integration_dir, source_dir
from .ports import LOOPBACK, pick_free_port, port_is_listening
from .postgres import PostgresInstance
from .procs import ManagedProcess, ProcessIdentity, RunAs
from .service import Service
from .stack import ServiceStack
from .tmproot import TempRoot, default_root, sweep_stale_roots

__all__ = [
    "Backend", "EtcdError", "EtcdInstance", "HAProxyInstance", "HarnessError",
    "LOOPBACK", "ManagedProcess", "PortInUseError", "PostgresInstance",
    "ProcessIdentity", "RunAs", "Service", "ServiceStack", "ServiceStartError",
    "TempRoot", "build_dir", "build_path", "default_root", "integration_dir",
    "pick_free_port", "port_is_listening", "source_dir", "sweep_stale_roots",
]
