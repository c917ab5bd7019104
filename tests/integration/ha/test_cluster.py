"""tests/integration/ha/test_cluster.py - `pgdaemon cluster up/down` with 3 nodes.

One cluster per module (etcd + 3 pgdaemon nodes + HAProxy on free loopback
ports), the tests run in order against it:

* up within 60 s: every node reports to etcd, one primary, two streaming
  replicas each on its own slot;
* a table written through the HAProxy write port is readable on both replicas;
* /status, `pgdaemon status` and the endpoints agree with pg_stat_replication;
* restarting the daemon of a replica, then of the primary (SIGTERM, start):
  the cluster returns to healthy, nothing is lost, no failover happened;
* `cluster down` leaves no process.
"""

import json
import os
import signal
import subprocess
import time

import psycopg2
import pytest

import hatools
from hatools import PGDAEMON, http_get, query, run_pgdaemon, wait_for


class Cluster:
    """Cluster is what `cluster up` produced: its dir, output and state file."""

    def __init__(self, root, path):
        self.root = root
        self.dir = path
        self.restarted = []
        self.up = None
        self.elapsed = None
        self.primary = None  # whichever node won the bootstrap

    @property
    def replicas(self):
        return sorted(n["name"] for n in self.state["nodes"] if n["name"] != self.primary)

    @property
    def state(self):
        with open(os.path.join(self.dir, "cluster.json")) as f:
            return json.load(f)

    @property
    def password(self):
        return self.state["superuser_password"]

    def node(self, name):
        return next(n for n in self.state["nodes"] if n["name"] == name)

    def daemon_pid(self, name):
        found = [p for p in self.state["processes"] if p["name"] == name]
        return found[-1]["pid"]

    def status(self):
        out = run_pgdaemon(self.root, "status", "--json", "--config",
                           self.node("node1")["config"], timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def q(self, port, sql, params=None):
        return query(port, sql, params, password=self.password)


def healthy(c, primary=None):
    """healthy returns the status view when primary leads and both others stream."""
    v = c.status()
    primary = primary or c.primary or v["leader"]
    nodes = {n["name"]: n for n in v["nodes"]}
    if v["leader"] != primary or len(nodes) != 3:
        return None
    prim = nodes[primary]
    if prim["state"] != "primary" or not prim["pg_queries_ok"]:
        return None
    repl = {r["application_name"]: r for r in prim["replication"]}
    for name, n in nodes.items():
        if name == primary:
            continue
        if n["state"] != "replica" or not n["streaming"]:
            return None
        if repl.get(name, {}).get("state") != "streaming":
            return None
    return v


@pytest.fixture(scope="module")
def cluster(tmp_root):
    c = Cluster(tmp_root, os.path.join(hatools.shared_dir(tmp_root, "cluster"), "c"))
    t0 = time.monotonic()
    c.up = run_pgdaemon(tmp_root, "cluster", "up", "--nodes", 3, "--dir", c.dir, "--timeout", 60,
                        "--pg-parameter", "fsync=off",
                        "--pg-parameter", "dynamic_shared_memory_type=mmap", timeout=180)
    c.elapsed = time.monotonic() - t0
    try:
        yield c
    finally:
        if os.path.exists(os.path.join(c.dir, "cluster.json")):
            run_pgdaemon(tmp_root, "cluster", "down", "--dir", c.dir, timeout=180)
        for proc in c.restarted:
            proc.stop()


def test_cluster_up_within_60s(cluster):
    assert cluster.up.returncode == 0, cluster.up.stdout + cluster.up.stderr
    assert cluster.elapsed < 60
    out = cluster.up.stdout
    state = cluster.state
    assert f"write:  postgresql://postgres@127.0.0.1:{state['write_port']}/postgres" in out
    assert f"read:   postgresql://postgres@127.0.0.1:{state['read_port']}/postgres" in out
    v = healthy(cluster)
    assert v is not None, cluster.status()
    cluster.primary = v["leader"]
    assert len(v["nodes"]) == 3
    assert sum(1 for n in v["nodes"] if n["state"] == "primary") == 1
    # each replica streams on its own slot, as the primary itself says
    primary = cluster.node(v["leader"])
    slots = dict(cluster.q(primary["pg_port"],
                           "SELECT slot_name, active FROM pg_replication_slots "
                           "WHERE slot_type = 'physical'"))
    assert slots == {f"pgdaemon_{r}": True for r in cluster.replicas}
    pids = dict(cluster.q(primary["pg_port"],
                          "SELECT application_name, pid FROM pg_stat_replication"))
    by_slot = dict(cluster.q(primary["pg_port"],
                             "SELECT slot_name, active_pid FROM pg_replication_slots"))
    for r in cluster.replicas:
        assert by_slot[f"pgdaemon_{r}"] == pids[r]


def test_writes_through_haproxy_visible_on_replicas(cluster):
    state = cluster.state
    cluster.q(state["write_port"], "CREATE TABLE accounts (id int PRIMARY KEY, note text)")
    cluster.q(state["write_port"],
              "INSERT INTO accounts SELECT g, 'row ' || g FROM generate_series(1, 100) g")
    assert cluster.q(state["write_port"], "SELECT pg_is_in_recovery()") == [(False,)]
    for name in cluster.replicas:
        port = cluster.node(name)["pg_port"]
        wait_for(lambda p=port: cluster.q(p, "SELECT count(*) FROM accounts") == [(100,)], 20,
                 f"rows on {name}")
        assert cluster.q(port, "SELECT pg_is_in_recovery()") == [(True,)]
    # the read port lands on a replica, once HAProxy's /replica checks have
    # marked one up (they run every second; right after `cluster up` a
    # connection may still be refused)
    def read_port_on_replica():
        try:
            return cluster.q(state["read_port"], "SELECT pg_is_in_recovery()") == [(True,)]
        except psycopg2.OperationalError:
            return False

    wait_for(read_port_on_replica, 20, "the read port on a replica")
    assert cluster.q(state["read_port"], "SELECT count(*) FROM accounts") == [(100,)]


def test_status_and_endpoints_agree_with_pg_stat_replication(cluster):
    v = wait_for(lambda: healthy(cluster), 20, "healthy cluster")
    primary = cluster.node(cluster.primary)
    rows = cluster.q(primary["pg_port"],
                     "SELECT application_name, state FROM pg_stat_replication ORDER BY 1")
    assert rows == [(r, "streaming") for r in cluster.replicas]
    leader = next(n for n in v["nodes"] if n["name"] == v["leader"])
    assert sorted((r["application_name"], r["state"]) for r in leader["replication"]) == rows
    assert sorted(leader["slots"]) == [f"pgdaemon_{r}" for r in cluster.replicas]
    sysid = cluster.q(primary["pg_port"], "SELECT system_identifier::text FROM pg_control_system()")
    assert v["initialize"]["system_identifier"] == sysid[0][0]
    assert all(n["system_identifier"] == sysid[0][0] for n in v["nodes"])
    # the table of `pgdaemon status`
    out = run_pgdaemon(cluster.root, "status", "--config", primary["config"], timeout=30)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines()[2:] if line}
    assert lines[cluster.primary][1:3] == ["primary", "primary"]
    for name in cluster.replicas:
        assert lines[name][1:3] == ["replica", "replica"]
        assert "streaming" in lines[name] and "yes" in lines[name]
    assert f"leader {cluster.primary}" in out.stdout
    # the HTTP endpoints of each node
    for n in cluster.state["nodes"]:
        port = n["http_port"]
        code, body = http_get(port, "/status")
        assert code == 200
        st = json.loads(body)
        is_primary = n["name"] == cluster.primary
        assert st["state"] == ("primary" if is_primary else "replica")
        assert st["holds_leader"] is is_primary
        assert http_get(port, "/primary")[0] == (200 if is_primary else 503)
        assert http_get(port, "/replica")[0] == (503 if is_primary else 200)
        assert http_get(port, "/health")[0] == 200
        metrics = http_get(port, "/metrics")[1]
        assert f'pgdaemon_state{{state="{st["state"]}"}} 1' in metrics
        assert f"pgdaemon_primary_ok {1 if is_primary else 0}" in metrics
        if not is_primary:
            assert http_get(port, "/replica?lag=0")[0] in (200, 503)
            assert http_get(port, "/replica?lag=1GB")[0] == 200
            assert http_get(port, "/replica?lag=lots")[0] == 400
    # read-only: nothing but GET/HEAD
    req = urllib_request("POST", primary["http_port"], "/primary")
    assert req == 405


def urllib_request(method, port, path):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", data=b"x", method=method), timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_events_cli(cluster):
    out = run_pgdaemon(cluster.root, "events", "--json", "--config",
                       cluster.node("node1")["config"], timeout=30)
    assert out.returncode == 0, out.stderr
    evs = [json.loads(line) for line in out.stdout.splitlines()]
    trans = [(e["node"], e["from"], e["to"]) for e in evs if e["event"] == "ha.transition"]
    assert (cluster.primary, "init", "bootstrap") in trans
    assert (cluster.primary, "bootstrap", "primary") in trans
    for name in cluster.replicas:
        assert (name, "clone", "replica") in trans
    # each record carries the inputs of the decision
    assert all("lease" in e and "revision" in e and "leader" in e for e in evs)
    text = run_pgdaemon(cluster.root, "events", "--limit", 3, "--config",
                        cluster.node("node1")["config"], timeout=30)
    assert len(text.stdout.splitlines()) == 3


def stop_daemon(cluster, name):
    """stop_daemon SIGTERMs a node's daemon and waits until it and its Postgres are gone."""
    pid = cluster.daemon_pid(name) if not cluster.restarted else None
    for proc in cluster.restarted:
        if proc.argv[-1].endswith(f"/{name}.json") and proc.running():
            pid = proc.pid
    if pid is None:
        pid = cluster.daemon_pid(name)
    pg = hatools.postmaster_pid(cluster.node(name)["data_dir"])
    assert hatools.alive(pid) and hatools.alive(pg)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not hatools.alive(pid), 60, f"daemon of {name} to exit")
    wait_for(lambda: not hatools.alive(pg), 30, f"Postgres of {name} to stop")


def restart_daemon(cluster, name):
    node = cluster.node(name)
    proc = hatools.start_daemon(cluster.root, node["config"],
                                os.path.join(cluster.dir, name, "pgdaemon.restart.log"))
    cluster.restarted.append(proc)
    return proc


def test_restart_replica(cluster):
    state = cluster.state
    replica = cluster.replicas[0]
    stop_daemon(cluster, replica)
    # writes go on while the replica is away
    cluster.q(state["write_port"],
              "INSERT INTO accounts SELECT g, 'while a replica was down' "
              "FROM generate_series(101, 150) g")
    restart_daemon(cluster, replica)
    wait_for(lambda: healthy(cluster), 60, "cluster healthy after replica restart")
    port = cluster.node(replica)["pg_port"]
    wait_for(lambda: cluster.q(port, "SELECT count(*) FROM accounts") == [(150,)], 20,
             f"{replica} caught up")
    assert cluster.status()["status"]["term"] == 1


def test_restart_primary(cluster):
    state = cluster.state
    stop_daemon(cluster, cluster.primary)
    # no failover: the replicas keep following, nobody else becomes primary
    for name in cluster.replicas:
        assert http_get(cluster.node(name)["http_port"], "/primary")[0] == 503
    restart_daemon(cluster, cluster.primary)
    v = wait_for(lambda: healthy(cluster), 60, "cluster healthy after primary restart")
    assert v["status"]["primary"] == cluster.primary and v["status"]["term"] == 1
    # HAProxy routes writes to the primary again once /primary answers 200

    def write():
        try:
            cluster.q(state["write_port"],
                      "INSERT INTO accounts SELECT g, 'after restart' "
                      "FROM generate_series(151, 160) g")
            return True
        except psycopg2.Error:
            return False

    wait_for(write, 30, "writes through HAProxy after the primary restart")
    for name in ("node1", "node2", "node3"):
        port = cluster.node(name)["pg_port"]
        wait_for(lambda p=port: cluster.q(p, "SELECT count(*) FROM accounts") == [(160,)], 20,
                 f"all 160 rows on {name}")


def test_cluster_down_leaves_nothing(cluster):
    state = cluster.state
    pids = [p["pid"] for p in state["processes"]]
    pids += [p.pid for p in cluster.restarted]
    pids += [hatools.postmaster_pid(n["data_dir"]) for n in state["nodes"]]
    pids = [p for p in pids if p]
    out = run_pgdaemon(cluster.root, "cluster", "down", "--dir", cluster.dir, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    left = [p for p in pids if hatools.alive(p)]
    assert left == []
    # nothing at all runs from the cluster's directory any more
    mine = subprocess.run(["pgrep", "-f", cluster.dir], capture_output=True, text=True)
    assert mine.stdout.strip() == ""
    assert not os.path.exists(os.path.join(cluster.dir, "cluster.json"))
