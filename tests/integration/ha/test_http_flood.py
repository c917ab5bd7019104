"""tests/integration/ha/test_http_flood.py - idle and slow clients do not change what HAProxy sees.

Issue 17, item 10 (reproduced before the fix: 1100 idle connections made
/primary refuse HAProxy's checks, a failover trigger): pgdaemon's HTTP
endpoint ran on one select() thread with no connection limit. Now
(core/src/core_http.c) a pool of epoll workers serves it, and a new
connection closes the one open longest beyond 128 connections in all, 16
per client address, or 5 s after it was accepted.

test_flood_does_not_change_what_haproxy_sees: a 3-node cluster (`cluster
up`, ttl 5 s). For 30 s, against the primary's and a replica's HTTP port:

- idle clients: connections that never send a byte, kept open (reopened
  as soon as one is closed) — 1200 per node from 20 other loopback
  addresses and 100 per node from 127.0.0.1, HAProxy's own address;
- slow clients (slowloris): 40 per node from 127.0.0.1 sending a request
  line and then one header byte every 200 ms, never ending it;
- slow readers: 20 per node asking for /status with a 1 KB receive buffer
  and never reading.

Throughout, HAProxy (the cluster's own, its stats socket) keeps the primary
UP in be_primary and the replica UP in be_replica with no failed check
(chkfail and chkdown unchanged), /primary asked from 127.0.0.1 every
100 ms answers 200 on the primary whenever it answers (at most 2 % of
these polls, from this Python process, may be closed unanswered: a
connection silent for 150 ms looks idle), and a writer through HAProxy
keeps getting inserts acknowledged. On the code before the fix HAProxy
marked the primary and the replica down three times each and 55 of 62
polls were reset. The daemon's
/metrics show that it closed connections to keep its bounds (the flood
reached them).
"""

import multiprocessing
import os
import resource
import socket
import threading
import time

import pytest

import hacluster
from hatools import http_get, query, wait_for
from test_failover import Writer, healthy

HEAL_TIMEOUT = 120
FLOOD_S = 30


@pytest.fixture(scope="module")
def cluster(tmp_root):
    yield from hacluster.up(tmp_root, "httpflood", *hacluster.FAST)


def stat_rows(sock_path):
    """stat_rows: HAProxy's `show stat` as {(backend, server): row}."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(b"show stat\n")
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    lines = out.decode().lstrip("# ").splitlines()
    keys = lines[0].split(",")
    rows = {}
    for line in lines[1:]:
        row = dict(zip(keys, line.split(",")))
        if "svname" in row:
            rows[(row["pxname"], row["svname"])] = row
    return rows


class Flood:
    """Flood: threads that keep idle, slow and non-reading connections open against ports."""

    def __init__(self, ports):
        self.ports = ports
        self.stop = threading.Event()
        self.threads = []
        self.opened = 0
        self.lock = threading.Lock()

    def _connect(self, source, port, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind((source, 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        with self.lock:
            self.opened += 1
        return s

    def _keep(self, source, port, count, kind):
        socks = []
        while not self.stop.is_set():
            # reopen what the server closed, up to count
            alive = []
            for s in socks:
                try:
                    s.setblocking(False)
                    if s.recv(1, socket.MSG_PEEK) == b"" and kind != "reader":
                        s.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                alive.append(s)
            socks = alive
            while len(socks) < count and not self.stop.is_set():
                try:
                    s = self._connect(source, port, 1024 if kind == "reader" else None)
                except OSError:
                    break
                if kind == "slow":
                    s.sendall(b"GET /status HTTP/1.1\r\nX-Slow: ")
                elif kind == "reader":
                    s.sendall(b"GET /status HTTP/1.1\r\nHost: flood\r\n\r\n" * 4)
                socks.append(s)
            if kind == "slow":
                for s in socks:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass
            self.stop.wait(0.2)
        for s in socks:
            s.close()

    def start(self):
        for port in self.ports:
            plan = [(f"127.0.0.{i}", 60, "idle") for i in range(2, 22)]
            plan += [("127.0.0.1", 100, "idle"), ("127.0.0.1", 40, "slow"),
                     ("127.0.0.1", 20, "reader")]
            for source, count, kind in plan:
                t = threading.Thread(target=self._keep, args=(source, port, count, kind),
                                     daemon=True)
                t.start()
                self.threads.append(t)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)


def flood_process(ports, stop, opened):
    """flood_process runs a Flood until stop is set (in a child: its threads never starve the test)."""
    flood = Flood(ports)
    flood.start()
    stop.wait()
    flood.join()
    opened.value = flood.opened


class FloodProcess:
    """FloodProcess: a Flood in a child process."""

    def __init__(self, ports):
        ctx = multiprocessing.get_context("fork")
        self.stop = ctx.Event()
        self.opened = ctx.Value("q", 0)
        self.proc = ctx.Process(target=flood_process, args=(ports, self.stop, self.opened),
                                daemon=True)

    def start(self):
        self.proc.start()

    def join(self):
        self.stop.set()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def metric(port, name):
    """metric: the sum of a Prometheus counter of one node's /metrics."""
    status, text = http_get(port, "/metrics")
    assert status == 200, text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_flood_does_not_change_what_haproxy_sees(cluster):
    c = cluster
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    leader, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster")
    replica = next(n for n in c.names() if n != leader)
    sock = os.path.join(c.dir, "haproxy.sock")
    query(c.state["write_port"], "CREATE TABLE seq (n bigint PRIMARY KEY)", password=c.password)
    before = stat_rows(sock)
    watched = [("be_primary", leader), ("be_replica", replica)]
    for key in watched:
        assert before[key]["status"] == "UP", before[key]
    closed0 = metric(c.node(leader)["http_port"], "pgdaemon_http_connections_closed_total")
    writer = Writer(c.state["write_port"], c.password)
    writer.start()
    wait_for(lambda: len(writer.acked) > 5, 30, "inserts through HAProxy")
    flood = FloodProcess([c.node(leader)["http_port"], c.node(replica)["http_port"]])
    flood.start()
    answers, states = [], []
    try:
        until = time.monotonic() + FLOOD_S
        acked0 = len(writer.acked)
        while time.monotonic() < until:
            t0 = time.monotonic()
            status, body = http_get(c.node(leader)["http_port"], "/primary", timeout=1.0)
            answers.append(status if status == 200 else (status, body[:80],
                                                         round(time.monotonic() - t0, 3)))
            if len(answers) % 5 == 0:
                rows = stat_rows(sock)
                states.append(tuple(rows[k]["status"] for k in watched))
            time.sleep(0.1)
        acked = len(writer.acked) - acked0
    finally:
        flood.join()
        writer.stop_event.set()
        writer.join(30)
    after = stat_rows(sock)
    closed = metric(c.node(leader)["http_port"], "pgdaemon_http_connections_closed_total") - closed0
    bad = [a for a in answers if a != 200]
    print(f"flood opened {flood.opened.value} connections; the primary closed {closed}; "
          f"{acked} inserts acknowledged meanwhile; HAProxy saw {sorted(set(states))}; "
          f"/primary polls not 200: {len(bad)} of {len(answers)} {bad[:10]}; checks "
          + ", ".join(f"{k[1]} {n} {before[k][n]}->{after[k][n]}" for k in watched
                      for n in ("chkfail", "chkdown")))
    assert set(states) == {("UP", "UP")}, f"HAProxy saw {sorted(set(states))}"
    for key in watched:
        for counter in ("chkfail", "chkdown"):
            assert int(after[key][counter] or 0) == int(before[key][counter] or 0), \
                f"{key} {counter}: {before[key][counter]} -> {after[key][counter]}"
    # every answer that came back says primary; a poll whose connection was closed before it
    # was read (the server spares a silent connection 150 ms, then it is the flood's kind) may
    # happen when this process is descheduled between connect and send: at most 2 %
    answered = [a for a in bad if a[0] is not None]
    assert not answered, f"/primary answered {len(answered)} polls otherwise: {answered[:10]}"
    assert len(bad) <= 0.02 * len(answers), \
        f"{len(bad)} of {len(answers)} /primary polls got no answer: {bad[:10]}"
    assert acked > FLOOD_S, f"only {acked} inserts through HAProxy in {FLOOD_S}s of flood"
    assert closed > 500, f"the flood did not reach the bounds ({closed} closed)"
