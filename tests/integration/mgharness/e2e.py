"""tests/integration/mgharness/e2e.py - the whole system on loopback.

`MigrationStack` starts what a migration meets in production, scaled down:
mongosim loaded with a sample dataset (several collections of realistic
documents, datagen) and datagen's live write workload with its log of
acknowledged writes, a pgdaemon cluster (`pgdaemon cluster up`: etcd, N
PostgreSQL 15 nodes, HAProxy routing writes to the primary), and the
`migrate` commands pointed at HAProxy's write port. `scripts/demo.py`
(`make demo`) and `tests/integration/e2e` both use it, so the demo runs
what the end-to-end test proves.

Everything it starts is tagged with the temp root (MGHARNESS_ROOT), runs
in its own process group with PDEATHSIG, and `close()` stops it all.
"""

import json
import os
import signal
import subprocess
import time

from .mongosim import MongosimInstance
from .paths import build_path
from .procs import ROOT_TAG_VAR, ManagedProcess, ProcessIdentity

# (collection, documents, datagen arguments): a small shop.
SAMPLE = (
    ("customers", 20000, ["--id-type", "uuid", "--size-min", "300", "--size-max", "1500"]),
    ("orders", 60000, ["--id-type", "objectid", "--size-min", "400", "--size-max", "4000",
                       "--big-every", "5000", "--big-size", "200000"]),
    ("products", 5000, ["--id-type", "int", "--all-types-every", "50", "--size-min", "200",
                        "--size-max", "20000"]),
    ("events", 80000, ["--id-type", "string", "--size-min", "150", "--size-max", "600"]),
)

# Finds the application runs, for shadow reads (docs/shadow-reads.md).
SHADOW_QUERIES = (
    {"name": "active_adults", "ns": "{db}.customers",
     "filter": {"active": True, "age": {"$gte": 30, "$lt": 40}},
     "sort": {"age": 1, "email": 1}, "limit": 50},
    {"name": "customers_in_city", "ns": "{db}.customers",
     "filter": {"address.city": "Lisbon"}, "projection": {"name": 1, "email": 1}},
    {"name": "top_orders", "ns": "{db}.orders", "filter": {"score": {"$gt": 90}},
     "sort": {"score": -1, "_id": 1}, "limit": 20},
    {"name": "tagged_orders", "ns": "{db}.orders", "filter": {"tags": {"$in": ["alpha", "delta"]}},
     "projection": {"tags": 1, "version": 1}, "sort": {"_id": 1}, "limit": 100},
    {"name": "products_without_nickname", "ns": "{db}.products",
     "filter": {"nickname": None}, "sort": {"_id": 1}, "limit": 100},
    {"name": "recent_events", "ns": "{db}.events",
     "filter": {"createdAt": {"$gte": {"$date": "2020-01-01T00:00:00Z"}}},
     "sort": {"createdAt": -1, "_id": 1}, "limit": 25},
)


def _env(root, extra=None):
    env = dict(os.environ)
    env[ROOT_TAG_VAR] = root.path
    env.update(extra or {})
    return env


class WaitTimeout(AssertionError):
    """WaitTimeout: a wait_until that ran out of time (an AssertionError, so tests fail)."""


def wait_until(predicate, timeout, what, interval=0.25):
    """wait_until polls predicate() until truthy and returns its value; raises on timeout.

    An exception from predicate counts as "not yet" (services may be down
    on purpose); the last value or exception is in the timeout message."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # noqa: BLE001 - report the last reason on timeout
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise WaitTimeout(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def terminate(proc, timeout=60):
    """terminate stops a Popen with SIGTERM, then SIGKILL after timeout; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class MigrationStack:
    """MigrationStack: source, workload, target cluster and the migrate commands."""

    def __init__(self, root, db="shop", say=None):
        self.root = root
        self.db = db
        self.say = say or (lambda msg: None)
        self.dir = root.mkdtemp("e2e")
        os.chmod(self.dir, 0o755)  # the postgres user must traverse it
        self.source = None
        self.real_uri = None
        self.workloads = []  # (coll, Popen, ack log path)
        self.cluster_dir = os.path.join(self.dir, "cluster")
        self.cluster = None  # cluster.json once up
        self.restarted = {}  # node name -> ManagedProcess
        self.logs = []

    # ---- source ----

    def start_source(self):
        """start_source starts mongosim, or uses MIGRATE_TEST_MONGODB_URI (a real replica set)."""
        real = os.environ.get("MIGRATE_TEST_MONGODB_URI")
        if real:
            self.real_uri = real
            self.say(f"source: the real MongoDB at MIGRATE_TEST_MONGODB_URI, database {self.db}")
            return
        self.source = MongosimInstance(self.root)
        self.source.start()
        self.say(f"mongosim (MongoDB wire protocol) listening on {self.source.address}")

    @property
    def source_uri(self):
        return self.real_uri or self.source.uri

    def source_client(self):
        """source_client is a pymongo client of the source (caller closes it)."""
        import pymongo

        return pymongo.MongoClient(self.source_uri, serverSelectionTimeoutMS=5000)

    def load_sample(self, scale=1.0):
        """load_sample fills the source database with SAMPLE (counts times scale)."""
        total = 0
        for i, (coll, count, args) in enumerate(SAMPLE):
            n = max(100, int(count * scale))
            subprocess.run([build_path("bin", "datagen"), "generate", "--uri", self.source_uri,
                            "--db", self.db, "--coll", coll, "--count", str(n), "--seed",
                            str(100 + i), *args], check=True, capture_output=True, timeout=900)
            total += n
            self.say(f"  {self.db}.{coll}: {n} documents")
        return total

    def sample_count(self, coll, scale=1.0):
        return max(100, int(dict((c, n) for c, n, _ in SAMPLE)[coll] * scale))

    def start_workload(self, coll, rate, seconds, scale=1.0):
        """start_workload runs datagen's insert/update/replace/delete/txn mix on db.coll
        (same seed and _id type as load_sample, so updates and deletes hit its documents)."""
        i, (_, _, args) = next((i, s) for i, s in enumerate(SAMPLE) if s[0] == coll)
        existing, seed = self.sample_count(coll, scale), 100 + i
        id_type = args[args.index("--id-type") + 1]
        ack = os.path.join(self.dir, f"ack-{coll}.log")
        err = open(os.path.join(self.dir, f"workload-{coll}.err"), "w")
        proc = subprocess.Popen([build_path("bin", "datagen"), "workload", "--uri",
                                 self.source_uri, "--db", self.db, "--coll", coll, "--existing",
                                 str(existing), "--rate", str(rate), "--duration", str(seconds),
                                 "--ack-log", ack, "--seed", str(seed), "--id-type", id_type],
                                stdout=subprocess.PIPE, stderr=err, text=True, errors="replace",
                                env=_env(self.root), start_new_session=True)
        err.close()
        self.workloads.append((coll, proc, ack))
        return ack

    def acknowledged(self, coll):
        ack = next(a for c, _, a in self.workloads if c == coll)
        with open(ack) as f:
            return sum(1 for _ in f)

    def stop_workloads(self):
        """stop_workloads ends every workload (SIGINT, then SIGKILL) and returns their stats."""
        stats = {}
        for coll, proc, _ in self.workloads:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            lines = [line for line in (out or "").splitlines() if line.startswith("{")]
            stats[coll] = json.loads(lines[-1]) if lines else {}
        return stats

    # ---- target cluster ----

    def pgdaemon(self, *args, timeout=120):
        return subprocess.run([build_path("bin", "pgdaemon"), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout,
                              env=_env(self.root), stdin=subprocess.DEVNULL)

    def start_cluster(self, nodes=3, ttl=5, loop_ms=500, retry_ms=1500, synchronous=True,
                      pg_parameters=()):
        """start_cluster runs `pgdaemon cluster up`; pg_parameters ("name=value", ...) come
        after the defaults (fsync=off, mmap shared memory) and override them."""
        args = ["cluster", "up", "--nodes", nodes, "--dir", self.cluster_dir, "--timeout", 120,
                "--pg-parameter", "fsync=off", "--pg-parameter",
                "dynamic_shared_memory_type=mmap", "--ttl", ttl, "--loop-wait-ms", loop_ms,
                "--retry-timeout-ms", retry_ms]
        for p in pg_parameters:
            args += ["--pg-parameter", p]
        if synchronous:
            args.append("--synchronous-mode")
        up = self.pgdaemon(*args, timeout=240)
        if up.returncode != 0:
            raise RuntimeError(f"pgdaemon cluster up failed:\n{up.stdout}\n{up.stderr}")
        with open(os.path.join(self.cluster_dir, "cluster.json")) as f:
            self.cluster = json.load(f)
        self.psql("postgres", f'CREATE DATABASE "{self.db}"')
        return up.stdout

    @property
    def password(self):
        return self.cluster["superuser_password"]

    @property
    def write_port(self):
        return self.cluster["write_port"]

    @property
    def target_uri(self):
        """target_uri is HAProxy's write address: always the current primary."""
        return (f"postgresql://postgres:{self.password}@127.0.0.1:{self.write_port}/"
                f"{self.db}?connect_timeout=5")

    def psql(self, dbname, sql, port=None):
        """psql runs sql through HAProxy (or on port) and returns the rows."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port or self.write_port, user="postgres",
                                password=self.password, dbname=dbname, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def query(self, sql):
        return self.psql(self.db, sql)

    def node(self, name):
        return next(n for n in self.cluster["nodes"] if n["name"] == name)

    def status(self):
        out = self.pgdaemon("status", "--json", "--config", self.cluster["nodes"][0]["config"],
                            timeout=30)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return json.loads(out.stdout)

    def leader(self):
        """leader is the name of the node holding the leader key (None while there is none)."""
        return self.status().get("leader") or None

    def healthy_primary(self, nodes=None):
        """healthy_primary returns the leader once it is primary and the replicas stream."""
        v = self.status()
        leader = v.get("leader")
        byname = {n["name"]: n for n in v["nodes"]}
        want = nodes or len(self.cluster["nodes"])
        if not leader or len(byname) != want or leader not in byname:
            return None
        if byname[leader]["state"] != "primary" or not byname[leader]["pg_queries_ok"]:
            return None
        if any(n["state"] != "replica" or not n["streaming"]
               for name, n in byname.items() if name != leader):
            return None
        if self.psql("postgres", "SELECT inet_server_port()") != [
                (self.node(leader)["pg_port"],)]:
            return None
        return leader

    def postmaster_pid(self, name):
        try:
            with open(os.path.join(self.node(name)["data_dir"], "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def daemon_pid(self, name):
        if name in self.restarted:
            return self.restarted[name].pid
        return [p for p in self.cluster["processes"] if p["name"] == name][-1]["pid"]

    def kill_postmaster(self, name):
        """kill_postmaster SIGKILLs the node's postmaster (its daemon restarts it)."""
        pid = self.postmaster_pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_node(self, name):
        """kill_node SIGKILLs the node's daemon and its postmaster: a lost node."""
        daemon = self.daemon_pid(name)
        os.kill(daemon, signal.SIGKILL)
        ident = ProcessIdentity.of(daemon)
        wait_until(lambda: ident is None or not ident.alive(), 10, "the daemon to die")
        pid = self.postmaster_pid(name)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def restart_daemon(self, name):
        """restart_daemon starts `pgdaemon run` for the node again; it rejoins."""
        n = self.node(name)
        old = self.restarted.pop(name, None)
        if old is not None:
            old.stop()
        self.restarted[name] = ManagedProcess(
            [build_path("bin", "pgdaemon"), "run", "--config", n["config"]],
            log_path=os.path.join(self.cluster_dir, name, "pgdaemon-restarted.log"),
            cwd=os.path.dirname(n["config"]), tag=self.root.path,
            on_spawn=self.root.record_process, stop_signal=signal.SIGTERM)

    # ---- migrate ----

    def migrate_argv(self, *args):
        return [build_path("bin", "migrate"), *map(str, args)]

    def migrate(self, *args, timeout=900, check=False):
        """migrate runs one migrate command to completion (CompletedProcess)."""
        proc = subprocess.run(self.migrate_argv(*args), capture_output=True, text=True,
                              errors="replace", timeout=timeout, env=_env(self.root))
        if check and proc.returncode != 0:
            raise RuntimeError(f"migrate {args[0]} exited {proc.returncode}:\n"
                               f"{proc.stdout}\n{proc.stderr[-4000:]}")
        return proc

    def start_migrate(self, *args, stderr=None, stdout=None):
        """start_migrate runs a migrate command in the background (Popen)."""
        return subprocess.Popen(self.migrate_argv(*args), stdout=stdout, stderr=stderr,
                                env=_env(self.root), start_new_session=True)

    def phase(self):
        rows = self.query("SELECT phase FROM _migrate.migration")
        return rows[0][0] if rows else None

    def partitions(self):
        """partitions is (done, all) of the copy plan."""
        return self.query("SELECT count(*) FILTER (WHERE status = 'done'), count(*) "
                          "FROM _migrate.partitions")[0]

    def lag_seconds(self):
        """lag_seconds is now minus the cluster time of the applied checkpoint (None: none yet)."""
        rows = self.query("SELECT extract(epoch FROM now()) - cluster_time_ts "
                          "FROM _migrate.checkpoint WHERE cluster_time_ts IS NOT NULL")
        return float(rows[0][0]) if rows else None

    def write_shadow_queries(self):
        path = os.path.join(self.dir, "shadow-queries.jsonl")
        with open(path, "w") as f:
            for q in SHADOW_QUERIES:
                q = dict(q, ns=q["ns"].format(db=self.db))
                f.write(json.dumps(q) + "\n")
        return path

    # ---- teardown ----

    def close(self):
        """close stops everything this stack started, in reverse order."""
        errors = []
        for _, proc, _ in self.workloads:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.cluster is not None or os.path.exists(os.path.join(self.cluster_dir,
                                                                     "cluster.json")):
            down = self.pgdaemon("cluster", "down", "--dir", self.cluster_dir, timeout=240)
            if down.returncode != 0:
                errors.append(down.stderr)
        for proc in self.restarted.values():
            proc.stop()
        self.restarted = {}
        if self.source is not None:
            self.source.close()
        if self.real_uri:  # a real server: unfreeze and drop what the run created
            client = self.source_client()
            try:
                client.admin.command({"setUserWriteBlockMode": 1, "global": False})
                client.drop_database(self.db)
            except Exception as e:  # noqa: BLE001 - report, keep tearing down
                errors.append(f"cleaning the real source: {e}")
            finally:
                client.close()
        return errors
