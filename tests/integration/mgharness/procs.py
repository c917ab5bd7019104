"""tests/integration/mgharness/procs.py - child processes that cannot outlive the test run.

Every service runs as a ManagedProcess:

* in its own process group (start_new_session), so teardown can signal the
  service and everything it left in that group at once;
* with PR_SET_PDEATHSIG=SIGKILL set through ctypes prctl() in preexec_fn,
  so the kernel kills it if the test runner dies, even by SIGKILL. The
  setting is tied to the *thread* that forked: start services from the
  main thread (pytest fixtures do). The kernel clears it on a credential
  change, so it is set after Popen has switched to the service's user;
* optionally as another OS user (Postgres refuses to run as root).

A process is named by ProcessIdentity (pid + start time from
/proc/<pid>/stat), so a check that a process "is gone" is not fooled by the
pid being reused, and a zombie counts as gone.

stop() sends the service's stop signal, waits a bounded time, then sends
SIGKILL to the process group and to every descendant seen while it ran
(Postgres backends call setsid(), so they are not in the postmaster's
group), and waits until all of them are gone.
"""

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass

from .errors import HarnessError

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

ROOT_TAG_VAR = "MGHARNESS_ROOT"
STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 10.0
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class ProcStat:
    """ProcStat is the part of /proc/<pid>/stat the harness uses."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    starttime: int


def read_stat(pid):
    """read_stat returns the ProcStat of pid, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split
    # after the last ')'. Fields after it start with field 3 (state).
    rest = raw[raw.rfind(")") + 2:].split()
    return ProcStat(pid=pid, state=rest[0], ppid=int(rest[1]), pgrp=int(rest[2]),
                    starttime=int(rest[19]))


def all_stats():
    """all_stats returns the ProcStat of every process currently in /proc."""
    stats = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                stats.append(st)
    return stats


@dataclass(frozen=True)
class ProcessIdentity:
    """ProcessIdentity names one process: pid plus its start time in clock ticks."""

    pid: int
    starttime: int

    @classmethod
    def of(cls, pid):
        """of returns the identity of the live process pid, or None."""
        st = read_stat(pid)
        return None if st is None else cls(pid, st.starttime)

    def alive(self):
        """alive returns True while this very process exists and is not a zombie."""
        st = read_stat(self.pid)
        return st is not None and st.starttime == self.starttime and st.state not in ("Z", "X")

    def kill(self, sig=signal.SIGKILL):
        """kill sends sig to the process if it is still this identity."""
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def to_json(self):
        """to_json returns [pid, starttime]."""
        return [self.pid, self.starttime]

    @classmethod
    def from_json(cls, value):
        """from_json is the inverse of to_json."""
        return cls(int(value[0]), int(value[1]))


def descendants(pid, stats=None):
    """descendants returns identities of all live descendants of pid (not pid itself)."""
    stats = all_stats() if stats is None else stats
    children = {}
    for st in stats:
        children.setdefault(st.ppid, []).append(st)
    found, todo = [], [pid]
    while todo:
        for st in children.get(todo.pop(), []):
            found.append(ProcessIdentity(st.pid, st.starttime))
            todo.append(st.pid)
    return found


def group_members(pgid, not_before):
    """group_members returns identities in process group pgid started at or after not_before."""
    return [ProcessIdentity(st.pid, st.starttime) for st in all_stats()
            if st.pgrp == pgid and st.starttime >= not_before]


def tagged_processes(tag):
    """tagged_processes returns live processes whose environment has MGHARNESS_ROOT=tag.

    Children inherit the environment, so this finds descendants that left
    the process group or were orphaned (readable: own processes, or all as root).
    """
    needle = f"{ROOT_TAG_VAR}={tag}".encode()
    found = []
    for st in all_stats():
        if st.pid == os.getpid() or st.state in ("Z", "X"):
            continue
        try:
            with open(f"/proc/{st.pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found.append(ProcessIdentity(st.pid, st.starttime))
    return found


def wait_gone(identities, timeout):
    """wait_gone returns the identities still alive after waiting up to timeout seconds."""
    deadline = time.monotonic() + timeout
    alive = [i for i in identities if i.alive()]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        alive = [i for i in alive if i.alive()]
    return alive


@dataclass(frozen=True)
class RunAs:
    """RunAs is the OS user a child runs as: uid, gid and supplementary groups."""

    user: str
    uid: int
    gid: int
    groups: tuple

    @classmethod
    def named(cls, user):
        """named returns the RunAs of an existing OS user (KeyError if unknown)."""
        import pwd

        pw = pwd.getpwnam(user)
        return cls(user, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(user, pw.pw_gid)))


def _make_preexec(parent_pid):
    """_make_preexec returns the preexec_fn that arms PDEATHSIG in the child."""

    def preexec():
        if _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died before prctl ran: then nobody would kill us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class ManagedProcess:
    """ManagedProcess is one child process with guaranteed, bounded teardown.

    Attributes: argv, log_path, pid, pgid, identity (ProcessIdentity),
    stop_signal, popen (the subprocess.Popen).
    """

    def __init__(self, argv, *, log_path, cwd, env=None, run_as=None,
                 stop_signal=signal.SIGTERM, on_spawn=None, tag=None):
        """__init__ starts argv now, stdout+stderr appended to log_path.

        run_as is a RunAs or None (current user). on_spawn(identity) is
        called right after the fork, e.g. to record the pid in the temp
        root. tag, if given, is put into the environment as
        MGHARNESS_ROOT=<tag> (see tagged_processes). Raises OSError when
        the program cannot be executed.
        """
        if tag is not None:
            env = dict(os.environ if env is None else env)
            env[ROOT_TAG_VAR] = str(tag)
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.stop_signal = stop_signal
        self._seen = set()
        kwargs = {}
        if run_as is not None and run_as.uid != os.geteuid():
            kwargs = dict(user=run_as.uid, group=run_as.gid, extra_groups=list(run_as.groups))
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=cwd, env=env, close_fds=True, start_new_session=True,
                preexec_fn=_make_preexec(os.getpid()), **kwargs)
        self.pid = self.popen.pid
        self.pgid = self.pid
        st = read_stat(self.pid)
        # The child cannot be reaped before we wait for it, so st exists.
        self.identity = ProcessIdentity(self.pid, st.starttime if st else 0)
        if on_spawn is not None:
            on_spawn(self.identity)

    def running(self):
        """running returns True while the main process has not exited."""
        return self.identity.alive()

    def returncode(self):
        """returncode returns the exit status once the process ended, else None.

        It peeks with waitid(WNOWAIT) and does not reap: while the zombie
        exists its pid, which is also the process group id, cannot be reused.
        """
        if self.popen.returncode is not None:
            return self.popen.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.popen.poll()
        if info is None or info.si_pid == 0:
            return None
        if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            return -info.si_status
        return info.si_status

    def wait(self, timeout):
        """wait returns the exit status, or raises subprocess.TimeoutExpired."""
        return self.popen.wait(timeout)

    def tree(self):
        """tree returns identities of the main process and its live descendants."""
        found = [self.identity] if self.identity.alive() else []
        found += descendants(self.pid)
        self._seen.update(found)
        return found

    def _wait_main_exit(self, timeout):
        """_wait_main_exit waits (without reaping) until the main process is gone or a zombie.

        While waiting it keeps collecting descendants so children spawned
        during shutdown are also killed afterwards. Returns True if it ended.
        """
        deadline = time.monotonic() + timeout
        while self.identity.alive():
            self.tree()
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def _kill_everything(self):
        """_kill_everything SIGKILLs the group and every descendant seen, then reaps.

        killpg is used only while the main process is not yet reaped, so its
        pid (= the group id) cannot belong to another group by then.
        Raises HarnessError if anything survives KILL_TIMEOUT.
        """
        self.tree()
        self.identity.kill(signal.SIGKILL)
        self._wait_main_exit(KILL_TIMEOUT)
        victims = set(self._seen)
        if self.popen.returncode is None:
            victims |= set(group_members(self.pgid, self.identity.starttime))
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for ident in victims:
            ident.kill(signal.SIGKILL)
        try:
            self.popen.wait(KILL_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        left = wait_gone(victims | {self.identity}, KILL_TIMEOUT)
        if left:
            raise HarnessError(f"processes survived SIGKILL: {[i.pid for i in left]} "
                               f"(started as {self.argv[0]})")

    def stop(self, timeout=STOP_TIMEOUT, sig=None):
        """stop sends sig (default: stop_signal), waits up to timeout, then kills everything.

        Returns the main process's exit status. Idempotent.
        """
        self.tree()
        if self.identity.alive():
            try:
                os.kill(self.pid, sig if sig is not None else self.stop_signal)
            except ProcessLookupError:
                pass
            self._wait_main_exit(timeout)
        self._kill_everything()
        return self.popen.returncode

    def kill9(self):
        """kill9 SIGKILLs the process, its group and its descendants at once (a crash)."""
        self._kill_everything()
        return self.popen.returncode
