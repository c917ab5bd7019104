#!/usr/bin/python3
"""tests/bench/workload/bench_workload.py - the application workload on the migrated cluster.

Not a test (its smoke run is: test_smoke.py). It sets up what an operator
has after a migration, then runs the C client `bench_workload` in each
configuration the issue names, side by side in one run:

  1. mongosim loaded with an e-commerce dataset (`bench_workload load`:
     customers, products of 8-16 KB, orders with line items, events, and
     the application's secondary indexes);
  2. a 3-node pgdaemon cluster (etcd, PostgreSQL 15, HAProxy; synchronous
     mode, wal_level=logical), `migrate init` + `migrate sync` through
     HAProxy: the JSONB tables and the indexes init translated;
  3. pgbouncer (transaction mode) in front of the primary, and a logical
     subscriber (a 4th PostgreSQL with a subscription to every table);
  4. experiments (see EXPERIMENTS), each a list of client runs; around
     every run it samples, from /proc, the CPU and memory (PSS) of every
     process (each Postgres node's backends, walsenders, replay and
     background processes, pgbouncer, HAProxy, etcd, pgdaemon, mongosim,
     the client, this driver), the machine's total CPU and load, the WAL
     written, and the replication lag of each replica and the subscriber
     (a heartbeat row written every 0.2 s and LSNs);
  5. writes results.json, report.md (tables) and SVG plots to --out-dir.

    /usr/bin/python3 tests/bench/workload/bench_workload.py --orders 1000000 --out-dir DIR
    ... --smoke           a few seconds per run, tiny dataset (the ctest smoke run)
    ... --only paths,toast

The dataset knob is --orders (customers = orders/10, products = orders/100,
events = orders); "larger than memory" is --pg-memory (a cgroup v1 memory
limit on the primary's postmaster and backends, which bounds their page
cache as well: see docs/benchmarks.md). The PostgreSQL password reaches
the client and migrate through PGPASSWORD, never a command line.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
sys.path.insert(0, HERE)

import psycopg2  # noqa: E402

import wl_report  # noqa: E402
from mgharness import PostgresInstance, build_path, default_root  # noqa: E402
from mgharness.e2e import MigrationStack, wait_until  # noqa: E402
from mgharness.pgbouncer import PgbouncerInstance  # noqa: E402
from mgharness.postgres import write_owned  # noqa: E402

DB = "shop"
TABLES = ("customers", "products", "orders", "events")
DEFAULT_MIX = "point=40,range=10,insert=15,update_small=15,update_large=10,txn=10"
TICK = os.sysconf("SC_CLK_TCK")
PG_BACKGROUND = ("checkpointer", "background writer", "walwriter", "autovacuum", "archiver",
                 "stats collector", "logical replication launcher", "postmaster")


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ---------------------------------------------------------------------------
# /proc sampling: CPU, memory and disk reads of every process we started
# ---------------------------------------------------------------------------

def read_stat(pid):
    """read_stat returns (ppid, cpu ticks, starttime) of pid or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def read_title(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def read_kb(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def read_io(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pg_kind(title, is_root):
    """pg_kind names a Postgres process's role from its process title."""
    if is_root:
        return "background"
    # "postgres: [cluster_name: ]<what> ...": pgdaemon sets cluster_name to the node name
    t = " " + title.removeprefix("postgres: ").split(": ", 1)[-1] + " "
    if " walsender " in t:
        return "walsender"
    if " walreceiver " in t:
        return "walreceiver"
    if t.startswith(" startup "):
        return "startup (replay)"
    if " logical replication " in t and " worker " in t:
        return "apply worker"
    if any(t.startswith(f" {b} ") for b in PG_BACKGROUND):
        return "background"
    return "backends"


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class ProcSampler(threading.Thread):
    """ProcSampler samples the processes under the registered roots every interval."""

    def __init__(self, interval=0.5):
        super().__init__(daemon=True)
        self.interval = interval
        self.roots = []  # (group, pid, is_postgres)
        self.samples = []  # (t, {key: (group, ticks, pss_kb, rss_kb, read_bytes)}, busy, total)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.kinds = {}  # (pid, starttime) -> kind

    def set_roots(self, roots):
        with self.lock:
            self.roots = list(roots)

    def sample(self, full):
        """sample reads every process's CPU and disk reads; memory too when full (it costs
        more: smaps_rollup walks the page tables)."""
        stats, children = {}, {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                s = read_stat(int(d))
                if s:
                    stats[int(d)] = s
                    children.setdefault(s[0], []).append(int(d))
        with self.lock:
            roots = list(self.roots)
        procs = {}
        for group, root, is_pg in roots:
            todo = [root] if root in stats else []
            while todo:
                pid = todo.pop()
                todo.extend(children.get(pid, []))
                ppid, ticks, start = stats[pid]
                key = (pid, start)
                g = group
                if is_pg:
                    kind = self.kinds.get(key)
                    if kind is None:
                        kind = self.kinds[key] = pg_kind(read_title(pid), pid == root)
                    g = f"{group}: {kind}"
                elif pid != root:
                    continue
                mem = (read_kb(f"/proc/{pid}/smaps_rollup", "Pss:"),
                       read_kb(f"/proc/{pid}/status", "VmRSS:")) if full else (None, None)
                procs[key] = (g, ticks, *mem, read_io(pid))
        busy, total = machine_busy()
        with self.lock:
            self.samples.append((time.time(), procs, busy, total))

    def run(self):
        n = 0
        while not self.stop_ev.is_set():
            t = time.time()
            n += 1
            try:
                self.sample(n % 4 == 1)
            except Exception as e:  # noqa: BLE001 - a sampler error must not stop the bench
                say(f"sampler: {e!r}")
            self.stop_ev.wait(max(0.05, self.interval - (time.time() - t)))

    def window(self, t0, t1):
        """window returns {group: {cpu_s, cpu_cores, pss_mb, rss_mb, read_mb, procs}} and the
        machine's busy cores over [t0, t1] (the samples inside it)."""
        with self.lock:
            s = [x for x in self.samples if t0 <= x[0] <= t1]
            if len(s) < 2:
                # a loaded machine can stretch one pass over /proc past a short window:
                # bracket it with the nearest samples before and after instead
                before = [x for x in self.samples if x[0] <= t0][-1:]
                after = [x for x in self.samples if x[0] >= t1][:1]
                s = before + s + after
        if len(s) < 2:
            return {}, None
        first, last = s[0], s[-1]
        dt = last[0] - first[0]
        out = {}
        for key, (g, ticks, _, _, rb) in last[1].items():
            prev = first[1].get(key)
            o = out.setdefault(g, {"cpu_s": 0.0, "read_mb": 0.0, "pss_mb": 0.0, "rss_mb": 0.0,
                                   "procs": 0})
            o["cpu_s"] += (ticks - (prev[1] if prev else 0)) / TICK
            o["read_mb"] += (rb - (prev[4] if prev else 0)) / 1e6
        for _, procs, _, _ in s:
            sums = {}
            for g, _, pss, rss, _ in procs.values():
                if pss is None:
                    continue
                a = sums.setdefault(g, [0, 0, 0])
                a[0] += pss
                a[1] += rss
                a[2] += 1
            for g, (pss, rss, n) in sums.items():
                o = out.setdefault(g, {"cpu_s": 0.0, "read_mb": 0.0, "pss_mb": 0.0,
                                       "rss_mb": 0.0, "procs": 0})
                o["pss_mb"] = max(o["pss_mb"], pss / 1024)
                o["rss_mb"] = max(o["rss_mb"], rss / 1024)
                o["procs"] = max(o["procs"], n)
        for o in out.values():
            o["cpu_cores"] = o["cpu_s"] / dt
        machine = (last[2] - first[2]) / max(last[3] - first[3], 1) * os.cpu_count()
        return out, machine


# ---------------------------------------------------------------------------
# replication lag: a heartbeat row on the primary, read on every consumer
# ---------------------------------------------------------------------------

class LagSampler(threading.Thread):
    """LagSampler writes wl.heartbeat on the primary every `beat` seconds and reads, on
    each consumer, the newest heartbeat it has applied and its applied LSN.

    lag_s = 0 when the consumer has applied the newest heartbeat, else the time
    of the read minus the heartbeat time it has (pt-heartbeat's measure; the
    resolution is the beat, 0.1 s);
    lag_bytes = the primary's current LSN - the consumer's applied LSN
    (physical: pg_last_wal_replay_lsn(); logical: the origin's remote_lsn,
    i.e. the end of the last applied transaction)."""

    def __init__(self, bench, beat=0.1):
        super().__init__(daemon=True)
        self.b = bench
        self.beat = beat
        self.samples = []  # (t, consumer, lag_s, lag_bytes, newest heartbeat written)
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        prim = self.b.pg(self.b.primary_port)
        with prim.cursor() as cur:
            cur.execute("SET synchronous_commit = local")
        cons = {}
        while not self.stop_ev.is_set():
            t = time.time()
            try:
                with prim.cursor() as cur:
                    cur.execute("UPDATE wl.heartbeat SET ts = clock_timestamp() WHERE id = 1 "
                                "RETURNING pg_current_wal_lsn(), extract(epoch FROM ts)")
                    lsn, newest = cur.fetchone()
                for name, port, kind in self.b.consumers():
                    if name not in cons:
                        cons[name] = self.b.pg(port)
                    with cons[name].cursor() as cur:
                        pos = ("pg_last_wal_replay_lsn()" if kind == "physical" else
                               "(SELECT max(remote_lsn) FROM pg_replication_origin_status)")
                        cur.execute(f"SELECT extract(epoch FROM ts), pg_wal_lsn_diff(%s, {pos}) "
                                    "FROM wl.heartbeat WHERE id = 1", (lsn,))
                        row = cur.fetchone()
                    now = time.time()
                    if row and row[0] is not None:
                        lag = 0.0 if float(row[0]) >= float(newest) else now - float(row[0])
                        with self.lock:
                            self.samples.append((now, name, lag, max(0.0, float(row[1] or 0)),
                                                 float(newest)))
            except psycopg2.Error as e:
                say(f"lag sampler: {str(e).strip()}")
                for c in list(cons.values()) + [prim]:
                    try:
                        c.rollback()
                    except psycopg2.Error:
                        pass
            self.stop_ev.wait(max(0.01, self.beat - (time.time() - t)))

    def window(self, t0, t1):
        with self.lock:
            s = [x for x in self.samples if t0 <= x[0] <= t1]
        out = {}
        for t, name, ls, lb, _ in s:
            out.setdefault(name, []).append((t - t0, ls, lb))
        return out

    def caught_up_after(self, t_stop, name):
        """caught_up_after returns seconds from t_stop until `name` showed a heartbeat written
        after t_stop (None: not yet)."""
        with self.lock:
            for t, n, ls, _, newest in self.samples:
                if n == name and newest >= t_stop and ls == 0.0:
                    return t - t_stop
        return None


def pct(values, q):
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


# ---------------------------------------------------------------------------
# the memory cgroup (cgroup v1 here: /sys/fs/cgroup/memory)
# ---------------------------------------------------------------------------

class MemCgroup:
    """MemCgroup puts a process tree under a memory limit (page cache included)."""

    BASE = "/sys/fs/cgroup/memory"

    def __init__(self, limit_bytes):
        self.path = os.path.join(self.BASE, f"mgbench-{os.getpid()}")
        os.mkdir(self.path)
        self.write("memory.limit_in_bytes", str(int(limit_bytes)))

    def write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def read(self, name):
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def add_tree(self, root):
        for pid in tree_pids(root):
            try:
                self.write("cgroup.procs", str(pid))
            except OSError:
                pass

    def release(self):
        """release moves every process of the group back to the root group."""
        for pid in self.read("cgroup.procs").split():
            try:
                with open(os.path.join(self.BASE, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass

    def stats(self):
        st = dict(line.split() for line in self.read("memory.stat").splitlines())
        return {"limit_mb": int(self.read("memory.limit_in_bytes")) / 2**20,
                "max_usage_mb": int(self.read("memory.max_usage_in_bytes")) / 2**20,
                "failcnt": int(self.read("memory.failcnt")),
                "cache_mb": int(st.get("cache", 0)) / 2**20, "rss_mb": int(st.get("rss", 0)) / 2**20}

    def close(self):
        try:
            self.release()
            os.rmdir(self.path)
        except OSError as e:
            say(f"could not remove cgroup {self.path}: {e}")


def tree_pids(root):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = read_stat(int(d))
            if s:
                children.setdefault(s[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def evict_page_cache(datadir):
    """evict_page_cache drops the data directory's files from the page cache (fadvise)."""
    n = 0
    for dirpath, _, files in os.walk(os.path.join(datadir, "base")):
        for name in files:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


# ---------------------------------------------------------------------------
# the bench
# ---------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.root = default_root()
        self.stack = MigrationStack(self.root, db=DB, say=say)
        self.out = args.out_dir
        os.makedirs(self.out, exist_ok=True)
        self.client_bin = build_path("bin", "bench_workload")
        self.results = []
        self.run_no = 0
        self.pgbouncer = None
        self.subscriber = None
        self.sampler = ProcSampler(0.5 if not args.smoke else 0.25)
        self.lag = None
        self.primary_name = None
        self.cgroup = None
        self.notes = []

    # ---- connections ----
    @property
    def password(self):
        return self.stack.password

    def env(self):
        env = dict(os.environ)
        env["PGPASSWORD"] = self.password
        return env

    def pg(self, port, dbname=DB):
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres",
                                password=self.password, dbname=dbname, connect_timeout=10)
        conn.autocommit = True
        return conn

    def sql(self, port, text, params=None, dbname=DB):
        conn = self.pg(port, dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(text, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def psql(self, text, params=None):
        return self.sql(self.primary_port, text, params)

    @property
    def primary_port(self):
        return self.stack.node(self.primary_name)["pg_port"]

    def consumers(self):
        out = [(n["name"], n["pg_port"], "physical") for n in self.stack.cluster["nodes"]
               if n["name"] != self.primary_name]
        if self.subscriber is not None:
            out.append(("subscriber", self.subscriber.port, "logical"))
        return out

    def path_uri(self, path, sync="on"):
        port = {"direct": self.primary_port, "haproxy": self.stack.write_port,
                "pgbouncer": self.pgbouncer.port if self.pgbouncer else None}[path]
        uri = f"host=127.0.0.1 port={port} dbname={DB} user=postgres connect_timeout=10"
        if sync != "on":
            uri += f" options='-c synchronous_commit={sync}'"
        return uri

    # ---- setup ----
    def setup(self):
        a = self.args
        say(f"machine: {os.cpu_count()} cores, load {loadavg()}")
        self.stack.start_source()
        t = time.time()
        subprocess.run([self.client_bin, "load", "--uri", self.stack.source_uri, "--db", DB,
                        "--orders", str(a.orders), "--seed", "1"], check=True, timeout=3600)
        say(f"source loaded: {a.orders} orders in {time.time() - t:.1f} s")
        params = ["fsync=on", "wal_level=logical", "max_connections=400",
                  f"shared_buffers={a.shared_buffers}", "max_wal_size=4GB",
                  "checkpoint_timeout=30min", "max_replication_slots=16", "max_wal_senders=16",
                  "wal_compression=off"]
        t = time.time()
        self.stack.start_cluster(nodes=3, synchronous=True, pg_parameters=params)
        self.primary_name = wait_until(self.stack.healthy_primary, 120, "a healthy primary")
        say(f"cluster up in {time.time() - t:.1f} s, primary {self.primary_name}")
        self.migrate()
        self.prepare_target()
        self.pgbouncer = PgbouncerInstance(self.root, server_port=self.primary_port, dbname=DB,
                                           password=self.password, pool_size=a.pgbouncer_pool)
        self.pgbouncer.start()
        self.start_subscriber()
        self.update_roots()
        self.sampler.start()
        self.lag = LagSampler(self)
        self.lag.start()

    def migrate(self):
        target = f"postgresql://postgres@127.0.0.1:{self.stack.write_port}/{DB}?connect_timeout=10"
        mig = build_path("bin", "migrate")
        for argv in (["init", "--include", f"{DB}.*"], ["sync", "--workers", "2"]):
            t = time.time()
            p = subprocess.run([mig, argv[0], "--source", self.stack.source_uri, "--target",
                                target, *argv[1:]], capture_output=True, text=True,
                               env=self.env(), timeout=7200)
            if p.returncode != 0:
                raise RuntimeError(f"migrate {argv[0]} exited {p.returncode}:\n{p.stdout}\n"
                                   f"{p.stderr[-3000:]}")
            say(f"migrate {argv[0]}: {time.time() - t:.1f} s")

    def prepare_target(self):
        for t in TABLES:
            self.psql(f"VACUUM ANALYZE {DB}.{t}")
        self.indexes = self.psql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND indexname NOT LIKE '%%pkey' ORDER BY indexname", (DB,))
        say(f"indexes translated by init: {[i[0] for i in self.indexes]}")
        self.psql("CREATE SCHEMA IF NOT EXISTS wl")
        self.psql("CREATE TABLE IF NOT EXISTS wl.heartbeat (id int PRIMARY KEY, ts timestamptz)")
        self.psql("INSERT INTO wl.heartbeat VALUES (1, clock_timestamp()) ON CONFLICT DO NOTHING")
        self.sizes = {t: self.psql(f"SELECT (SELECT count(*) FROM {DB}.{t}), pg_total_relation_size(oid), "
                                   f"pg_relation_size(oid), "
                                   f"COALESCE(pg_total_relation_size(reltoastrelid), 0) "
                                   f"FROM pg_class WHERE oid = '{DB}.{t}'::regclass")[0]
                      for t in TABLES}
        for t, (n, total, heap, toast) in self.sizes.items():
            say(f"  {DB}.{t}: {n} rows, {total / 2**20:.0f} MB (heap {heap / 2**20:.0f} MB, "
                f"toast {toast / 2**20:.0f} MB)")
        self.plan = "\n".join(r[0] for r in self.psql(
            f"EXPLAIN SELECT doc FROM {DB}.orders WHERE doc -> 'customer_id' = '7'::jsonb "
            f"ORDER BY doc -> 'created_at' DESC LIMIT 10"))
        say("range read plan: " + self.plan.replace("\n", " / "))

    def start_subscriber(self):
        sub = PostgresInstance(self.root, name="subscriber", extra_conf={
            "wal_receiver_status_interval": "1s", "max_connections": 50,
            "shared_buffers": self.args.shared_buffers, "max_wal_size": "4GB"})
        self.subscriber = sub
        sub.start()
        write_owned(os.path.join(sub.dir, ".pgpass"),
                    f"127.0.0.1:{self.primary_port}:{DB}:postgres:{self.password}\n", 0o600,
                    sub.run_as)
        sub.query(f"CREATE DATABASE {DB}")
        ddl = [f"CREATE SCHEMA {DB}", "CREATE SCHEMA wl",
               "CREATE TABLE wl.heartbeat (id int PRIMARY KEY, ts timestamptz)"]
        ddl += [f"CREATE TABLE {DB}.{t} (_id bigint PRIMARY KEY, doc jsonb NOT NULL)"
                for t in TABLES]
        for d in ddl:
            sub.query(d, dbname=DB)
        tables = ", ".join(f"{DB}.{t}" for t in TABLES)
        self.psql(f"CREATE PUBLICATION wl_pub FOR TABLE {tables}, wl.heartbeat")
        t = time.time()
        # the password comes from the subscriber's ~/.pgpass, not the catalog
        sub.query(f"CREATE SUBSCRIPTION wl_sub CONNECTION 'host=127.0.0.1 "
                  f"port={self.primary_port} user=postgres dbname={DB}' PUBLICATION wl_pub",
                  dbname=DB)
        wait_until(lambda: sub.query("SELECT count(*) FILTER (WHERE srsubstate <> 'r'), "
                                     "count(*) FROM pg_subscription_rel", dbname=DB)[0]
                   == (0, len(TABLES) + 1), 3600, "the subscription's initial copy", 1.0)
        say(f"logical subscriber: initial copy done in {time.time() - t:.1f} s")

    def update_roots(self):
        roots = []
        for n in self.stack.cluster["nodes"]:
            pid = self.stack.postmaster_pid(n["name"])
            role = "primary" if n["name"] == self.primary_name else "replica"
            if pid:
                roots.append((f"{n['name']} ({role})", pid, True))
        if self.subscriber is not None:
            roots.append(("subscriber", self.subscriber.pid, True))
        for p in self.stack.cluster["processes"]:
            roots.append((p["role"] if p["role"] != "pgdaemon" else f"pgdaemon {p['name']}",
                          p["pid"], False))
        if self.pgbouncer is not None:
            roots.append(("pgbouncer", self.pgbouncer.pid, False))
        if self.stack.source is not None:
            roots.append(("mongosim", self.stack.source.pid, False))
        roots.append(("driver (this script)", os.getpid(), False))
        self.base_roots = roots
        self.sampler.set_roots(roots)

    # ---- one client run ----
    def run(self, exp, label, path="direct", conns=8, mix=DEFAULT_MIX, rate=0, txn=True,
            sync="on", duration=None, target="pg", dry=False, note="", arm=None, rnd=0):
        """run runs the client once and records it; arm names the configuration within the
        experiment and rnd the round (ratios are taken between arms of one round)."""
        if rnd:
            label = f"{label} [r{rnd + 1}]"
        a = self.args
        duration = duration or a.seconds
        self.run_no += 1
        out = os.path.join(self.out, f"run-{self.run_no:02d}.json")
        uri = self.stack.source_uri if target == "mongo" else self.path_uri(path, sync)
        argv = [self.client_bin, "run", "--target", target, "--uri", uri, "--ns", DB,
                "--connections", str(conns), "--duration", str(duration), "--warmup",
                str(a.warmup), "--mix", mix, "--txn", "on" if txn else "off", "--seed",
                str(self.run_no), "--label", label, "--out", out, "--drain", str(a.drain)]
        if rate:
            argv += ["--rate", str(rate)]
        if dry:
            argv.append("--dry")
        lsn0 = self.psql("SELECT pg_current_wal_lsn()")[0][0]
        load0 = loadavg()
        t_start = time.time()
        proc = subprocess.Popen(argv, env=self.env(), stderr=subprocess.PIPE, text=True)
        self.sampler.set_roots(self.base_roots + [("client", proc.pid, False)])
        _, err = proc.communicate(timeout=duration + a.warmup + a.drain + 300)
        t_stop = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"bench_workload {label} exited {proc.returncode}: {err[-3000:]}")
        with open(out) as f:
            rep = json.load(f)
        lsn1 = self.psql("SELECT pg_current_wal_lsn()")[0][0]
        wal = self.psql("SELECT pg_wal_lsn_diff(%s, %s)", (lsn1, lsn0))[0][0]
        w0 = rep["start_unix_ms"] / 1000.0
        w1 = w0 + rep["window_s"]
        procs, machine = self.sampler.window(w0, w1)
        catch = self.wait_caught_up(t_stop)
        lag = self.lag.window(w0, t_stop + 1) if self.lag else {}
        rec = {"exp": exp, "label": label, "arm": arm or label, "round": rnd, "path": path,
               "conns": conns, "mix": mix,
               "rate": rate, "txn": txn, "sync": sync, "target": target, "dry": dry,
               "note": note, "report": rep, "procs": procs, "machine_busy_cores": machine,
               "load_before": load0, "load_after": loadavg(), "wal_bytes": float(wal),
               "wall": [t_start, t_stop], "caught_up_s": catch,
               "lag": {n: {"p50_s": pct([x[1] for x in v], 0.5),
                           "p99_s": pct([x[1] for x in v], 0.99),
                           "max_s": max(x[1] for x in v),
                           "p50_mb": pct([x[2] for x in v], 0.5) / 1e6,
                           "max_mb": max(x[2] for x in v) / 1e6,
                           "series": [(round(t, 2), round(s, 3)) for t, s, _ in v]}
                       for n, v in lag.items() if v}}
        self.results.append(rec)
        lat = rep["latency_ms"]
        say(f"{exp:10s} {label:38s} {rep['throughput']:9.0f} ops/s  p50 {lat['p50']:.2f} "
            f"p99 {lat['p99']:.2f} p99.9 {lat['p99_9']:.2f} ms  err {rep['errors']}  "
            f"client {rep['client']['cpu_cores']:.2f} cores, outside driver "
            f"{100 * rep['client']['outside_fraction']:.1f}%  load {load0[0]:.1f}")
        if rep["errors"]:
            for op, o in rep["by_op"].items():
                if o["errors"]:
                    say(f"    {op}: {o['errors']} errors, first: {o['first_error']}")
        return rec

    def wait_caught_up(self, t_stop):
        """wait_caught_up waits until every consumer applied a heartbeat written after the run;
        returns {consumer: seconds}."""
        out = {}
        if self.lag is None:
            return out
        deadline = time.time() + self.args.catchup_timeout
        names = [c[0] for c in self.consumers()]
        while time.time() < deadline:
            for n in names:
                if n not in out:
                    v = self.lag.caught_up_after(t_stop, n)
                    if v is not None:
                        out[n] = v
            if len(out) == len(names):
                break
            time.sleep(0.1)
        return out

    def close(self):
        for th in (self.lag, self.sampler):
            if th is not None and th.is_alive():
                th.stop_ev.set()
                th.join(timeout=10)
        if self.cgroup is not None:
            self.cgroup.close()
        for svc in (self.pgbouncer, self.subscriber):
            if svc is not None:
                svc.close()
        return self.stack.close()


# ---------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------

def rounds(b):
    return range(b.args.rounds)


def exp_client(b):
    """client capacity: the same requests built, none sent (--dry)."""
    b.run("client", "client only (--dry), 1 thread", conns=1, dry=True)


def exp_paths(b):
    """direct vs HAProxy vs pgbouncer (transaction mode), for 1 and for many connections."""
    for r in rounds(b):
        for conns in (1, b.args.many):
            for path in ("direct", "haproxy", "pgbouncer"):
                b.run("paths", f"{path}, {conns} conn", path=path, conns=conns,
                      arm=f"{path}@{conns}", rnd=r)


def exp_open(b):
    """open loop at half the closed-loop throughput: latency from the due time."""
    closed = [x["report"]["throughput"] for x in b.results if x["exp"] == "paths"
              and x["arm"] == f"direct@{b.args.many}"]
    rate = max(50, int(0.5 * sorted(closed)[len(closed) // 2])) if closed else 200
    for r in rounds(b):
        for path in ("direct", "pgbouncer"):
            b.run("open", f"{path}, {b.args.many} conn, open {rate}/s", path=path,
                  conns=b.args.many, rate=rate, arm=path, rnd=r)


def exp_toast(b):
    """the same $inc on a ~0.5 KB customer and on an 8-16 KB (TOASTed) product."""
    for r in rounds(b):
        for op in ("update_small", "update_large"):
            b.run("toast", f"{op}=100, 8 conn", conns=8, mix=f"{op}=100", arm=op, rnd=r)


def exp_replication(b):
    """apply lag of the physical replicas and the logical subscriber, same WAL, one run each."""
    big = [x["report"]["throughput"] for x in b.results if x["exp"] == "toast"
           and x["arm"] == "update_large"]
    rate = max(20, int(0.6 * sorted(big)[len(big) // 2])) if big else 100
    for op in ("update_large", "update_small"):
        b.run("repl", f"{op}=100 open {rate}/s, 8 conn", conns=8, mix=f"{op}=100", rate=rate,
              duration=b.args.seconds * 2, arm=op)


def exp_sync(b):
    """synchronous replication on (the cluster's synchronous mode) vs synchronous_commit=local."""
    for r in rounds(b):
        for sync in ("on", "local"):
            b.run("syncrep", f"synchronous_commit={sync}, 8 conn", conns=8, sync=sync,
                  arm=sync, rnd=r)


def exp_txn(b):
    """place-order as one transaction vs the same statements in autocommit."""
    for r in rounds(b):
        for txn in (True, False):
            b.run("txn", f"txn=100, transactions {'on' if txn else 'off'}, 8 conn", conns=8,
                  mix="txn=100", txn=txn, arm="on" if txn else "off", rnd=r)


FK_COLS = (("orders", "orders_customer_fk"), ("events", "events_customer_fk"))
FK_MIX = "insert=50,txn=50"


def exp_fk(b):
    """foreign keys orders/events.customer_id -> customers, on stored generated columns."""
    b.run("fk", "no fk column (as migrated)", conns=8, mix=FK_MIX, arm="none")
    t = time.time()
    for table, _ in FK_COLS:
        b.psql(f"ALTER TABLE {DB}.{table} ADD COLUMN customer_fk bigint GENERATED ALWAYS AS "
               f"((doc ->> 'customer_id')::bigint) STORED")
    t_col = time.time() - t
    t = time.time()
    for table, con in FK_COLS:
        b.psql(f"ALTER TABLE {DB}.{table} ADD CONSTRAINT {con} FOREIGN KEY (customer_fk) "
               f"REFERENCES {DB}.customers (_id) NOT VALID")
        b.psql(f"ALTER TABLE {DB}.{table} VALIDATE CONSTRAINT {con}")
    t_fk = time.time() - t
    b.notes.append(f"fk: adding the generated columns took {t_col:.1f} s (a table rewrite of "
                   f"orders and events), adding and validating the two FKs {t_fk:.1f} s")
    say(b.notes[-1])
    for r in rounds(b):
        if r:
            for table, con in FK_COLS:
                b.psql(f"ALTER TABLE {DB}.{table} ADD CONSTRAINT {con} FOREIGN KEY "
                       f"(customer_fk) REFERENCES {DB}.customers (_id) NOT VALID")
        b.run("fk", "fk column + FOREIGN KEY", conns=8, mix=FK_MIX, arm="fk", rnd=r)
        for table, con in FK_COLS:
            b.psql(f"ALTER TABLE {DB}.{table} DROP CONSTRAINT {con}")
        b.run("fk", "fk column, no constraint", conns=8, mix=FK_MIX, arm="column", rnd=r)
    for table, _ in FK_COLS:
        b.psql(f"ALTER TABLE {DB}.{table} DROP COLUMN customer_fk")


def blks_read(b):
    return b.psql("SELECT blks_read FROM pg_stat_database WHERE datname = %s", (DB,))[0][0]


def exp_memory(b):
    """point reads with the data in memory vs under a memory cgroup smaller than the data."""
    mix = "point=100"
    node = b.stack.node(b.primary_name)
    try:
        b.cgroup = MemCgroup(b.args.pg_memory_bytes)
    except OSError as e:
        b.notes.append(f"memory: no cgroup arm: could not create a memory cgroup under "
                       f"{MemCgroup.BASE} ({e}); it needs the cgroup v1 memory controller and "
                       f"root")
        say(b.notes[-1])
        b.run("memory", "point=100, in memory", conns=8, mix=mix, arm="memory")
        return
    try:
        for r in rounds(b):
            b.psql(f"SELECT count(*) FROM {DB}.orders")  # the OS cache holds the table
            b0 = blks_read(b)
            rec = b.run("memory", "point=100, in memory", conns=8, mix=mix, arm="memory", rnd=r)
            rec["blks_read"] = blks_read(b) - b0
            b.psql("CHECKPOINT")
            b.cgroup.add_tree(b.stack.postmaster_pid(b.primary_name))
            n = evict_page_cache(node["data_dir"])
            b.cgroup.write("memory.max_usage_in_bytes", "0")
            b.cgroup.write("memory.failcnt", "0")
            b0 = blks_read(b)
            rec = b.run("memory", f"point=100, cgroup {b.args.pg_memory}", conns=8, mix=mix,
                        note=f"{n} files evicted from the page cache first", arm="cgroup",
                        rnd=r)
            rec["blks_read"] = blks_read(b) - b0
            rec["cgroup"] = b.cgroup.stats()
            say(f"    cgroup: {rec['cgroup']}, blocks read from the OS {rec['blks_read']}")
            b.cgroup.release()
    finally:
        b.cgroup.close()
        b.cgroup = None


def exp_indexes(b):
    """the translated secondary indexes on vs off: writes, and the range read."""
    mix = "insert=40,update_small=30,txn=30"
    b.run("indexes", "writes, indexes on", conns=8, mix=mix, arm="writes on")
    b.run("indexes", "range=100, indexes on, 1 conn", conns=1, mix="range=100", arm="range on")
    for name, _ in b.indexes:
        b.psql(f'DROP INDEX {DB}."{name}"')
    try:
        b.run("indexes", "writes, indexes off", conns=8, mix=mix, arm="writes off")
        b.run("indexes", "range=100, indexes off, 1 conn", conns=1, mix="range=100",
              arm="range off")
    finally:
        t = time.time()
        for _, ddl in b.indexes:
            b.psql(ddl)
        b.notes.append(f"indexes: rebuilding the {len(b.indexes)} translated indexes took "
                       f"{time.time() - t:.1f} s")


def exp_mongosim(b):
    """the same client through libmongoc against mongosim: a check of the client only."""
    # no range reads and no transactions: mongosim has no secondary indexes and
    # evaluates a filter other than _id on every document
    mix = "point=50,insert=20,update_small=20,update_large=10"
    b.run("mongosim", "libpq -> PostgreSQL direct", conns=8, mix=mix, arm="pg")
    b.run("mongosim", "libmongoc -> mongosim", conns=8, mix=mix, target="mongo", arm="mongo")


# (experiment, numerator arm, denominator arm, what the ratio shows)
RATIOS = (
    ("paths", "haproxy@1", "direct@1", "HAProxy / direct, 1 connection"),
    ("paths", "pgbouncer@1", "direct@1", "pgbouncer / direct, 1 connection"),
    ("paths", "haproxy@MANY", "direct@MANY", "HAProxy / direct, MANY connections"),
    ("paths", "pgbouncer@MANY", "direct@MANY", "pgbouncer / direct, MANY connections"),
    ("open", "pgbouncer", "direct", "open loop: pgbouncer / direct"),
    ("toast", "update_large", "update_small", "TOASTed update / small update"),
    ("syncrep", "on", "local", "synchronous replication on / off"),
    ("txn", "on", "off", "place-order in one transaction / autocommit"),
    ("fk", "fk", "column", "FOREIGN KEY / same column without it"),
    ("memory", "cgroup", "memory", "larger than memory / in memory"),
    ("indexes", "writes off", "writes on", "writes, indexes off / on"),
    ("indexes", "range off", "range on", "range read, indexes off / on"),
)


EXPERIMENTS = {"client": exp_client, "paths": exp_paths, "open": exp_open, "toast": exp_toast,
               "repl": exp_replication, "syncrep": exp_sync, "txn": exp_txn, "fk": exp_fk,
               "memory": exp_memory, "indexes": exp_indexes, "mongosim": exp_mongosim}


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

def group_cpu(procs, prefix):
    return sum(v["cpu_cores"] for k, v in procs.items() if k.startswith(prefix))


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def ratio_rows(b):
    """ratio_rows: for each RATIOS entry, the throughput and p99 ratios of the two arms in
    every round that ran both."""
    res, rows = b.results, []
    for exp, num, den, what in RATIOS:
        num, den = (x.replace("MANY", str(b.args.many)) for x in (num, den))
        tp, p99 = [], []
        for rnd in sorted({r["round"] for r in res if r["exp"] == exp}):
            pick = {r["arm"]: r["report"] for r in res if r["exp"] == exp and r["round"] == rnd}
            if num in pick and den in pick and pick[den]["throughput"] > 0:
                tp.append(pick[num]["throughput"] / pick[den]["throughput"])
                p99.append(pick[num]["latency_ms"]["p99"] /
                           max(pick[den]["latency_ms"]["p99"], 1e-6))
        if tp:
            rows.append([what.replace("MANY", str(b.args.many)),
                         ", ".join(f"{x:.2f}" for x in tp), median(tp),
                         ", ".join(f"{x:.2f}" for x in p99), median(p99)])
    return rows


def write_report(b):
    res = b.results
    with open(os.path.join(b.out, "results.json"), "w") as f:
        json.dump({"args": vars(b.args), "sizes": b.sizes, "plan": b.plan,
                   "indexes": b.indexes, "notes": b.notes, "ratios": ratio_rows(b),
                   "runs": res}, f, indent=1, default=str)
    prim = f"{b.primary_name} (primary)"
    rows = []
    for r in res:
        rep, c = r["report"], r["report"]["client"]
        lat = rep["latency_ms"]
        ops = max(rep["ops"], 1)
        rows.append([r["exp"], r["label"], rep["throughput"], lat["p50"], lat["p95"], lat["p99"],
                     lat["p99_9"], lat["max"], rep["errors"] + rep["not_started"],
                     r["wal_bytes"] / ops / 1024 if not r["dry"] else None,
                     group_cpu(r["procs"], prim), c["cpu_cores"],
                     100 * c["outside_fraction"], r["machine_busy_cores"],
                     max(0.0, (r["machine_busy_cores"] or 0)
                         - sum(v["cpu_cores"] for v in r["procs"].values())),
                     r["load_before"][0]])
    header = ["exp", "run", "ops/s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms",
              "errors", "WAL KB/op", "primary CPU cores", "client CPU cores",
              "client outside driver %", "machine busy cores", "others' cores", "load"]
    md = ["# bench_workload results", "",
          f"orders {b.args.orders}; sizes (rows, total MB, TOAST MB): " + ", ".join(
              f"{t} {v[0]} / {v[1] / 2**20:.0f} / {v[3] / 2**20:.0f}"
              for t, v in b.sizes.items()), "",
          "range read plan: `" + b.plan.replace("\n", " / ") + "`", "",
          wl_report.markdown_table(header, rows), "",
          "## Ratios, measured side by side (one value per round)", "",
          wl_report.markdown_table(["comparison", "throughput ratio per round", "median",
                                    "p99 ratio per round", "median"], ratio_rows(b)), ""]
    md += [f"- {n}" for n in b.notes] + [""]
    # per-process CPU and memory
    groups = sorted({g for r in res for g in r["procs"]})
    md += ["## CPU (cores) and memory (PSS MB, max) per process group", ""]
    prow = []
    for r in res:
        for g in groups:
            v = r["procs"].get(g)
            if v and (v["cpu_cores"] > 0.005 or g.startswith("client")):
                prow.append([r["exp"], r["label"], g, v["procs"], v["cpu_cores"], v["pss_mb"],
                             v["rss_mb"], v["read_mb"]])
    md += [wl_report.markdown_table(["exp", "run", "process group", "procs", "CPU cores",
                                     "PSS MB", "RSS MB", "disk read MB"], prow), ""]
    # lag
    lrow = []
    for r in res:
        for n, v in r["lag"].items():
            lrow.append([r["exp"], r["label"], n, v["p50_s"], v["p99_s"], v["max_s"],
                         v["p50_mb"], v["max_mb"], r["caught_up_s"].get(n)])
    md += ["## Replication lag (heartbeat every 0.1 s; bytes = primary LSN - applied LSN)", "",
           wl_report.markdown_table(["exp", "run", "consumer", "lag p50 s", "lag p99 s",
                                     "lag max s", "behind p50 MB", "behind max MB",
                                     "caught up after stop, s"], lrow), ""]
    for r in res:
        if r.get("cgroup"):
            md += [f"memory cgroup during \"{r['label']}\": {r['cgroup']}, "
                   f"blocks read from the OS: {r.get('blks_read')}", ""]
        if r["note"]:
            md += [f"{r['label']}: {r['note']}", ""]
    md += ["The mongosim rows run the same client through libmongoc against mongosim, the "
           "project's MongoDB stand-in (one global write lock, no secondary indexes): a check "
           "that the client can offer the load, never a claim about MongoDB.", ""]
    with open(os.path.join(b.out, "report.md"), "w") as f:
        f.write("\n".join(md))
    write_plots(b, prim)
    print("\n".join(md))


def write_plots(b, prim):
    res = b.results

    def save(name, text):
        with open(os.path.join(b.out, name), "w") as f:
            f.write(text)

    exps = []
    for r in res:
        if r["exp"] not in exps:
            exps.append(r["exp"])
    for e in exps:
        rs = [r for r in res if r["exp"] == e]
        save(f"latency-{e}.svg", wl_report.percentile_plot(
            f"{e}: latency by percentile (coordinated omission corrected)",
            [(r["label"], r["report"]["curve"]) for r in rs]))
    labels = [f"{r['exp']}: {r['label']}" for r in res if not r["dry"]]
    real = [r for r in res if not r["dry"]]
    save("throughput.svg", wl_report.bar_chart(
        "throughput per run", labels, [("ops/s", [r["report"]["throughput"] for r in real])],
        "ops/s", width=max(900, 40 * len(labels) + 300), height=560))
    save("latency-p99.svg", wl_report.bar_chart(
        "latency per run", labels,
        [(q, [r["report"]["latency_ms"][k] for r in real])
         for q, k in (("p50", "p50"), ("p95", "p95"), ("p99", "p99"))],
        "ms", width=max(900, 40 * len(labels) + 300), height=560))
    groups = sorted({g.split(":")[0] for r in real for g in r["procs"]})
    parts = [(g, [sum(v["cpu_cores"] for k, v in r["procs"].items() if k.split(":")[0] == g)
                  for r in real]) for g in groups]
    parts = [p for p in parts if max(p[1] + [0]) > 0.01]
    save("cpu.svg", wl_report.stacked_bars("CPU by process group (cores)", labels, parts,
                                           "cores", width=max(900, 40 * len(labels) + 360),
                                           height=600))
    for r in res:
        if r["exp"] == "repl" or (r["exp"] == "toast" and r["round"] == 0):
            name = f"lag-{r['exp']}-{r['arm']}.svg" if r["exp"] == "toast" else \
                f"lag-{r['label'].split('=')[0]}.svg"
            save(name, wl_report.time_plot(
                f"apply lag: {r['exp']}: {r['label']}",
                [(n, v["series"]) for n, v in sorted(r["lag"].items())], "lag, s"))


def replot(path, out):
    """replot writes report.md and the SVGs of a finished run again (into out)."""
    with open(path) as f:
        d = json.load(f)
    b = argparse.Namespace(results=d["runs"], out=out, sizes=d["sizes"], plan=d["plan"],
                           indexes=d["indexes"], notes=d["notes"],
                           args=argparse.Namespace(**d["args"]))
    prim = [g for r in b.results for g in r["procs"] if g.endswith("(primary): backends")]
    b.primary_name = prim[0].split(" ")[0] if prim else "?"
    os.makedirs(out, exist_ok=True)
    write_report(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=1000000, help="dataset size (orders)")
    ap.add_argument("--seconds", type=float, default=15, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--drain", type=float, default=10)
    ap.add_argument("--many", type=int, default=32, help="connections for 'many clients'")
    ap.add_argument("--rounds", type=int, default=1, help="repeat paths/toast alternating")
    ap.add_argument("--shared-buffers", default="128MB")
    ap.add_argument("--pg-memory", default="384M", help="cgroup memory limit (memory exp.)")
    ap.add_argument("--pgbouncer-pool", type=int, default=8)
    ap.add_argument("--catchup-timeout", type=float, default=120)
    ap.add_argument("--only", default="", help="comma-separated experiments: "
                    + ",".join(EXPERIMENTS))
    ap.add_argument("--out-dir", default="bench-workload-out")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick (ctest)")
    ap.add_argument("--replot", metavar="RESULTS_JSON",
                    help="only write report.md and the plots again from a results.json")
    args = ap.parse_args()
    if args.replot:
        return replot(args.replot, args.out_dir)
    if args.smoke:
        args.orders, args.seconds, args.warmup, args.drain = min(args.orders, 3000), 1.0, 0.3, 2
        args.many, args.catchup_timeout = 4, 60
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    args.pg_memory_bytes = int(float(args.pg_memory[:-1]) * units[args.pg_memory[-1].upper()]) \
        if args.pg_memory[-1].upper() in units else int(args.pg_memory)
    only = [e for e in args.only.split(",") if e] or list(EXPERIMENTS)
    for e in only:
        if e not in EXPERIMENTS:
            sys.exit(f"unknown experiment {e!r}; known: {', '.join(EXPERIMENTS)}")
    b = Bench(args)
    try:
        b.setup()
        for e in EXPERIMENTS:
            if e in only:
                say(f"--- {e}: {EXPERIMENTS[e].__doc__.strip()}")
                EXPERIMENTS[e](b)
        write_report(b)
    finally:
        errors = b.close()
        for e in errors or []:
            say(f"teardown: {e}")


if __name__ == "__main__":
    main()
