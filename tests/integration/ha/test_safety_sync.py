"""tests/integration/ha/test_safety_sync.py - synchronous mode stays synchronous across a failover.

Issue 16, finding 4 (reproduced before the fix): after a node-loss
failover in synchronous mode the new primary ran with
synchronous_standby_names = '' although a standby was alive, so every
commit in that window was acknowledged without any standby holding it.

Each test has its own 3-node cluster (`pgdaemon cluster up
--synchronous-mode`, ttl 5 s, loop 500 ms, retry 1.5 s).

test_new_primary_is_synchronous_after_node_loss: the primary node is lost
at once (daemon, watchdog and postmaster killed with SIGKILL). From the
first moment the new primary's /primary answers 200:

- every fresh session on it sees a non-empty synchronous_standby_names;
- with the only live standby frozen (SIGSTOP of its postmaster and every
  child), a commit on
  the new primary is not acknowledged; it is once the standby runs again.

test_dead_old_primary_leaves_the_sync_set (finding 14; fails on the code
before the fix, which made every other node of the view a sync member at
promotion): the primary's Postgres cannot start again (an invalid setting,
then SIGKILL of its postmaster), so after start_timeout it releases the
leader key and a replica B is promoted while the old primary's daemon still
reports it (demoted, Postgres down). From B's first status on, etcd's sync
set must not name the old primary. Then the old primary's daemon is paused
(it cannot re-clone itself back into health), the other standby C frozen
(so B's set cannot be narrowed meanwhile) and B is lost: C must be
promoted without allow_data_loss (with the old primary in the set, every
failover waited for its report).

test_sync_set_keeps_the_member_with_the_commits (finding 5, reproduced
before the fix: the commit was lost): with standby B frozen, a commit is
acknowledged by standby A alone; then A's Postgres dies (its daemon
paused), so the primary narrows Postgres' set to B. etcd's sync set must
keep A while B has not flushed what A acknowledged. The primary node is
then lost, B and A run again: the node promoted holds the commit.
"""

import os
import signal
import threading
import time

import psycopg2
import pytest

import hacluster
import hatools
from hatools import http_get, query, wait_for
from test_failover import healthy, healthy_or_none

HEAL_TIMEOUT = 120


@pytest.fixture
def cluster(tmp_root):
    yield from hacluster.up(tmp_root, "safetysync", "--synchronous-mode", *hacluster.FAST)


def kill_node(c, name):
    """kill_node: SIGKILL the node's daemon with its watchdog (one process group) and Postgres."""
    pm = hatools.postmaster_pid(c.node(name)["data_dir"])
    os.killpg(os.getpgid(c.daemon_pid(name)), signal.SIGKILL)
    if pm and hatools.alive(pm):
        os.killpg(pm, signal.SIGKILL)  # the daemon starts Postgres in its own session


def postgres_pids(data_dir):
    """postgres_pids: the postmaster of data_dir and its children (each in its own session)."""
    pm = hatools.postmaster_pid(data_dir)
    pids = [pm]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pm:
                pids.append(int(entry))
    return pids


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Commit(threading.Thread):
    """Commit runs one autocommit INSERT on port and records when it was acknowledged."""

    def __init__(self, port, password, value):
        super().__init__(daemon=True)
        self.port, self.password, self.value = port, password, value
        self.acked_at = None
        self.error = None

    def run(self):
        try:
            conn = hatools.connect(self.port, self.password)
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO sync_check (n) VALUES (%s)", (self.value,))
                self.acked_at = time.monotonic()
            finally:
                conn.close()
        except psycopg2.Error as e:
            self.error = e


def test_new_primary_is_synchronous_after_node_loss(cluster):
    leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    pw = cluster.password
    query(cluster.state["write_port"], "CREATE TABLE sync_check (n int)", password=pw)
    kill_node(cluster, leader)
    new = wait_for(lambda: healthy_or_none(cluster, allow_missing=leader), HEAL_TIMEOUT,
                   "a new primary")[0]
    node = cluster.node(new)
    wait_for(lambda: http_get(node["http_port"], "/primary")[0] == 200, HEAL_TIMEOUT,
             f"/primary 200 on {new}")
    assert cluster.status()["status"]["term"] > v["status"]["term"]
    # from the first 200 on, every new session sees synchronous replication configured
    seen = []
    until = time.monotonic() + 8
    while time.monotonic() < until:
        seen.append(query(node["pg_port"], "SHOW synchronous_standby_names", password=pw)[0][0])
        time.sleep(0.1)
    assert seen and all(s.strip() != "" for s in seen), \
        f"new primary {new} ran asynchronously: synchronous_standby_names samples {seen}"
    # and a commit waits for the live standby: frozen, nothing is acknowledged
    other = next(n for n in cluster.names() if n not in (leader, new))
    frozen = postgres_pids(cluster.node(other)["data_dir"])
    signal_all(frozen, signal.SIGSTOP)
    try:
        commit = Commit(node["pg_port"], pw, 1)
        commit.start()
        commit.join(4)
        assert commit.acked_at is None and commit.error is None, \
            f"commit on {new} acknowledged while its only live standby {other} was stopped"
    finally:
        signal_all(frozen, signal.SIGCONT)
    commit.join(60)
    assert commit.error is None and commit.acked_at is not None, commit.error
    rows = query(node["pg_port"], "SELECT n FROM sync_check", password=pw)
    assert rows == [(1,)]


def sync_names(port, pw):
    """sync_names: the standby names of synchronous_standby_names ('ANY 1 ("a", "b")')."""
    text = query(port, "SHOW synchronous_standby_names", password=pw)[0][0]
    inner = text[text.find("(") + 1:text.rfind(")")] if "(" in text else ""
    return sorted(n.strip().strip('"') for n in inner.split(",") if n.strip())


def test_sync_set_keeps_the_member_with_the_commits(cluster):
    leader, _ = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    pw = cluster.password
    port = cluster.node(leader)["pg_port"]
    query(port, "CREATE TABLE sync_check (n int)", password=pw)
    a, b = [n for n in cluster.names() if n != leader]
    wait_for(lambda: sync_names(port, pw) == sorted([a, b]), 60, "both standbys in the sync set")
    b_procs = postgres_pids(cluster.node(b)["data_dir"])
    signal_all(b_procs, signal.SIGSTOP)
    a_daemon = cluster.daemon_pid(a)
    try:
        # acknowledged: A flushed it (B is frozen)
        query(port, "INSERT INTO sync_check VALUES (42)", password=pw)
        # A's Postgres dies and stays down: its daemon is paused
        os.kill(a_daemon, signal.SIGSTOP)
        os.kill(hatools.postmaster_pid(cluster.node(a)["data_dir"]), signal.SIGKILL)
        wait_for(lambda: sync_names(port, pw) == [b], 60, f"Postgres' sync set narrowed to {b}")
        time.sleep(3)  # several rounds: etcd's set would have been narrowed by now
        members = cluster.status()["status"]["sync_members"]
        assert a in members, f"etcd's sync set {members} dropped {a}, the only holder of the commit"
        kill_node(cluster, leader)
    finally:
        signal_all(b_procs, signal.SIGCONT)
        os.kill(a_daemon, signal.SIGCONT)
    new = wait_for(lambda: healthy_or_none(cluster, allow_missing=leader), HEAL_TIMEOUT,
                   "a new primary")[0]
    rows = query(cluster.node(new)["pg_port"], "SELECT n FROM sync_check", password=pw)
    assert rows == [(42,)], f"{new} was promoted without the acknowledged commit: {rows}"


START_TIMEOUT_S = 8
BAD_SETTING = "max_connections = 'not-a-number'  # injected by test_safety_sync\n"


@pytest.fixture
def cluster_start_timeout(tmp_root):
    yield from hacluster.up(tmp_root, "safetysync14", "--synchronous-mode", *hacluster.FAST,
                            env={"PGDAEMON_START_TIMEOUT": f"{START_TIMEOUT_S}s"})


def test_dead_old_primary_leaves_the_sync_set(cluster_start_timeout):
    c = cluster_start_timeout
    leader, v = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster")
    pw, term = c.password, v["status"]["term"]
    query(c.state["write_port"], "CREATE TABLE sync_check (n int)", password=pw)
    data_dir = c.node(leader)["data_dir"]
    with open(os.path.join(data_dir, "postgresql.auto.conf"), "a") as f:
        f.write(BAD_SETTING)
    os.kill(hatools.postmaster_pid(data_dir), signal.SIGKILL)

    def promoted():
        st = hatools.cluster_status_key(c)
        return st if st.get("term", 0) > term and st.get("primary") not in (None, "", leader) \
            else None

    # the old primary's daemon releases the key after start_timeout; a replica is promoted
    st = wait_for(promoted, HEAL_TIMEOUT, "a replica promoted after start_timeout", interval=0.05)
    new = st["primary"]
    other = next(n for n in c.names() if n not in (leader, new))
    frozen = postgres_pids(c.node(other)["data_dir"])
    signal_all(frozen, signal.SIGSTOP)
    old_daemon = c.daemon_pid(leader)
    os.kill(old_daemon, signal.SIGSTOP)
    try:
        assert leader not in st.get("sync_members", []), \
            f"the dead old primary {leader} is a sync member of {new}: {st}"
        assert hatools.alive(old_daemon)
        members = hatools.cluster_status_key(c).get("sync_members", [])
        assert leader not in members, f"sync set {members} names the dead old primary {leader}"
        kill_node(c, new)
    finally:
        signal_all(frozen, signal.SIGCONT)
    try:
        # no allow_data_loss: the set holds only nodes that can report
        third = wait_for(lambda: healthy_or_none(c, allow_missing=new), HEAL_TIMEOUT,
                         f"{other} promoted after the loss of {new}")[0]
        assert third == other
        st = hatools.cluster_status_key(c)
        assert st["term"] > term + 1 and st["primary"] == other
    finally:
        os.kill(old_daemon, signal.SIGCONT)
