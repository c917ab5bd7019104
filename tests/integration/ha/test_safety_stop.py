"""tests/integration/ha/test_safety_stop.py - a graceful stop never leaves a writable old primary.

Issue 16, finding 1: with `on_stop: leave`, SIGTERM stopped the watchdog,
left Postgres read-write and revoked the lease; `leader` vanished, a
replica was promoted within a second, and the old postmaster still took
writes, unfenced: two writers.

A 3-node cluster whose daemons run with on_stop=leave
(PGDAEMON_ON_STOP=leave, inherited from `cluster up`). SIGTERM to a
replica's daemon leaves its Postgres running (what leave is for). SIGTERM
to the primary's daemon: a replica is promoted, and from then on the old
primary's Postgres takes no write (the connection is refused or the write
fails), checked by an INSERT straight to its port.
"""

import os
import signal
import time

import psycopg2
import pytest

import hacluster
import hatools
from hatools import query, wait_for
from test_failover import healthy, healthy_or_none

HEAL_TIMEOUT = 120


@pytest.fixture(scope="module")
def cluster(tmp_root):
    yield from hacluster.up(tmp_root, "safetystop", *hacluster.FAST, env={"PGDAEMON_ON_STOP": "leave"})


def write_fails(port, password):
    """write_fails: True when an INSERT straight to port is not acknowledged."""
    try:
        conn = hatools.connect(port, password)
    except psycopg2.OperationalError:
        return True
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '5s'")
            cur.execute("INSERT INTO stop_check VALUES (1)")
        return False
    except psycopg2.Error:
        return True
    finally:
        conn.close()


def test_sigterm_with_on_stop_leave(cluster):
    leader, _ = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    pw = cluster.password
    query(cluster.state["write_port"], "CREATE TABLE stop_check (n int)", password=pw)
    # a replica's Postgres stays up when its daemon stops: that is what leave is for
    replica = next(n for n in cluster.names() if n != leader)
    rdir = cluster.node(replica)["data_dir"]
    rpm = hatools.postmaster_pid(rdir)
    os.kill(cluster.daemon_pid(replica), signal.SIGTERM)
    wait_for(lambda: not hatools.alive(cluster.daemon_pid(replica)), 60, "the replica's daemon to exit")
    assert hatools.alive(rpm) and hatools.postmaster_pid(rdir) == rpm
    cluster.restart_daemon(replica)
    leader, _ = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster again")
    # the primary's daemon stops: a new primary, and the old Postgres takes no write
    old = cluster.node(leader)
    os.kill(cluster.daemon_pid(leader), signal.SIGTERM)
    new = wait_for(lambda: healthy_or_none(cluster, allow_missing=leader), HEAL_TIMEOUT,
                   "a new primary")[0]
    assert new != leader
    for _ in range(20):
        assert write_fails(old["pg_port"], pw), \
            f"old primary {leader} still takes writes after its daemon stopped and {new} leads"
        time.sleep(0.1)
    assert query(cluster.node(new)["pg_port"], "SELECT count(*) FROM stop_check",
                 password=pw) == [(0,)]
