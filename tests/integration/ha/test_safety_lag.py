"""tests/integration/ha/test_safety_lag.py - failover_max_lag measured against what is known.

Issue 16, finding 18: in asynchronous mode a replica is promoted only
within failover_max_lag of the lost primary's position; the code before
the fix measured that against the optime key alone, which the primary
publishes now and then, so a replica could be promoted that lacked far more
than failover_max_lag of acknowledged writes.

test_lag_is_measured_against_the_freshest_position (fails on the old code:
B was promoted and ~5 MB of acknowledged inserts were lost): a 3-node
asynchronous cluster (`cluster up`, ttl 5 s, loop 500 ms, retry 1.5 s,
failover_max_lag 1 MB), C made nofailover. B's walreceiver is frozen, then
the primary A's daemon is paused (it publishes nothing more) and ~5 MB of
inserts are acknowledged on A's Postgres, which C receives. The watchdog
fences A and its lease lapses: B, which lacks the 5 MB, must not be
promoted (C's report shows how far A got). A's daemon is resumed: A takes
the leader key back and every acknowledged insert is there.
"""

import os
import signal
import time

import pytest

import hacluster
import hatools
from hatools import query, wait_for
from test_failover import healthy, healthy_or_none

HEAL_TIMEOUT = 120
TTL_S = 5


@pytest.fixture
def cluster(tmp_root):
    yield from hacluster.up(tmp_root, "safetylag", *hacluster.FAST)


def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def test_lag_is_measured_against_the_freshest_position(cluster):
    c = cluster
    leader, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster")
    pw = c.password
    a = leader
    b, nofail = [n for n in c.names() if n != a]
    # C never promotes: its daemon runs again with nofailover
    hatools.stop_process(c.daemon_pid(nofail))
    hatools.set_node_options(c.node(nofail)["config"], nofailover=True)
    c.restart_daemon(nofail)
    leader, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster again")
    assert leader == a
    a_port = c.node(a)["pg_port"]
    query(a_port, "CREATE TABLE lag_check (n int PRIMARY KEY, pad text)", password=pw)
    start = lsn(query(a_port, "SELECT pg_current_wal_lsn()::text", password=pw)[0][0])
    for name in (b, nofail):
        wait_for(lambda: lsn(query(c.node(name)["pg_port"], "SELECT pg_last_wal_replay_lsn()::text",
                                   password=pw)[0][0]) >= start, 60, f"{name} caught up")
    term = hatools.cluster_status_key(c)["term"]
    walrcv = hatools.walreceiver_pid(c.node(b)["data_dir"])
    assert walrcv, f"no walreceiver on {b}"
    a_daemon = c.daemon_pid(a)
    os.kill(walrcv, signal.SIGSTOP)
    os.kill(a_daemon, signal.SIGSTOP)
    acked = []
    try:
        # acknowledged on A after its daemon's last publication; C streams them, B does not
        conn = hatools.connect(a_port, pw)
        try:
            with conn.cursor() as cur:
                for chunk in range(4):
                    cur.execute("INSERT INTO lag_check SELECT g, repeat('x', 1200) FROM "
                                "generate_series(%s, %s) g", (chunk * 1000 + 1, chunk * 1000 + 1000))
                    acked.extend(range(chunk * 1000 + 1, chunk * 1000 + 1001))
                cur.execute("SELECT pg_current_wal_lsn()::text")
                end = lsn(cur.fetchone()[0])
        finally:
            conn.close()
        b_lsn = lsn(query(c.node(b)["pg_port"], "SELECT pg_last_wal_receive_lsn()::text",
                          password=pw)[0][0])
        assert end - b_lsn > 3 * 1024 * 1024, f"{b} received too much: {end - b_lsn} bytes behind"
        wait_for(lambda: lsn(query(c.node(nofail)["pg_port"],
                                   "SELECT pg_last_wal_receive_lsn()::text",
                                   password=pw)[0][0]) >= end, 30, f"{nofail} received the inserts")
        # the watchdog fences A; its lease lapses; B must not be promoted
        wait_for(lambda: not hatools.alive(hatools.postmaster_pid(c.node(a)["data_dir"])),
                 30, f"the watchdog to fence {a}")
        until = time.monotonic() + 3 * TTL_S + 5
        leader_key = f"/pgdaemon/{c.state['cluster']}/leader"
        while time.monotonic() < until:
            st = hatools.cluster_status_key(c)
            holder = hatools.etcd_get(c.state["etcd_endpoint"], leader_key)
            assert st["term"] == term and st["primary"] == a and holder in (None, a), \
                f"{b} was promoted {end - b_lsn} bytes behind the primary's last position " \
                f"(leader key {holder!r}, status {st})"
            time.sleep(0.2)
    finally:
        os.kill(a_daemon, signal.SIGCONT)
    try:
        back = wait_for(lambda: healthy_or_none(c, allow_missing=None), HEAL_TIMEOUT,
                        f"{a} back as primary")[0]
        assert back == a
    finally:
        os.kill(walrcv, signal.SIGCONT)
    leader, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster at the end")
    rows = query(c.node(leader)["pg_port"], "SELECT count(*), min(n), max(n) FROM lag_check",
                 password=pw)[0]
    assert rows == (len(acked), 1, len(acked)), f"acknowledged inserts lost: {rows}"


@pytest.fixture
def slow_loop_cluster(tmp_root):
    yield from hacluster.up(tmp_root, "optime", "--ttl", 16, "--loop-wait-ms", 6000,
                            "--retry-timeout-ms", 2000)


def test_optime_follows_the_wal_between_loops(slow_loop_cluster):
    """optime is published between loops once the WAL moved by a quarter of failover_max_lag.

    The code before published it once per loop (here every 6 s), so what a
    failover measured candidates against could trail the primary by a loop
    of WAL. Three bursts of ~2 MB: after each, optime reaches the burst's
    end within 2.5 s (the old code: by chance, about one time in 2.4 per
    burst)."""
    c = slow_loop_cluster
    leader, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster")
    pw, port = c.password, c.node(leader)["pg_port"]
    key = f"/pgdaemon/{c.state['cluster']}/optime"
    query(port, "CREATE TABLE burst (n int, pad text)", password=pw)
    for i in range(3):
        query(port, "INSERT INTO burst SELECT g, repeat('y', 1200) FROM generate_series(1, 1500) g",
              password=pw)
        end = lsn(query(port, "SELECT pg_current_wal_lsn()::text", password=pw)[0][0])
        wait_for(lambda: lsn(hatools.etcd_get(c.state["etcd_endpoint"], key)) >= end - 256 * 1024,
                 2.5, f"optime to follow burst {i} to {end:X}", interval=0.05)
        time.sleep(1)
