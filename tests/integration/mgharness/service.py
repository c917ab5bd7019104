"""tests/integration/mgharness/service.py - the life cycle shared by Postgres, etcd and HAProxy.

A Service owns one directory in the TempRoot and at most one running
ManagedProcess. Life cycle:

    svc = SomeService(root, ...)   # makes its directory, starts nothing
    svc.start()                    # pick ports, spawn, wait until ready
    svc.stop() / svc.kill9()       # graceful (bounded) / crash; can start() again
    svc.close()                    # stop, then remove the directory (idempotent)

start() retries with fresh ports (up to PORT_ATTEMPTS times) when the log
of the failed attempt says "address already in use". If it fails for any
other reason it kills what it spawned and raises ServiceStartError with the
tail of the log. Used as a context manager, a service is started on entry
and closed on exit, also when start() itself fails.
"""

import os
import shutil
import signal
import time

from .errors import HarnessError, PortInUseError, ServiceStartError
from .ports import pick_free_port
from .procs import ManagedProcess
from .tmproot import default_root

PORT_ATTEMPTS = 4
READY_POLL = 0.1
LOG_TAIL_LINES = 40


class Service:
    """Service is the base class; subclasses fill in ports, argv and readiness.

    Attributes: root (TempRoot), name, dir, log_path, run_as (RunAs or
    None), proc (ManagedProcess or None), closed.
    """

    kind = "service"
    start_timeout = 30.0
    stop_timeout = 10.0
    stop_signal = signal.SIGTERM

    def __init__(self, root=None, *, name=None, port_picker=None, run_as=None):
        """__init__ creates the service directory; port_picker() -> int overrides port choice."""
        self.root = root if root is not None else default_root()
        self.name = name or self.kind
        self.run_as = run_as
        self._pick_port = port_picker or pick_free_port
        self.dir = self.root.mkdtemp(self.name, owner=run_as)
        self.log_path = os.path.join(self.dir, self.kind + ".log")
        self.proc = None
        self.closed = False
        self._have_ports = False
        self._prepared = False

    # ---- hooks for subclasses -------------------------------------------
    def _assign_ports(self):
        """_assign_ports picks the service's ports with self._pick_port()."""
        raise NotImplementedError

    def _prepare(self):
        """_prepare runs once before the first start (e.g. initdb)."""

    def _write_config(self):
        """_write_config (re)writes config files that contain the ports."""

    def _argv(self):
        """_argv returns the command line of the service process."""
        raise NotImplementedError

    def _env(self):
        """_env returns the environment of the service process (None: inherit)."""
        return None

    def _ready(self):
        """_ready returns True once the service answers; must not raise."""
        raise NotImplementedError

    # ---- life cycle -----------------------------------------------------
    def start(self):
        """start launches the service and waits until ready; returns self.

        Raises ServiceStartError (with log tail) on failure, after killing
        whatever it spawned.
        """
        if self.closed:
            raise HarnessError(f"{self.name}: start() after close()")
        if self.running():
            raise HarnessError(f"{self.name}: already running (pid {self.proc.pid})")
        if not self._prepared:
            self._prepare()
            self._prepared = True
        for attempt in range(PORT_ATTEMPTS):
            if attempt > 0 or not self._have_ports:
                self._assign_ports()
                self._have_ports = True
            try:
                self._write_config()
                self._launch_and_wait()
                return self
            except PortInUseError:
                self._kill_quietly()
                if attempt == PORT_ATTEMPTS - 1:
                    raise
            except BaseException:
                self._kill_quietly()
                raise
        raise AssertionError("unreachable")

    def _launch_and_wait(self):
        """_launch_and_wait spawns the process and polls _ready() until start_timeout."""
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.proc = ManagedProcess(self._argv(), log_path=self.log_path, cwd=self.dir,
                                   env=self._env(), run_as=self.run_as,
                                   stop_signal=self.stop_signal,
                                   on_spawn=self.root.record_process,
                                   tag=self.root.path)
        deadline = time.monotonic() + self.start_timeout
        while True:
            status = self.proc.returncode()
            if status is not None:
                self._start_failed(f"exited with status {status} during startup", offset)
            if self._ready():
                return
            if time.monotonic() > deadline:
                self._start_failed(f"not ready after {self.start_timeout:.0f}s", offset)
            time.sleep(READY_POLL)

    def _start_failed(self, reason, offset):
        """_start_failed raises PortInUseError or ServiceStartError with the log tail."""
        text = self.read_log(offset)
        tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
        msg = (f"{self.name} ({os.path.basename(self.proc.argv[0])}): {reason}\n"
               f"--- last lines of {self.log_path} ---\n{tail}")
        if "address already in use" in text.lower():
            raise PortInUseError(msg)
        raise ServiceStartError(msg)

    def _kill_quietly(self):
        """_kill_quietly kills a failed start attempt, keeping the first error visible."""
        if self.proc is not None:
            try:
                self.proc.kill9()
            except HarnessError:
                pass

    def running(self):
        """running returns True while the service's main process is alive."""
        return self.proc is not None and self.proc.running()

    def stop(self):
        """stop shuts the service down gracefully (bounded), then kills leftovers."""
        if self.proc is not None:
            self.proc.stop(self.stop_timeout)

    def kill9(self):
        """kill9 SIGKILLs the service and all its processes at once, like a crash."""
        if self.proc is not None:
            self.proc.kill9()

    def close(self):
        """close stops the service and removes its directory. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self):
        """pids returns ProcessIdentity of the main process and its live descendants."""
        return self.proc.tree() if self.proc is not None else []

    @property
    def pid(self):
        """pid is the main process id (None before the first start)."""
        return self.proc.pid if self.proc is not None else None

    def read_log(self, offset=0):
        """read_log returns the service log from byte offset on ('' if none)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        """log_tail returns the last lines of the service log."""
        return "\n".join(self.read_log().splitlines()[-lines:])

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} pid={self.pid} dir={self.dir}>"
