"""tests/integration/mgharness/stack.py - start several services and always close all of them.

ServiceStack registers a service's close() *before* starting it, so a start
that fails halfway (Postgres up, etcd failed) still tears down everything
that was started, in reverse order, when the stack closes. Close errors of
one service do not prevent closing the others (contextlib.ExitStack).

    with ServiceStack() as stack:
        pg = stack.postgres()
        ec = stack.etcd()
        ha = stack.haproxy([(pg.host, pg.port)])
"""

import contextlib

from .etcd import EtcdInstance
from .haproxy import HAProxyInstance
from .postgres import PostgresInstance
from .tmproot import default_root


class ServiceStack:
    """ServiceStack owns services started for one scope (a test, a session).

    Attributes: root (TempRoot), services (list, in start order).
    """

    def __init__(self, root=None):
        self.root = root if root is not None else default_root()
        self.services = []
        self._exit = contextlib.ExitStack()

    def add(self, service, start=True):
        """add takes ownership of service (closed with the stack), starts it unless start=False."""
        self._exit.callback(service.close)
        self.services.append(service)
        if start:
            service.start()
        return service

    def postgres(self, start=True, **kwargs):
        """postgres returns a started PostgresInstance (kwargs: see PostgresInstance)."""
        return self.add(PostgresInstance(self.root, **kwargs), start)

    def etcd(self, start=True, **kwargs):
        """etcd returns a started EtcdInstance (kwargs: see EtcdInstance)."""
        return self.add(EtcdInstance(self.root, **kwargs), start)

    def haproxy(self, backends, start=True, **kwargs):
        """haproxy returns a started HAProxyInstance forwarding to backends."""
        return self.add(HAProxyInstance(self.root, backends, **kwargs), start)

    def close(self):
        """close closes every service in reverse order; re-raises the last close error."""
        self._exit.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
