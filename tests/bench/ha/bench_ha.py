#!/usr/bin/python3
"""tests/bench/ha/bench_ha.py - failover timings of a pgdaemon cluster (not a test).

Starts `pgdaemon cluster up --nodes 3` (etcd + 3 nodes + HAProxy on
loopback) with the given ttl / loop_wait / retry_timeout, runs a writer
that inserts through HAProxy every 20 ms, and measures, RUNS times each:

  node_loss   kill -9 of the primary's daemon and its postmaster -> seconds
              to the first successful INSERT through HAProxy (the daemon
              is started again afterwards and the cluster healed);
  pg_crash    kill -9 of the primary's postmaster only -> same;
  switchover  `pgdaemon switchover` -> the longest gap between successful
              INSERTs around it (and the window the daemon reports).

With --compare-haproxy (the default), a second HAProxy runs beside the
generated one on the same cluster with the earlier check line (OLD_CHECK:
`on-error mark-down`), and a second writer inserts through it: every
scenario is measured for both configurations in the same runs, side by
side, with the ratio of the medians (issue 16, finding 16b).

Prints one JSON object (settings, runs, median and max per scenario).
Usage: bench_ha.py --build-dir build --ttl 10 --loop-ms 2000 --retry-ms 4000
       [--runs 5] [--sync] [--quiet-minutes M]  (M > 0: only count false
       failovers under steady writes for M minutes)
       [--only node_loss,pg_crash,switchover]  (a subset of the scenarios)
The HAProxy check settings reported are read from the generated haproxy.cfg.
"""

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import psycopg2  # noqa: E402


OLD_CHECK = ("inter 1s fastinter 200ms downinter 100ms fall 2 rise 1 observe layer4 "
             "error-limit 1 on-error mark-down on-marked-down shutdown-sessions")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_old_haproxy(cluster_dir, state):
    """start_old_haproxy: the generated haproxy.cfg with OLD_CHECK on new ports; (Popen, port)."""
    import re
    with open(os.path.join(cluster_dir, "haproxy.cfg")) as f:
        cfg = f.read()
    wport, rport = free_port(), free_port()
    cfg = cfg.replace(f"127.0.0.1:{state['write_port']}", f"127.0.0.1:{wport}")
    cfg = cfg.replace(f"127.0.0.1:{state['read_port']}", f"127.0.0.1:{rport}")
    cfg = re.sub(r"stats socket \S+", f"stats socket {cluster_dir}/haproxy-old.sock", cfg)
    cfg = re.sub(r"default-server .*", "default-server " + OLD_CHECK, cfg)
    path = os.path.join(cluster_dir, "haproxy-old.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    log = open(os.path.join(cluster_dir, "haproxy-old.log"), "a")
    proc = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=log, stderr=log,
                            start_new_session=True)
    return proc, wport


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


class Writer(threading.Thread):
    def __init__(self, port, password):
        super().__init__(daemon=True)
        self.port, self.password = port, password
        self.ok = []  # monotonic times of acknowledged inserts
        self.failed = []  # monotonic times of failed attempts
        self.errors = collections.Counter()  # first line of each failure's message -> count
        self.stop = threading.Event()

    def run(self):
        conn, n = None, 0
        while not self.stop.is_set():
            n += 1
            try:
                if conn is None:
                    conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                            password=self.password, dbname="postgres",
                                            connect_timeout=1)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench (n) VALUES (%s)", (n,))
                self.ok.append(time.monotonic())
            except psycopg2.Error as e:
                self.failed.append(time.monotonic())
                self.errors[(str(e).strip().splitlines() or [type(e).__name__])[0][:120]] += 1
                try:
                    conn and conn.close()
                except psycopg2.Error:
                    pass
                conn = None
            time.sleep(0.02)

    def first_after(self, t):
        return next((x for x in self.ok if x > t), None)

    def outage(self, t):
        """outage: seconds from t to the first acknowledged insert after the first failure after t."""
        fail = next((x for x in self.failed if x > t), None)
        if fail is None:
            return None
        ok = self.first_after(fail)
        return ok - t if ok else None

    def max_gap(self, t0, t1):
        xs = [x for x in self.ok if t0 <= x <= t1]
        return max((b - a for a, b in zip(xs, xs[1:])), default=None)


class Cluster:
    def __init__(self, pgdaemon, directory, args):
        self.pgdaemon, self.dir, self.args = pgdaemon, directory, args
        self.extra = []

    @property
    def state(self):
        with open(os.path.join(self.dir, "cluster.json")) as f:
            return json.load(f)

    def node(self, name):
        return next(n for n in self.state["nodes"] if n["name"] == name)

    def status(self):
        out = sh([self.pgdaemon, "status", "--json", "--config", self.node("node1")["config"]],
                 timeout=30)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def healthy(self):
        v = self.status()
        if not v or not v["leader"] or v["status"]["failover_state"] != "stable":
            return None
        nodes = {n["name"]: n for n in v["nodes"]}
        p = nodes.get(v["leader"])
        if len(nodes) != 3 or not p or p["state"] != "primary":
            return None
        streaming = {r["application_name"] for r in p["replication"] if r["state"] == "streaming"}
        if streaming != set(nodes) - {v["leader"]}:
            return None
        return v["leader"]

    def wait_healthy(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.healthy()
            if leader:
                return leader
            time.sleep(0.3)
        raise RuntimeError("cluster did not heal")

    def daemon_pid(self, name):
        """daemon_pid: the node's daemon (not its watchdog child, which has the same argv)."""
        cfg = self.node(name)["config"]
        pids = [int(p) for p in sh(["pgrep", "-f", f"pgdaemon run --config {cfg}$"]).stdout.split()]
        for p in pids:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid not in pids:
                return p
        raise RuntimeError(f"no daemon for {name}")

    def restart_daemon(self, name):
        n = self.node(name)
        log = open(os.path.join(self.dir, name, "pgdaemon-bench.log"), "a")
        self.extra.append(subprocess.Popen([self.pgdaemon, "run", "--config", n["config"]],
                                           stdout=log, stderr=log, start_new_session=True))


def postmaster_pid(data_dir):
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        return int(f.readline())


def summary(xs):
    xs = [x for x in xs if x is not None]
    return {"runs": [round(x, 2) for x in xs],
            "median": round(statistics.median(xs), 2) if xs else None,
            "max": round(max(xs), 2) if xs else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--ttl", type=int, default=10)
    ap.add_argument("--loop-ms", type=int, default=2000)
    ap.add_argument("--retry-ms", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sync", action="store_true")
    ap.add_argument("--quiet-minutes", type=float, default=0)
    ap.add_argument("--only", default="node_loss,pg_crash,switchover")
    ap.add_argument("--no-compare-haproxy", dest="compare", action="store_false",
                    help="do not run the old-settings HAProxy beside the generated one")
    a = ap.parse_args()
    only = set(a.only.split(","))
    pgdaemon = os.path.abspath(os.path.join(a.build_dir, "bin", "pgdaemon"))
    root = tempfile.mkdtemp(prefix="bench-ha-")
    os.chmod(root, 0o755)
    c = Cluster(pgdaemon, os.path.join(root, "c"), a)
    up = [pgdaemon, "cluster", "up", "--nodes", "3", "--dir", c.dir, "--timeout", "120",
          "--ttl", str(a.ttl), "--loop-wait-ms", str(a.loop_ms), "--retry-timeout-ms",
          str(a.retry_ms), "--pg-parameter", "fsync=off"] + (["--synchronous-mode"] if a.sync else [])
    result = {"settings": {"ttl_s": a.ttl, "loop_wait_ms": a.loop_ms, "retry_timeout_ms": a.retry_ms,
                           "synchronous_mode": a.sync, "runs": a.runs,
                           "scenarios": sorted(only)}}
    writer, writers, extra_procs = None, {}, []
    try:
        out = sh(up, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        st = c.state
        with open(os.path.join(c.dir, "haproxy.cfg")) as f:
            result["settings"]["haproxy"] = [ln.strip() for ln in f
                                             if ln.strip().startswith(("default-server", "option redispatch", "retries"))]
        deadline = time.monotonic() + 60
        while True:  # HAProxy may not have checked the primary yet
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=st["write_port"], user="postgres",
                                        password=st["superuser_password"], dbname="postgres",
                                        connect_timeout=2)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        conn.autocommit = True
        conn.cursor().execute("CREATE TABLE bench (n bigint, t timestamptz DEFAULT now())")
        conn.close()
        writer = Writer(st["write_port"], st["superuser_password"])
        writers = {"generated": writer}
        if a.compare:
            old_proc, old_port = start_old_haproxy(c.dir, st)
            extra_procs.append(old_proc)
            result["settings"]["haproxy_old"] = "default-server " + OLD_CHECK
            time.sleep(2)  # its first checks
            writers["old"] = Writer(old_port, st["superuser_password"])
        for w in writers.values():
            w.start()
        time.sleep(2)
        if a.quiet_minutes > 0:
            term0 = c.status()["status"]["term"]
            t0 = time.monotonic()
            time.sleep(a.quiet_minutes * 60)
            v = c.status()
            result["quiet"] = {"minutes": a.quiet_minutes, "term_before": term0,
                               "term_after": v["status"]["term"],
                               "false_failovers": v["status"]["term"] - term0,
                               "max_write_gap_s": round(writer.max_gap(t0, time.monotonic()), 3),
                               "inserts": len(writer.ok)}
            print(json.dumps(result, indent=1))
            return
        node_loss = {k: [] for k in writers}
        crash = {k: [] for k in writers}
        gaps = {k: [] for k in writers}
        reported = []

        def outages(t, into):
            deadline = t + 120
            while (any(w.outage(t) is None for w in writers.values()) and
                   time.monotonic() < deadline):
                time.sleep(0.05)
            for k, w in writers.items():
                into[k].append(w.outage(t))

        for _ in range(a.runs if "node_loss" in only else 0):
            leader = c.wait_healthy()
            time.sleep(1)
            pm = postmaster_pid(c.node(leader)["data_dir"])
            t = time.monotonic()
            os.kill(c.daemon_pid(leader), signal.SIGKILL)
            os.kill(pm, signal.SIGKILL)
            outages(t, node_loss)
            c.restart_daemon(leader)
        for _ in range(a.runs if "pg_crash" in only else 0):
            leader = c.wait_healthy()
            time.sleep(1)
            t = time.monotonic()
            os.kill(postmaster_pid(c.node(leader)["data_dir"]), signal.SIGKILL)
            outages(t, crash)
        for _ in range(a.runs if "switchover" in only else 0):
            leader = c.wait_healthy()
            time.sleep(1)
            t0 = time.monotonic()
            out = sh([pgdaemon, "switchover", "--json", "--config", c.node(leader)["config"]],
                     timeout=180)
            time.sleep(2)
            for k, w in writers.items():
                gaps[k].append(w.max_gap(t0 - 0.5, time.monotonic()))
            if out.returncode == 0:
                reported.append(json.loads(out.stdout)["write_unavailable_ms"] / 1000)
        for name, per in (("node_loss_s", node_loss), ("pg_crash_s", crash),
                          ("switchover_max_gap_s", gaps)):
            result[name] = summary(per["generated"])
            if "old" in per:
                result[name + "_old_haproxy"] = summary(per["old"])
                m_new, m_old = result[name]["median"], result[name + "_old_haproxy"]["median"]
                result[name + "_ratio_generated_to_old"] = \
                    round(m_new / m_old, 2) if m_new and m_old else None
        result["switchover_reported_window_s"] = summary(reported)
        for k, w in writers.items():
            result[f"writer_errors_{k}"] = dict(w.errors.most_common(8))
        print(json.dumps(result, indent=1))
    finally:
        for w in writers.values():
            w.stop.set()
        for p in extra_procs:
            p.terminate()
        sh([pgdaemon, "cluster", "down", "--dir", c.dir], timeout=300)
        for p in c.extra:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
