"""tests/integration/ha/test_haproxy_errors.py - one slow connect does not drop every session.

Issue 16, finding 16 (b): with `observe layer4 error-limit 1 on-error
mark-down` and `on-marked-down shutdown-sessions`, one client connection
that HAProxy could not open in time (a layer-4 timeout: a SYN lost in a
connect storm) marked the primary down and cut every open session to it,
although its /primary check never failed. The generated configuration
now observes layer-4 errors only to check sooner (`on-error fastinter`):
only the /primary check takes a node out, so a demoted primary still
goes within two fast checks.

How the layer-4 error is made apart from the check: the cluster
(`cluster up`, 3 nodes) is unchanged, but a second HAProxy runs with the
generated haproxy.cfg in which the primary's server address points at a
TCP proxy in front of the primary's Postgres; its check still goes to the
primary's pgdaemon (`check port`). The proxy can stall: it stops
accepting and its accept queue is filled, so the kernel drops HAProxy's
SYN and HAProxy's connect times out (`timeout connect 200ms`) while
/primary keeps answering 200. HAProxy's `show stat` counts the observed
error (`hanafail`), so the test knows the error happened.

test_one_slow_connect_keeps_the_sessions: five sessions open through the
test HAProxy; one new connection hits the stalled proxy once, then gets
through on HAProxy's retry. The five sessions still answer, the server was
never marked down (`chkdown` 0) and `hanafail` is at least 1.

test_old_settings_dropped_every_session (the control: the old line in the
same scenario): every session is cut and the server went down, although
its check never failed. This is the failure of the code before the fix.

test_demoted_primary_still_goes_fast: after a switchover, the test
HAProxy takes the old primary out and sends a new connection to the new
primary within a few seconds (the /primary check, not the observed
errors, decides).
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import psycopg2
import pytest

import hacluster
import hatools
from hatools import run_pgdaemon, wait_for
from mgharness import ManagedProcess, pick_free_port
from test_failover import healthy

HEAL_TIMEOUT = 120
OLD_CHECK = ("inter 1s fastinter 200ms downinter 100ms fall 2 rise 1 observe layer4 "
             "error-limit 1 on-error mark-down on-marked-down shutdown-sessions")


class StallProxy:
    """StallProxy: a TCP proxy to target_port whose new connects can be made to time out."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.stopped = threading.Event()
        self.accepting = threading.Event()
        self.accepting.set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)  # a short accept queue: easy to fill
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.fillers = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _pump(self, src, dst):
        while not self.stopped.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self):
        self.sock.settimeout(0.05)
        while not self.stopped.is_set():
            if not self.accepting.is_set():
                time.sleep(0.01)
                continue
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            if client.getsockname()[1] == self.port and client.getpeername() in self.filler_ends():
                self.conns.append(client)  # a filler: nothing to forward
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def filler_ends(self):
        return [f.getsockname() for f in self.fillers]

    def stall(self):
        """stall: stop accepting and fill the accept queue; the next SYN is dropped."""
        self.accepting.clear()
        time.sleep(0.1)  # the accept loop is idle
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(f)
        time.sleep(0.1)

    def resume(self):
        self.accepting.set()

    def close(self):
        self.stopped.set()
        for s in [self.sock, *self.conns, *self.fillers]:
            try:
                s.close()
            except OSError:
                pass


class SecondHAProxy:
    """SecondHAProxy: a second HAProxy from the cluster's haproxy.cfg, one server rerouted."""

    def __init__(self, root, cluster, primary, proxy_port, check_line=None):
        with open(os.path.join(cluster.dir, "haproxy.cfg")) as f:
            cfg = f.read()
        self.dir = hatools.shared_dir(root, "haproxy2")
        self.sock = os.path.join(self.dir, "admin.sock")
        self.write_port, self.read_port = pick_free_port(), pick_free_port()
        st = cluster.state
        cfg = cfg.replace(f"127.0.0.1:{st['write_port']}", f"127.0.0.1:{self.write_port}")
        cfg = cfg.replace(f"127.0.0.1:{st['read_port']}", f"127.0.0.1:{self.read_port}")
        cfg = re.sub(r"stats socket \S+", f"stats socket {self.sock}", cfg)
        pg = cluster.node(primary)["pg_port"]
        # the primary's server of be_primary reaches Postgres through the proxy
        head, tail = cfg.split("backend be_primary", 1)
        prim, rest = tail.split("frontend", 1)
        prim = prim.replace(f"127.0.0.1:{pg} ", f"127.0.0.1:{proxy_port} ")
        cfg = head + "backend be_primary" + prim + "frontend" + rest
        if check_line is not None:
            cfg = re.sub(r"default-server .*", "default-server " + check_line, cfg)
        self.cfg = cfg
        path = os.path.join(self.dir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        self.proc = ManagedProcess(["haproxy", "-db", "-f", path],
                                   log_path=os.path.join(self.dir, "haproxy.log"), cwd=self.dir,
                                   tag=root.path, on_spawn=root.record_process,
                                   stop_signal=signal.SIGTERM)
        wait_for(lambda: os.path.exists(self.sock), 30, "the test HAProxy's stats socket")

    def command(self, cmd):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.sock)
        s.sendall((cmd + "\n").encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        return out.decode()

    def server(self, backend, name):
        """server returns the `show stat` row of one server as a dict."""
        lines = self.command("show stat").lstrip("# ").splitlines()
        keys = lines[0].split(",")
        for line in lines[1:]:
            row = dict(zip(keys, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") == name:
                return row
        raise AssertionError(f"no server {backend}/{name} in show stat")

    def stop(self):
        self.proc.stop()


def session(port, password):
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=password,
                            dbname="postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


def alive(conn):
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    except psycopg2.Error:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_root):
    yield from hacluster.up(tmp_root, "haproxyerr", *hacluster.FAST)


def one_slow_connect(tmp_root, c, check_line):
    """one_slow_connect: five sessions, then one connect that times out once; returns the facts."""
    leader, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster")
    proxy = StallProxy(c.node(leader)["pg_port"])
    hap = SecondHAProxy(tmp_root, c, leader, proxy.port, check_line)
    try:
        wait_for(lambda: hap.server("be_primary", leader)["status"] == "UP", 30,
                 f"{leader} UP in the test HAProxy")
        sessions = [session(hap.write_port, c.password) for _ in range(5)]
        assert all(alive(s) for s in sessions)
        before = hap.server("be_primary", leader)
        checks, done = [], threading.Event()

        def poll_primary():  # what HAProxy's check sees, all along
            while not done.is_set():
                checks.append(hatools.http_get(c.node(leader)["http_port"], "/primary")[0])
                done.wait(0.05)

        poller = threading.Thread(target=poll_primary, daemon=True)
        poller.start()
        proxy.stall()
        late = {}

        def connect():
            try:
                late["conn"] = session(hap.write_port, c.password)
            except psycopg2.Error as e:
                late["error"] = e

        t = threading.Thread(target=connect, daemon=True)
        t.start()
        # HAProxy's first connect times out after 200 ms; let its retry through
        wait_for(lambda: int(hap.server("be_primary", leader)["hanafail"] or 0) >
                 int(before["hanafail"] or 0) or
                 int(hap.server("be_primary", leader)["chkdown"] or 0) >
                 int(before["chkdown"] or 0), 10, "HAProxy to observe the timed-out connect",
                 interval=0.02)
        proxy.resume()
        t.join(15)
        time.sleep(0.5)  # a mark-down would have cut the sessions by now
        after = hap.server("be_primary", leader)
        done.set()
        poller.join(5)
        facts = {
            "primary_checks": sorted(set(checks), key=str),
            "alive": [alive(s) for s in sessions],
            "hanafail": int(after["hanafail"] or 0) - int(before["hanafail"] or 0),
            "chkdown": int(after["chkdown"] or 0) - int(before["chkdown"] or 0),
            "chkfail": int(after["chkfail"] or 0) - int(before["chkfail"] or 0),
            "late": late,
        }
        for s in sessions + ([late["conn"]] if "conn" in late else []):
            s.close()
        return facts
    finally:
        hap.stop()
        proxy.close()


def test_one_slow_connect_keeps_the_sessions(tmp_root, cluster):
    facts = one_slow_connect(tmp_root, cluster, None)
    assert facts["hanafail"] >= 1, f"HAProxy observed no layer-4 error: {facts}"
    assert facts["primary_checks"] == [200], f"/primary did not answer 200 throughout: {facts}"
    assert facts["chkfail"] == 0, f"a /primary check failed meanwhile: {facts}"
    assert all(facts["alive"]), f"sessions were cut after one slow connect: {facts}"
    assert facts["chkdown"] == 0, f"the primary was marked down: {facts}"
    assert "conn" in facts["late"], f"the slow connect did not get through: {facts}"


def test_old_settings_dropped_every_session(tmp_root, cluster):
    facts = one_slow_connect(tmp_root, cluster, OLD_CHECK)
    assert facts["hanafail"] >= 1, f"HAProxy observed no layer-4 error: {facts}"
    assert facts["primary_checks"] == [200], f"/primary did not answer 200 throughout: {facts}"
    assert facts["chkdown"] >= 1 and not any(facts["alive"]), \
        f"the old settings were expected to cut every session: {facts}"


def test_demoted_primary_still_goes_fast(tmp_root, cluster):
    c = cluster
    leader, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster")
    proxy = StallProxy(c.node(leader)["pg_port"])
    hap = SecondHAProxy(tmp_root, c, leader, proxy.port)
    try:
        wait_for(lambda: hap.server("be_primary", leader)["status"] == "UP", 30,
                 f"{leader} UP in the test HAProxy")
        out = run_pgdaemon(c.root, "switchover", "--json", "--config", c.node(leader)["config"],
                           timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        new, _ = wait_for(lambda: healthy(c), HEAL_TIMEOUT, "a healthy cluster after it")
        assert new != leader
        wait_for(lambda: hap.server("be_primary", leader)["status"].startswith("DOWN"), 10,
                 f"the demoted {leader} out of the test HAProxy")

        def lands_on_new():
            conn = session(hap.write_port, c.password)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT inet_server_port()")
                    return cur.fetchone()[0] == c.node(new)["pg_port"]
            finally:
                conn.close()
        wait_for(lands_on_new, 10, f"a connection through the test HAProxy on {new}")
    finally:
        hap.stop()
        proxy.close()
