"""tests/integration/ha/test_safety_etcd.py - a black-holed etcd with several endpoints.

Issue 16, finding 12: with etcd black-holed (connections accepted, never
answered) and several endpoints, one lease renewal blocked for endpoints x
retry_timeout, so the primary fenced itself before it could send its
first failsafe heartbeat, although every peer was there to vouch for it.

Three nodes (ttl 8 s, loop 500 ms, retry 2 s) reach etcd through four TCP
proxies, listed as four endpoints. Once the cluster is healthy every proxy
turns into a black hole for 15 s. Throughout, /primary is polled on every
node every 100 ms: the primary answers 200 at every poll (it keeps
writing on its peers' failsafe grant) and no other node ever does; a write
straight to the primary is acknowledged. Then etcd answers again and the
same node still leads.

Underneath: core's etcd client bounds a request by one deadline across all
endpoints (mg_etcd_deadline_set), checked with mg_etcd_probe against four
black holes.
"""

import json
import os
import socket
import subprocess
import threading
import time

import pytest

import hatools
from hatools import http_get, query, start_daemon, wait_for, write_node_config

from mgharness import build_path
from test_etcd_client import FakeMember, header, probe

PROBE = build_path("tests", "bin", "mg_etcd_probe")

NODES = ("e1", "e2", "e3")
BLACKHOLE_S = 15


class Blackhole:
    """Blackhole: a TCP proxy to target_port that can swallow everything (both ways)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.holed = threading.Event()
        self.stopped = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def _pump(self, src, dst):
        src.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            if self.holed.is_set():
                continue  # swallowed: the peer waits for an answer that never comes
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.conns.append(client)
            if self.holed.is_set():
                threading.Thread(target=self._pump, args=(client, client), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            self.conns.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def close(self):
        self.stopped.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def nodes(tmp_root, etcd):
    holes = [Blackhole(etcd.client_port) for _ in range(4)]
    d = hatools.shared_dir(tmp_root, "blackhole")
    confs, procs = {}, []
    try:
        for name in NODES:
            cfg, conf = write_node_config(d, name, holes[0].endpoint, "bh", ttl="8s",
                                          loop_wait="500ms", retry_timeout="2s")
            conf["etcd"]["endpoints"] = [h.endpoint for h in holes]
            with open(cfg, "w") as f:
                json.dump(conf, f)
            confs[name] = conf
            procs.append(start_daemon(tmp_root, cfg, os.path.join(d, name + ".log")))
        yield confs, holes
    finally:
        for h in holes:
            h.holed.clear()
        for p in procs:
            p.stop()
        for h in holes:
            h.close()


def roles(confs):
    """roles: {name: /primary status} of every node."""
    return {n: http_get(c["http_port"], "/primary", timeout=0.5)[0] for n, c in confs.items()}


def test_primary_keeps_writing_through_a_blackholed_etcd(nodes):
    confs, holes = nodes

    def healthy():
        r = roles(confs)
        prim = [n for n, code in r.items() if code == 200]
        repl = [n for n, c in confs.items()
                if http_get(c["http_port"], "/replica", timeout=0.5)[0] == 200]
        return prim[0] if len(prim) == 1 and len(repl) == 2 else None

    leader = wait_for(healthy, 120, "one primary and two streaming replicas")
    query(confs[leader]["pg_port"], "CREATE TABLE bh (n int)")
    for h in holes:
        h.holed.set()
    t0 = time.monotonic()
    bad = []
    while time.monotonic() - t0 < BLACKHOLE_S:
        r = roles(confs)
        if r[leader] != 200 or any(code == 200 for n, code in r.items() if n != leader):
            bad.append((round(time.monotonic() - t0, 1), r))
        time.sleep(0.1)
    for h in holes:
        h.holed.clear()
    assert bad == [], f"/primary while etcd was black-holed (s after start, answers): {bad[:10]}"
    query(confs[leader]["pg_port"], "INSERT INTO bh VALUES (1)")
    wait_for(lambda: healthy() == leader, 60, "the same primary once etcd answers again")
    assert query(confs[leader]["pg_port"], "SELECT n FROM bh") == [(1,)]


def test_client_deadline_bounds_a_request_across_endpoints(etcd):
    holes = [Blackhole(etcd.client_port) for _ in range(4)]
    try:
        for h in holes:
            h.holed.set()
        endpoints = ",".join(h.endpoint for h in holes)
        env = dict(os.environ, ETCD_PROBE_DEADLINE_MS="1500")
        t0 = time.monotonic()
        out = subprocess.run([PROBE, endpoints, "get", "/x"], capture_output=True, text=True,
                             timeout=60, env=env)
        took = time.monotonic() - t0
        # each attempt would take the probe's 3 s timeout: 4 endpoints, 12 s without the deadline
        assert out.returncode == 1 and out.stdout.startswith("error etcd 1 "), out.stdout
        assert took < 4, f"request took {took:.1f}s despite a 1.5 s deadline"
        # with time left and an answering endpoint behind the black holes, it gets there
        holes[3].holed.clear()
        env["ETCD_PROBE_DEADLINE_MS"] = "60000"
        out = subprocess.run([PROBE, endpoints, "put", "/x", "y"], capture_output=True, text=True,
                             timeout=60, env=env)
        assert out.returncode == 0, out.stdout
    finally:
        for h in holes:
            h.close()


def test_client_follows_an_etcd_restored_from_a_backup():
    """Issue 16, finding 9: a restored etcd answers from an older raft term everywhere.

    Before, every member was skipped as stale forever, so every daemon saw
    "etcd lost" for good. When every endpoint agrees the client takes the
    lower term once and reports it; one member behind the others stays
    skipped (test_etcd_client.test_stale_member_skipped_by_raft_term).
    """
    kv = [{"key": "L2s=", "value": "dg==", "mod_revision": "9"}]
    before = json.dumps({"header": header(5), "count": "1", "kvs": kv})
    after = json.dumps({"header": header(2), "count": "1", "kvs": kv})
    m = FakeMember([(200, before), (200, after)])
    try:
        lines = probe(m.endpoint, "get-twice", "/k", check=False)
    finally:
        m.close()
    assert lines == ["count 1 raft_term 5", "count 1 raft_term 2", "replaced 5 2"], lines
