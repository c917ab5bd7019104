"""tests/integration/ha/test_failover.py - fault injection on a 3-node cluster.

One cluster (`pgdaemon cluster up --synchronous-mode`, etcd + 3 nodes +
HAProxy, ttl 5 s / loop 500 ms / retry 1.5 s) goes through several faults
in a row, in this order:

1. kill -9 of the primary's postmaster;
2. kill -9 of the primary's daemon (then the daemon is started again);
3. SIGSTOP of the primary's daemon for longer than the ttl, then SIGCONT;
4. a planned switchover (`pgdaemon switchover`);
5. etcd stopped for longer than the ttl, then started again.

After each: queries work through HAProxy, every node reports to etcd, all
nodes are healthy, replication streams to every replica and the old
primary has rejoined. Throughout, the Jepsen-style checker
(mgharness/jepsen.py) polls /primary on every node every 50 ms while a
writer inserts unique ids through HAProxy; at the end: no two nodes' runs
of 200 answers overlap, the acknowledged writes never alternate between
two servers or timelines, and every acknowledged insert is present.
Timings are not asserted here beyond generous bounds (they belong in
tests/bench/ha).
"""

import json
import os
import signal
import subprocess
import time

import pytest

import hatools
from hatools import http_get, query, run_pgdaemon, wait_for

from mgharness import ManagedProcess
from mgharness.jepsen import Jepsen

TTL_S = 5
HEAL_TIMEOUT = 90


class Cluster:
    """Cluster: the state `cluster up` wrote plus the daemons this test restarted."""

    def __init__(self, root, path):
        self.root = root
        self.dir = path
        self.restarted = {}  # node name -> ManagedProcess
        self.etcd_proc = None

    @property
    def state(self):
        with open(os.path.join(self.dir, "cluster.json")) as f:
            return json.load(f)

    @property
    def password(self):
        return self.state["superuser_password"]

    def node(self, name):
        return next(n for n in self.state["nodes"] if n["name"] == name)

    def names(self):
        return [n["name"] for n in self.state["nodes"]]

    def daemon_pid(self, name):
        if name in self.restarted:
            return self.restarted[name].pid
        return [p for p in self.state["processes"] if p["name"] == name][-1]["pid"]

    def status(self):
        out = run_pgdaemon(self.root, "status", "--json", "--config", self.node("node1")["config"],
                           timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def restart_daemon(self, name):
        """restart_daemon starts `pgdaemon run` for name again (harness-managed)."""
        n = self.node(name)
        log = os.path.join(self.dir, name, "pgdaemon-restarted.log")
        old = self.restarted.pop(name, None)
        if old is not None:
            old.stop()
        self.restarted[name] = hatools.start_daemon(self.root, n["config"], log)


LAST_WHY = [""]


def unhealthy(why):
    """unhealthy records why the cluster is not healthy yet (for the timeout message)."""
    LAST_WHY[0] = why


def healthy(c):
    """healthy returns (leader, view) once the cluster has fully recovered, else None."""
    v = c.status()
    LAST_WHY[0] = ""
    nodes = {n["name"]: n for n in v["nodes"]}
    leader = v["leader"]
    if not leader or len(nodes) != 3 or v["status"]["failover_state"] != "stable":
        return unhealthy(f"leader {leader!r}, nodes {sorted(nodes)}, "
                         f"failover {v['status']['failover_state']}")
    prim = nodes.get(leader)
    if prim is None or prim["state"] != "primary" or not prim["pg_queries_ok"]:
        return unhealthy(f"leader {leader} not a healthy primary")
    repl = {r["application_name"]: r["state"] for r in prim["replication"]}
    for name, n in nodes.items():
        if name == leader:
            continue
        if n["state"] != "replica" or not n["streaming"] or not n["pg_queries_ok"]:
            return unhealthy(f"{name}: state {n['state']}, streaming {n['streaming']}, "
                             f"queries {n['pg_queries_ok']} ({n['pg_error']})")
        if repl.get(name) != "streaming":
            return unhealthy(f"primary reports {name} as {repl.get(name)}")
    # replication really streams, as the primary's Postgres says
    rows = query(prim["pg_port"], "SELECT application_name FROM pg_stat_replication "
                 "WHERE state = 'streaming'", password=c.password)
    if sorted(r[0] for r in rows) != sorted(n for n in nodes if n != leader):
        return unhealthy(f"pg_stat_replication streaming: {rows}")
    # and a write through HAProxy lands on the leader
    if query(c.state["write_port"], "SELECT inet_server_port()", password=c.password) != [
            (prim["pg_port"],)]:
        return unhealthy("HAProxy does not route writes to the leader")
    return leader, v


def start_jepsen(cluster):
    """start_jepsen: the shared checker on this cluster - /primary of every node, writes through HAProxy."""
    conn = hatools.connect(cluster.state["write_port"], cluster.password)
    try:
        Jepsen.create_table(conn)
    finally:
        conn.close()
    return Jepsen({n["name"]: ("127.0.0.1", n["http_port"]) for n in cluster.state["nodes"]},
                  {"haproxy": dict(host="127.0.0.1", port=cluster.state["write_port"],
                                   user="postgres", password=cluster.password,
                                   dbname="postgres")}).start()


def reader(cluster):
    """reader returns a function opening a connection to the write port (for Jepsen.check)."""
    return lambda: hatools.connect(cluster.state["write_port"], cluster.password)


@pytest.fixture(scope="module")
def cluster(tmp_root):
    c = Cluster(tmp_root, os.path.join(hatools.shared_dir(tmp_root, "failover"), "c"))
    up = run_pgdaemon(tmp_root, "cluster", "up", "--nodes", 3, "--dir", c.dir, "--timeout", 90,
                      "--pg-parameter", "fsync=off",
                      "--pg-parameter", "dynamic_shared_memory_type=mmap",
                      "--synchronous-mode", "--ttl", TTL_S,
                      "--loop-wait-ms", 500, "--retry-timeout-ms", 1500, timeout=180)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield c
    finally:
        if os.path.exists(os.path.join(c.dir, "cluster.json")):
            run_pgdaemon(tmp_root, "cluster", "down", "--dir", c.dir, timeout=180)
        for proc in c.restarted.values():
            proc.stop()
        if c.etcd_proc is not None:
            c.etcd_proc.stop()


@pytest.fixture(scope="module")
def load(cluster):
    """load: the Jepsen checker (observers and a writer), through every scenario of the module."""
    wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    jepsen = start_jepsen(cluster)
    yield jepsen
    jepsen.stop()


def recovered(cluster, old_primary, expect_new=None):
    """recovered waits for full health and checks the old primary rejoined as a replica."""
    try:
        leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "the cluster to recover")
    except AssertionError as e:
        ev = run_pgdaemon(cluster.root, "events", "--limit", 40, "--config",
                          cluster.node("node1")["config"], timeout=30).stdout
        keep = os.environ.get("MG_HA_KEEP_LOGS")
        if keep:
            subprocess.run(["sh", "-c", f"mkdir -p {keep} && cd {cluster.dir} && "
                            f"cp --parents $(find . -name '*.log') {keep}/"], check=False)
        raise AssertionError(f"{e}\nwhy: {LAST_WHY[0]}\nstatus: {json.dumps(cluster.status())[:6000]}\n"
                             f"events:\n{ev}") from None
    if expect_new is not None:
        assert leader == expect_new
    nodes = {n["name"]: n for n in v["nodes"]}
    if leader != old_primary:
        assert nodes[old_primary]["state"] == "replica"
        assert nodes[old_primary]["streaming"]
    # every node reports under its lease, fresh
    assert sorted(nodes) == sorted(cluster.names())
    return leader


def writes_progress(jepsen, timeout=30):
    """writes_progress waits until the writer got new acknowledgements."""
    jepsen.wait_writes(5, timeout)


def test_kill9_postmaster(cluster, load):
    writer = load
    leader, _ = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    writes_progress(writer)
    pid = hatools.postmaster_pid(cluster.node(leader)["data_dir"])
    os.kill(pid, signal.SIGKILL)
    recovered(cluster, leader)
    writes_progress(writer)


def test_kill9_primary_daemon(cluster, load):
    writer = load
    leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    term = v["status"]["term"]
    os.kill(cluster.daemon_pid(leader), signal.SIGKILL)
    # its watchdog fences Postgres before the lease can expire; another node takes over
    new = wait_for(lambda: (lambda x: x[0] if x and x[0] != leader else None)(healthy_or_none(
        cluster, allow_missing=leader)), HEAL_TIMEOUT, "a new primary")
    assert new != leader
    assert cluster.status()["status"]["term"] > term
    cluster.restart_daemon(leader)
    recovered(cluster, leader)
    writes_progress(writer)


def healthy_or_none(c, allow_missing):
    """healthy_or_none: (leader,) once a primary other than allow_missing leads, else None."""
    v = c.status()
    leader = v["leader"]
    nodes = {n["name"]: n for n in v["nodes"]}
    if not leader or leader == allow_missing or leader not in nodes:
        return None
    if nodes[leader]["state"] != "primary" or not nodes[leader]["pg_queries_ok"]:
        return None
    return (leader,)


def test_sigstop_primary_daemon(cluster, load):
    writer = load
    leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    pid = cluster.daemon_pid(leader)
    data_dir = cluster.node(leader)["data_dir"]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: healthy_or_none(cluster, allow_missing=leader), HEAL_TIMEOUT,
                 "a new primary while the old daemon is stopped")
        # the fence: the stopped daemon's Postgres no longer runs
        assert not hatools.alive(hatools.postmaster_pid(data_dir))
    finally:
        os.kill(pid, signal.SIGCONT)
    recovered(cluster, leader)
    writes_progress(writer)


def test_planned_switchover(cluster, load):
    writer = load
    leader, _ = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    before = writer.acknowledged()
    out = run_pgdaemon(cluster.root, "switchover", "--json", "--config",
                       cluster.node(leader)["config"], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["old_primary"] == leader and result["new_primary"] != leader
    assert 0 < result["write_unavailable_ms"] < 60000
    recovered(cluster, leader, expect_new=result["new_primary"])
    writes_progress(writer)
    assert writer.acknowledged() > before
    # a switchover to a node that is not a replica is refused without a change
    bad = run_pgdaemon(cluster.root, "switchover", "--to", result["new_primary"], "--config",
                       cluster.node(leader)["config"], timeout=60)
    assert bad.returncode != 0 and "already the primary" in bad.stderr


def test_etcd_down_longer_than_ttl(cluster, load):
    writer = load
    leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    rec = [p for p in cluster.state["processes"] if p["role"] == "etcd"][-1]
    if cluster.etcd_proc is not None:
        argv = cluster.etcd_proc.argv
        cluster.etcd_proc.stop()
    else:
        with open(f"/proc/{rec['pid']}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        os.kill(rec["pid"], signal.SIGTERM)
        wait_for(lambda: not hatools.alive(rec["pid"]), 30, "etcd to stop")
    down_at = writer.acknowledged()
    time.sleep(TTL_S + 3)
    # failsafe: the primary still reaches both peers over UDP, so it keeps taking writes
    assert writer.acknowledged() > down_at
    ports = {n["name"]: n["http_port"] for n in cluster.state["nodes"]}
    assert [n for n, p in ports.items() if http_get(p, "/primary")[0] == 200] == [leader]
    cluster.etcd_proc = ManagedProcess(argv, log_path=os.path.join(cluster.dir, "etcd2.log"),
                                       cwd=cluster.dir, tag=cluster.root.path,
                                       on_spawn=cluster.root.record_process,
                                       stop_signal=signal.SIGTERM)
    recovered(cluster, leader)
    writes_progress(writer)


def test_zz_invariants(cluster, load):
    """Last: no fork on /primary or in the writes, and every acknowledged insert is present."""
    writes_progress(load)
    report = load.assert_ok(reader(cluster))
    assert report.answers > 300
    assert report.acknowledged > 100
