"""tests/integration/mgharness/tmproot.py - one temp root per test process; stale-root sweep.

Every file a harness service writes lives under one root directory,
<base>/mgtest-<pid>-<random> (base: $MG_TEST_TMPDIR or /tmp). The root holds:

    owner     "<pid> <starttime>" of the process that created it
    pids      one "<pid> <starttime>" line per child process started
    <name>-*  one directory per service instance (data, config, log)

When a test process dies without cleaning up (SIGKILL, power cut), its
children die through PDEATHSIG, but the root remains. sweep_stale_roots()
removes every root whose owner is no longer alive (pid gone, or reused by a
process with another start time); it first SIGKILLs whatever of that run
is somehow still alive: the recorded children, and every process whose
environment carries MGHARNESS_ROOT=<root> (services are started with that
tag, and their own children, e.g. an orphaned grandchild, inherit it).
default_root() runs the sweep when it creates the process's root, i.e. at
harness start.
"""

import atexit
import glob
import os
import shutil
import signal
import tempfile
import threading

from .procs import ProcessIdentity, tagged_processes, wait_gone

ROOT_PREFIX = "mgtest-"
OWNER_FILE = "owner"
PIDS_FILE = "pids"


def tmp_base():
    """tmp_base returns the directory roots are created in ($MG_TEST_TMPDIR or /tmp)."""
    return os.environ.get("MG_TEST_TMPDIR", "/tmp")


def _read_identities(path):
    """_read_identities returns the ProcessIdentity lines of an owner/pids file."""
    found = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    found.append(ProcessIdentity(int(parts[0]), int(parts[1])))
    except OSError:
        pass
    return found


def _root_owner_alive(path):
    """_root_owner_alive returns True if the process that created root path still runs."""
    owners = _read_identities(os.path.join(path, OWNER_FILE))
    if owners:
        return owners[0].alive()
    # No owner file yet: the root is being created; trust the pid in its name.
    pid = os.path.basename(path)[len(ROOT_PREFIX):].split("-", 1)[0]
    return pid.isdigit() and ProcessIdentity.of(int(pid)) is not None


def _kill_leftovers(path):
    """_kill_leftovers SIGKILLs live processes recorded in or tagged with root path."""
    recorded = _read_identities(os.path.join(path, PIDS_FILE))
    survivors = set(i for i in recorded if i.alive()) | set(tagged_processes(path))
    for ident in survivors:
        ident.kill(signal.SIGKILL)
    wait_gone(survivors, 5.0)


def sweep_stale_roots(base=None):
    """sweep_stale_roots removes roots under base whose owner is dead; returns their paths."""
    removed = []
    for path in sorted(glob.glob(os.path.join(base or tmp_base(), ROOT_PREFIX + "*"))):
        if not os.path.isdir(path) or os.path.islink(path) or _root_owner_alive(path):
            continue
        _kill_leftovers(path)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    return removed


class TempRoot:
    """TempRoot is this process's directory for all service files.

    Attributes: path, closed. Methods: mkdtemp(), record_process(),
    processes(), cleanup().
    """

    def __init__(self, base=None):
        """__init__ creates <base>/mgtest-<pid>-<random> (mode 0755) and its owner file."""
        me = ProcessIdentity.of(os.getpid())
        self.path = tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-", dir=base or tmp_base())
        os.chmod(self.path, 0o755)  # other users (postgres) must traverse it
        with open(os.path.join(self.path, OWNER_FILE), "w") as f:
            f.write(f"{me.pid} {me.starttime}\n")
        self.closed = False
        self._lock = threading.Lock()

    def mkdtemp(self, prefix, owner=None):
        """mkdtemp returns a new mode-0700 directory in the root, chowned to owner (a RunAs)."""
        path = tempfile.mkdtemp(prefix=prefix + "-", dir=self.path)
        if owner is not None and owner.uid != os.geteuid():
            os.chown(path, owner.uid, owner.gid)
        return path

    def record_process(self, identity):
        """record_process appends identity to the root's pids file (read by the sweep)."""
        with self._lock, open(os.path.join(self.path, PIDS_FILE), "a") as f:
            f.write(f"{identity.pid} {identity.starttime}\n")

    def processes(self):
        """processes returns every ProcessIdentity recorded in this root."""
        return _read_identities(os.path.join(self.path, PIDS_FILE))

    def cleanup(self):
        """cleanup SIGKILLs recorded or tagged processes still alive, removes the root.

        Idempotent.
        """
        if self.closed:
            return
        self.closed = True
        _kill_leftovers(self.path)
        shutil.rmtree(self.path, ignore_errors=True)


_default = None
_default_pid = None
_default_lock = threading.Lock()


def default_root():
    """default_root returns this process's TempRoot, creating it (after a sweep) on first use.

    The root is removed at interpreter exit if nobody cleaned it before.
    A forked child gets its own root, not its parent's.
    """
    global _default
    with _default_lock:
        if _default is None or _default.closed or _default_pid != os.getpid():
            _create_default()
        return _default


def _create_default():
    """_create_default sweeps stale roots and makes a fresh default root."""
    global _default, _default_pid
    sweep_stale_roots()
    _default = TempRoot()
    _default_pid = os.getpid()
    atexit.register(_default.cleanup)
