#!/usr/bin/python3
"""tests/bench/ha/bench_pgaf.py - the same failover timings for pg_auto_failover (not a test).

Needs the Debian packages pg-auto-failover-cli and postgresql-15-auto-failover
(installed by hand, see docs/benchmarks.md). Starts a monitor and two data
nodes with pg_autoctl (as the postgres OS user when run as root; defaults:
no synchronous-commit change, trust auth on loopback, fsync=off like the
other benches), a writer that inserts every 20 ms through the formation's
multi-host connection string (target_session_attrs=read-write, libpq
connect_timeout=1), and measures RUNS times each: node loss (kill -9 of
the primary's keeper process group and its postmaster), Postgres crash
(kill -9 of the postmaster) and switchover (`pg_autoctl perform
switchover`), like bench_ha.py.
Usage: bench_pgaf.py [--runs 5] [--only node_loss,pg_crash,switchover]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ha import summary  # noqa: E402
from bench_patroni import as_pg, free_port  # noqa: E402

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import psycopg2  # noqa: E402

PGCTL = "/usr/lib/postgresql/15/bin/pg_ctl"


class DsnWriter(threading.Thread):
    """DsnWriter: bench_ha's Writer, connecting with a libpq connection string."""

    def __init__(self, dsn):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.ok, self.failed = [], []
        self.stop = threading.Event()

    def run(self):
        conn, n = None, 0
        while not self.stop.is_set():
            n += 1
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn, connect_timeout=1)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench (n) VALUES (%s)", (n,))
                self.ok.append(time.monotonic())
            except psycopg2.Error:
                self.failed.append(time.monotonic())
                try:
                    conn and conn.close()
                except psycopg2.Error:
                    pass
                conn = None
            time.sleep(0.02)

    def outage(self, t):
        fail = next((x for x in self.failed if x > t), None)
        if fail is None:
            return None
        ok = next((x for x in self.ok if x > fail), None)
        return ok - t if ok else None

    def max_gap(self, t0, t1):
        xs = [x for x in self.ok if t0 <= x <= t1]
        return max((b - a for a, b in zip(xs, xs[1:])), default=None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="node_loss,pg_crash,switchover")
    a = ap.parse_args()
    only = set(a.only.split(","))
    root = tempfile.mkdtemp(prefix="bench-pgaf-")
    os.chmod(root, 0o755)
    if os.getuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(root, "xdg-config"),
               XDG_DATA_HOME=os.path.join(root, "xdg-data"), XDG_RUNTIME_DIR=os.path.join(root, "run"),
               PGHOST="127.0.0.1")
    for sub in ("xdg-config", "xdg-data", "run"):
        os.makedirs(os.path.join(root, sub), mode=0o700)
        if os.getuid() == 0:
            shutil.chown(os.path.join(root, sub), "postgres", "postgres")
    env["PATH"] = "/usr/lib/postgresql/15/bin:" + env["PATH"]
    mon_port = free_port()
    nodes = {f"n{i}": {"pg": free_port(), "data": os.path.join(root, f"n{i}")} for i in (1, 2)}
    mon_data = os.path.join(root, "monitor")
    monitor_uri = f"postgres://autoctl_node@127.0.0.1:{mon_port}/pg_auto_failover?sslmode=disable"
    keepers, procs = {}, []
    res = {"settings": {"system": "pg_auto_failover " + subprocess.run(
        ["pg_autoctl", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
        "nodes": "monitor + 2 data nodes", "runs": a.runs,
        "writes": "multi-host connection string, target_session_attrs=read-write, connect_timeout=1",
        "settings": "pg_autoctl defaults, fsync=off"}}
    loss, crash, gaps = [], [], []

    def log(name):
        return open(os.path.join(root, name + ".log"), "a")

    def autoctl(*args, timeout=120):
        return subprocess.run(["pg_autoctl", *args], capture_output=True, text=True, env=env,
                              timeout=timeout, **as_pg())

    def run_keeper(name):
        n = nodes[name]
        keepers[name] = subprocess.Popen(
            ["pg_autoctl", "run", "--pgdata", n["data"]], stdout=log(name), stderr=subprocess.STDOUT,
            env=env, start_new_session=True, **as_pg())

    def state():
        out = autoctl("show", "state", "--pgdata", mon_data, "--json", timeout=30)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return []

    def healthy():
        s = state()
        prim = [x for x in s if x.get("current_group_state") == "primary" and x.get("assigned_group_state") == "primary"]
        sec = [x for x in s if x.get("current_group_state") == "secondary" and x.get("assigned_group_state") == "secondary"]
        return prim[0]["nodename"] if len(s) == 2 and len(prim) == 1 and len(sec) == 1 else None

    def wait_healthy(timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = healthy()
            if h:
                return h
            time.sleep(0.5)
        raise RuntimeError(f"pg_auto_failover did not heal: {state()}")

    def postmaster(name):
        with open(os.path.join(nodes[name]["data"], "postmaster.pid")) as f:
            return int(f.readline())

    writer = None
    try:
        out = autoctl("create", "monitor", "--pgdata", mon_data, "--pgport", str(mon_port),
                      "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--pgctl", PGCTL)
        if out.returncode != 0:
            raise RuntimeError("create monitor: " + out.stderr[-800:])
        procs.append(subprocess.Popen(["pg_autoctl", "run", "--pgdata", mon_data],
                                      stdout=log("monitor"), stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True, **as_pg()))
        time.sleep(3)
        for name, n in nodes.items():
            out = autoctl("create", "postgres", "--pgdata", n["data"], "--pgport", str(n["pg"]),
                          "--hostname", "127.0.0.1", "--name", name, "--auth", "trust", "--no-ssl",
                          "--pgctl", PGCTL, "--monitor", monitor_uri, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"create postgres {name}: " + out.stderr[-800:])
            run_keeper(name)
            if name == "n1":
                deadline = time.monotonic() + 120
                while not any(x.get("current_group_state") in ("single", "primary") for x in state()):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"n1 did not start: {state()}")
                    time.sleep(0.5)
        wait_healthy()
        for n in nodes.values():
            c = psycopg2.connect(host="127.0.0.1", port=n["pg"], user="postgres", dbname="postgres")
            c.autocommit = True
            c.cursor().execute("ALTER SYSTEM SET fsync = off")
            c.cursor().execute("SELECT pg_reload_conf()")
            c.close()
        uri = autoctl("show", "uri", "--pgdata", mon_data, "--formation", "default").stdout.strip()
        dsn = (f"postgresql://postgres@127.0.0.1:{nodes['n1']['pg']},127.0.0.1:{nodes['n2']['pg']}"
               "/postgres?target_session_attrs=read-write&sslmode=disable")
        res["settings"]["formation_uri"] = uri
        res["settings"]["dsn"] = dsn
        c = psycopg2.connect(dsn, connect_timeout=2)
        c.autocommit = True
        c.cursor().execute("CREATE TABLE bench (n bigint, t timestamptz DEFAULT now())")
        c.close()
        writer = DsnWriter(dsn)
        writer.start()
        time.sleep(2)
        for _ in range(a.runs if "node_loss" in only else 0):
            leader = wait_healthy()
            time.sleep(1)
            pm = postmaster(leader)
            t = time.monotonic()
            os.killpg(keepers[leader].pid, signal.SIGKILL)
            try:
                os.kill(pm, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = t + 240
            while writer.outage(t) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            loss.append(writer.outage(t))
            keepers[leader].wait()
            run_keeper(leader)
        for _ in range(a.runs if "pg_crash" in only else 0):
            leader = wait_healthy()
            time.sleep(1)
            t = time.monotonic()
            os.kill(postmaster(leader), signal.SIGKILL)
            deadline = t + 240
            while writer.outage(t) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            crash.append(writer.outage(t))
        for _ in range(a.runs if "switchover" in only else 0):
            wait_healthy()
            time.sleep(1)
            t0 = time.monotonic()
            autoctl("perform", "switchover", "--pgdata", mon_data, "--formation", "default",
                    timeout=300)
            time.sleep(3)
            gaps.append(writer.max_gap(t0 - 0.5, time.monotonic()))
    except Exception as e:  # noqa: BLE001 - report what was measured before it
        res["error"] = str(e)[:800]
    finally:
        if writer:
            writer.stop.set()
        res["node_loss_s"] = summary(loss)
        res["pg_crash_s"] = summary(crash)
        res["switchover_max_gap_s"] = summary(gaps)
        print(json.dumps(res, indent=1))
        for name, n in nodes.items():
            autoctl("stop", "--pgdata", n["data"], timeout=60)
        autoctl("stop", "--pgdata", mon_data, timeout=60)
        for p in list(keepers.values()) + procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in [mon_data] + [n["data"] for n in nodes.values()]:
            try:
                with open(os.path.join(d, "postmaster.pid")) as f:
                    os.kill(int(f.readline()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
