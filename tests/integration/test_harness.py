"""tests/integration/test_harness.py - proof that the mgharness harness works.

Each service starts on free loopback ports and answers (Postgres SELECT 1
as the `postgres` OS user when run as root, etcd put/get through the v3
JSON gateway, HAProxy forwarding to Postgres in plain TCP and httpchk
mode). Teardown is proven from the outside: a child pytest session starts
all services, records their pids and directories, then fails on purpose /
fails in fixture setup / is SIGKILLed; afterwards every recorded process
must be gone and every directory removed (the SIGKILL case by the stale
root sweep).
"""

import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time

import psycopg2
import pytest

from mgharness import (EtcdInstance, ManagedProcess, ProcessIdentity, ServiceStartError, build_path,
                       integration_dir, pick_free_port, sweep_stale_roots)
from mgharness.procs import RunAs, wait_gone

CHILD_TIMEOUT = 120.0


# ---- helpers ------------------------------------------------------------------
def proc_uid(pid):
    """proc_uid returns the real uid of pid from /proc/<pid>/status, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    raise AssertionError(f"no Uid line for pid {pid}")


def expected_pg_uid():
    """expected_pg_uid is the uid Postgres must run as: postgres if we are root, else us."""
    return RunAs.named("postgres").uid if os.geteuid() == 0 else os.geteuid()


# ---- Postgres -----------------------------------------------------------------
def test_postgres_answers_select_1_as_postgres_user(postgres, tmp_root):
    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
            cur.execute("SELECT inet_server_port(), current_setting('data_directory')")
            port, datadir = cur.fetchone()
    finally:
        conn.close()
    assert port == postgres.port
    assert datadir == postgres.datadir
    assert postgres.datadir.startswith(tmp_root.path + os.sep)
    tree = postgres.pids()
    assert tree and tree[0].pid == postgres.pid
    assert proc_uid(postgres.pid) == expected_pg_uid()
    # Aux processes and backends too (a backend may exit meanwhile: None).
    assert {proc_uid(i.pid) for i in tree} <= {expected_pg_uid(), None}


def test_postgres_kill9_then_restart_on_same_port(services):
    pg = services.postgres()
    pg.query("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
    tree = pg.pids()
    assert len(tree) > 1  # postmaster plus aux processes
    pg.kill9()
    assert [i.pid for i in tree if i.alive()] == []
    with pytest.raises(psycopg2.OperationalError):
        pg.connect(connect_timeout=2)
    port = pg.port
    pg.start()
    assert pg.port == port
    assert pg.query("SELECT x FROM t") == [(42,)]


def _shm_entries():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_killed_postgres_and_clients_leave_nothing_in_dev_shm(services):
    # Postgres' dynamic shared memory lives in the data directory
    # (dynamic_shared_memory_type = mmap) and libmongoc's counters are off
    # (MONGOC_DISABLE_SHM), so SIGKILLs in tests do not leak /dev/shm files.
    before = _shm_entries()
    pg = services.postgres()
    assert pg.query("SHOW dynamic_shared_memory_type") == [("mmap",)]
    pg.query("SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;"
             " SET min_parallel_table_scan_size = 0;"
             " SELECT count(*) FROM generate_series(1, 100000)")
    probe = subprocess.Popen([build_path("tests", "bin", "mg_pg_probe"), pg.dsn, "SELECT pg_sleep(30)"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    probe.kill()
    probe.wait(10)
    pg.kill9()
    leaked = {e for e in _shm_entries() - before
              if e.startswith("PostgreSQL.") or e == f"mongoc-{probe.pid}"}
    assert leaked == set()


def test_postgres_password_auth(services):
    pg = services.postgres(password="s3cret-pw")
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres",
                         password="wrong", connect_timeout=5).close()
    assert pg.query("SELECT current_user") == [("postgres",)]
    assert "password=s3cret-pw" in pg.dsn and ":s3cret-pw@" in pg.uri


def test_postgres_retries_when_port_is_taken(services):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        picks = iter([taken])
        pg = services.postgres(port_picker=lambda: next(picks, None) or pick_free_port())
        assert pg.port != taken
        assert "address already in use" in pg.read_log().lower()
        assert pg.query("SELECT 1") == [(1,)]
    finally:
        blocker.close()


# ---- etcd ---------------------------------------------------------------------
def test_etcd_put_get_through_v3_gateway(etcd):
    assert etcd.version()["etcdserver"].startswith("3.4.")
    assert etcd.health()["health"] == "true"
    assert etcd.client_port != etcd.peer_port
    assert etcd.get("mgtest/missing") is None
    etcd.put("mgtest/key", "value \u00fc 1")
    assert etcd.get("mgtest/key") == "value \u00fc 1"
    etcd.put("mgtest/key", b"\x00\xffbinary")
    assert etcd.get_bytes("mgtest/key") == b"\x00\xffbinary"
    assert etcd.delete("mgtest/key") == 1
    assert etcd.get("mgtest/key") is None


def test_service_start_failure_reports_log_and_cleans_up(tmp_root):
    bad = EtcdInstance(tmp_root, extra_args=["--no-such-flag"])
    with pytest.raises(ServiceStartError) as err:
        with bad:
            pass
    assert "no-such-flag" in str(err.value)
    assert not bad.proc.identity.alive()
    assert not os.path.exists(bad.dir)


# ---- HAProxy ------------------------------------------------------------------
def test_haproxy_forwards_to_postgres(postgres, haproxy):
    assert haproxy.port != postgres.port
    conn = psycopg2.connect(host=haproxy.host, port=haproxy.port, user="postgres",
                            dbname="postgres", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port(), current_setting('port')")
            assert cur.fetchone() == (postgres.port, str(postgres.port))
    finally:
        conn.close()
    row = [r for r in haproxy.show_stat() if r["svname"] == "s0"][0]
    assert row["addr"] == f"127.0.0.1:{postgres.port}"
    assert int(row["stot"]) >= 1


class _NamedNode(socketserver.BaseRequestHandler):
    """_NamedNode answers every TCP connection with the server's node name."""

    def handle(self):
        self.request.sendall(self.server.node_name.encode())


class _Health(http.server.BaseHTTPRequestHandler):
    """_Health answers GET with the server's current status code and records the path."""

    def do_GET(self):
        self.server.paths.append(self.path)
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def fake_nodes():
    """fake_nodes are two (tcp node, health endpoint) pairs named A and B."""
    servers, nodes = [], {}
    for name in ("A", "B"):
        tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NamedNode)
        tcp.node_name = name
        health = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
        health.status, health.paths = 503, []
        servers += [_serve(tcp), _serve(health)]
        nodes[name] = (tcp, health)
    yield nodes
    for server in servers:
        server.shutdown()
        server.server_close()


def _read_node(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(16).decode()


def test_haproxy_httpchk_sends_traffic_to_primary_only(services, fake_nodes):
    (tcp_a, health_a), (tcp_b, health_b) = fake_nodes["A"], fake_nodes["B"]
    health_b.status = 200
    backends = [("127.0.0.1", tcp_a.server_address[1], health_a.server_address[1]),
                ("127.0.0.1", tcp_b.server_address[1], health_b.server_address[1])]
    ha = services.haproxy(backends, check="http", check_interval_ms=200)
    # start() waited for the first check results: no wait needed here.
    assert ha.server_status("s0") == "DOWN" and ha.server_status("s1") == "UP"
    assert {_read_node(ha.port) for _ in range(4)} == {"B"}
    assert health_a.paths[0] == "/primary" and health_b.paths[0] == "/primary"

    health_a.status, health_b.status = 200, 503  # failover
    ha.wait_server_status("s1", "DOWN")
    ha.wait_server_status("s0", "UP")
    assert {_read_node(ha.port) for _ in range(4)} == {"A"}


def test_haproxy_tcp_check_marks_dead_backend_down(services, fake_nodes):
    tcp_a = fake_nodes["A"][0]
    dead_port = pick_free_port()  # nothing listens there
    ha = services.haproxy([("127.0.0.1", tcp_a.server_address[1]), ("127.0.0.1", dead_port)],
                          check="tcp", check_interval_ms=200)
    assert ha.server_status("s0") == "UP" and ha.server_status("s1") == "DOWN"
    assert {_read_node(ha.port) for _ in range(4)} == {"A"}


# ---- process teardown -------------------------------------------------------------
def test_stop_escalates_to_sigkill_and_kills_setsid_descendants(tmp_root):
    d = tmp_root.mkdtemp("proc")
    proc = ManagedProcess(["sh", "-c", "trap '' TERM; setsid sleep 300 & sleep 300"],
                          log_path=os.path.join(d, "log"), cwd=d)
    deadline = time.monotonic() + 5
    while len(proc.tree()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = proc.tree()
    assert len(tree) == 3  # sh, sleep, setsid sleep (own session)
    t0 = time.monotonic()
    proc.stop(timeout=0.5)
    assert time.monotonic() - t0 >= 0.5  # SIGTERM was ignored, so it waited
    assert [i.pid for i in tree if i.alive()] == []
    assert proc.popen.returncode == -signal.SIGKILL


CHILD_TESTS = '''
"""Generated by test_harness.py: start services, record them, misbehave."""
import json
import os
import time

import pytest

from mgharness import ManagedProcess, ProcessIdentity

RECORD = os.environ["MG_CHILD_RECORD"]


def write_json(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.rename(path + ".tmp", path)


def record(root, services, extra=()):
    write_json(RECORD, {
        "root": root.path,
        "services": [{"name": s.name, "dir": s.dir,
                      "pids": [i.to_json() for i in s.pids()]} for s in services],
        "extra": [i.to_json() for i in extra]})


@pytest.fixture(scope="session", autouse=True)
def audit(tmp_root):
    """audit runs after all function-scoped teardown, before tmp_root's cleanup."""
    yield
    with open(RECORD) as f:
        rec = json.load(f)
    write_json(RECORD + ".audit", {
        "alive": [p for s in rec["services"] for p in s["pids"]
                  if ProcessIdentity.from_json(p).alive()],
        "dirs": [s["dir"] for s in rec["services"] if os.path.exists(s["dir"])]})


@pytest.fixture
def broken(tmp_root, services):
    pg = services.postgres()
    record(tmp_root, [pg])
    raise RuntimeError("fixture setup fails after Postgres started")


def test_fails(tmp_root, postgres, etcd, haproxy):
    record(tmp_root, [postgres, etcd, haproxy])
    assert False, "child test fails on purpose"


def test_setup_fails(broken):
    pass


def test_hangs(tmp_root, postgres, etcd, haproxy):
    # sh dies by PDEATHSIG with us; its own child does not (only the sweep's
    # MGHARNESS_ROOT tag finds it).
    d = tmp_root.mkdtemp("sh")
    sh = ManagedProcess(["sh", "-c", "sleep 300 & wait"], log_path=os.path.join(d, "log"),
                        cwd=d, on_spawn=tmp_root.record_process, tag=tmp_root.path)
    while len(sh.tree()) < 2:
        time.sleep(0.05)
    record(tmp_root, [postgres, etcd, haproxy], extra=sh.tree())
    time.sleep(300)
'''


class Child:
    """Child is a pytest session running one test of CHILD_TESTS as a ManagedProcess."""

    def __init__(self, tmp_root, test_name):
        self.dir = tmp_root.mkdtemp("child")
        self.record_path = os.path.join(self.dir, "record.json")
        with open(os.path.join(self.dir, "test_child.py"), "w") as f:
            f.write(textwrap.dedent(CHILD_TESTS))
        with open(os.path.join(self.dir, "pytest.ini"), "w") as f:
            f.write("[pytest]\n")
        env = dict(os.environ, MG_CHILD_RECORD=self.record_path, PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [integration_dir(),
                                                            os.environ.get("PYTHONPATH")])))
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "-p", "mgharness.fixtures", f"test_child.py::{test_name}"]
        self.log = os.path.join(self.dir, "pytest.out")
        self.proc = ManagedProcess(argv, log_path=self.log, cwd=self.dir, env=env,
                                   on_spawn=tmp_root.record_process)

    def output(self):
        with open(self.log) as f:
            return f.read()

    def finish(self):
        """finish waits for the child; returns (exit status, output)."""
        try:
            status = self.proc.wait(CHILD_TIMEOUT)
        finally:
            self.proc.kill9()
        return status, self.output()

    def wait_record(self):
        """wait_record returns the record once written, failing if the child exits first."""
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not os.path.exists(self.record_path):
            assert self.proc.running(), f"child exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"no record:\n{self.output()}"
            time.sleep(0.1)
        return self.read_record()

    def read_record(self, suffix=""):
        path = self.record_path + suffix
        assert os.path.exists(path), f"child wrote no {path}:\n{self.output()}"
        with open(path) as f:
            return json.load(f)


def recorded_identities(record):
    return [ProcessIdentity.from_json(p) for s in record["services"] for p in s["pids"]]


def assert_nothing_left(child, names):
    """assert_nothing_left checks the child's services were gone right after function
    teardown (audit), and that nothing at all was left after the child exited."""
    record, audit = child.read_record(), child.read_record(".audit")
    assert audit == {"alive": [], "dirs": []}
    assert [s["name"] for s in record["services"]] == names
    idents = recorded_identities(record)
    assert len(idents) > len(names)  # Postgres has aux processes too
    assert [i.pid for i in idents if i.alive()] == []
    for svc in record["services"]:
        assert not os.path.exists(svc["dir"]), svc["dir"]
    assert not os.path.exists(record["root"])


def test_teardown_after_failing_test_leaves_nothing(tmp_root):
    child = Child(tmp_root, "test_fails")
    status, out = child.finish()
    assert status == 1, out
    assert "1 failed" in out and "child test fails on purpose" in out, out
    assert_nothing_left(child, ["postgres", "etcd", "haproxy"])


def test_teardown_after_fixture_setup_error_leaves_nothing(tmp_root):
    child = Child(tmp_root, "test_setup_fails")
    status, out = child.finish()
    assert status == 1, out
    assert "1 error" in out and "fixture setup fails after Postgres started" in out, out
    assert_nothing_left(child, ["postgres"])


def test_sigkilled_runner_children_die_and_root_is_swept(tmp_root):
    child = Child(tmp_root, "test_hangs")
    try:
        record = child.wait_record()
        os.kill(child.proc.pid, signal.SIGKILL)
        assert child.proc.wait(10) == -signal.SIGKILL
    finally:
        child.proc.kill9()
    idents = recorded_identities(record)
    assert len(idents) > 3
    assert [i.pid for i in wait_gone(idents, 15.0)] == []  # PDEATHSIG did it
    sh, orphan = [ProcessIdentity.from_json(p) for p in record["extra"]]
    assert wait_gone([sh], 5.0) == [] and orphan.alive()  # PDEATHSIG is one level deep
    root = record["root"]
    assert os.path.isdir(root)  # nobody cleaned up ...
    assert root in sweep_stale_roots()  # ... until the sweep
    assert not os.path.exists(root)
    assert not orphan.alive()  # found by its MGHARNESS_ROOT tag
    assert os.path.isdir(tmp_root.path)  # a live owner's root is kept
