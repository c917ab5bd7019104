"""tests/integration/ha/test_start_timeout.py - a primary whose Postgres never starts.

A 3-node cluster (`pgdaemon cluster up --synchronous-mode`, ttl 5 s, loop
500 ms, retry 1.5 s, start_timeout 8 s through PGDAEMON_START_TIMEOUT)
with the Jepsen-style checker (mgharness/jepsen.py: /primary of every node,
a writer through HAProxy). An invalid setting is appended to the primary's
postgresql.auto.conf (harmless to the others: it is local to that data
directory and pg_basebackup copies the new primary's), then its postmaster
is killed with SIGKILL: every restart fails at once. Asserted: the daemon
releases the leader key (event `ha.start_timeout` naming the node and the
start error), a replica is promoted with a higher term, writes go through
HAProxy again, the old primary ends up as a streaming replica again (its
pg_rewind fails on the broken configuration, so it is re-cloned), no fork
on /primary or in the writes, and every acknowledged insert is present.
No timings are asserted beyond generous bounds.
"""

import json
import os
import signal

import pytest

import hatools
from hatools import run_pgdaemon, wait_for
from test_failover import Cluster, healthy, healthy_or_none, reader, recovered, start_jepsen

START_TIMEOUT_S = 8
HEAL_TIMEOUT = 150
BAD_SETTING = "max_connections = 'not-a-number'  # injected by test_start_timeout\n"


@pytest.fixture(scope="module")
def cluster(tmp_root):
    c = Cluster(tmp_root, os.path.join(hatools.shared_dir(tmp_root, "starttimeout"), "c"))
    up = run_pgdaemon(tmp_root, "cluster", "up", "--nodes", 3, "--dir", c.dir, "--timeout", 90,
                      "--pg-parameter", "fsync=off",
                      "--pg-parameter", "dynamic_shared_memory_type=mmap",
                      "--synchronous-mode", "--ttl", 5,
                      "--loop-wait-ms", 500, "--retry-timeout-ms", 1500, timeout=180,
                      env={"PGDAEMON_START_TIMEOUT": f"{START_TIMEOUT_S}s"})
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield c
    finally:
        if os.path.exists(os.path.join(c.dir, "cluster.json")):
            run_pgdaemon(tmp_root, "cluster", "down", "--dir", c.dir, timeout=180)


def events(c):
    out = run_pgdaemon(c.root, "events", "--json", "--config", c.node("node1")["config"],
                       timeout=30)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_primary_that_cannot_start_releases_the_leader_key(cluster):
    leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    term = v["status"]["term"]
    jepsen = start_jepsen(cluster)
    try:
        jepsen.wait_writes(20, 60)
        data_dir = cluster.node(leader)["data_dir"]
        with open(os.path.join(data_dir, "postgresql.auto.conf"), "a") as f:
            f.write(BAD_SETTING)
        os.kill(hatools.postmaster_pid(data_dir), signal.SIGKILL)

        # the daemon cannot restart it; after start_timeout it lets a replica take over
        new = wait_for(lambda: (lambda x: x[0] if x else None)(
            healthy_or_none(cluster, allow_missing=leader)), HEAL_TIMEOUT,
            "a replica promoted after the old primary's start_timeout")
        assert new != leader
        assert cluster.status()["status"]["term"] > term
        released = [e for e in events(cluster) if e.get("event") == "ha.start_timeout"]
        assert released, "no ha.start_timeout event"
        assert released[-1]["node"] == leader
        assert leader in released[-1]["message"]
        assert "start_timeout" in released[-1]["message"]
        assert "Postgres exited during startup" in released[-1]["message"]
        # writes resume through HAProxy on the new primary
        jepsen.wait_writes(10, 60)
        # the old primary comes back as a replica of the new one (re-cloned: its own
        # configuration still cannot start, so pg_rewind's crash recovery fails)
        recovered(cluster, leader)
        with open(os.path.join(data_dir, "postgresql.auto.conf")) as f:
            assert BAD_SETTING not in f.read()
        jepsen.wait_writes(10, 60)
    finally:
        jepsen.stop()
    report = jepsen.assert_ok(reader(cluster))
    assert report.answers > 150
