"""tests/integration/randomized/harness.py - many scenarios through one whole migration.

`run_batch(env, scenarios)` gives every scenario ("slot") its own source
database (and a second one, created only after init, for "a new database in
scope"), then runs the migration once for all of them:

    pre ops  ->  migrate init (--include every slot's databases)
             ->  gap ops  ->  migrate sync --follow (background)
             ->  copy ops (racing the copy)  ->  wait for the copy
             ->  follow ops  ->  wait until the checkpoint passes the last write
             ->  migrate validate --full  ->  migrate cutover (write-block freeze)
             ->  stop the follower  ->  compare every slot (compare.py)

One migration covers hundreds of seeds, and each difference still names
its slot, so its seed. Every operation's outcome is in the ack log.

`Env` holds what a batch needs: the source URI (mongosim or a real replica
set), a PostgresInstance (each batch gets a fresh target database), the
`migrate` binary and a work directory.
"""

import json
import os
import subprocess
import time
import uuid

import psycopg2

from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from mgharness.procs import ManagedProcess

import compare
import gen
import ops as O

MAX_SYNC_LOG = 16 << 20
SYNC_ARGS = ("--on-drop", "truncate", "--on-rename", "follow", "--batch-delay", "20ms",
             "--workers", "2", "--partition-docs", "200")


class Env:
    """Env: source, target server, binary, directory and settings shared by batches."""

    def __init__(self, source_uri, pg, migrate_bin, workdir, say=print, fidelity="relaxed",
                 keep_target=False, scope="all", root=None, restart_source=None):
        self.source_uri = source_uri
        self.pg = pg
        self.migrate_bin = migrate_bin
        self.workdir = workdir
        self.say = say
        self.fidelity = fidelity
        self.keep_target = keep_target
        # "all": init without --include, every database of the source is in
        # scope, so a database created after init is too (a source of our
        # own: mongosim). "listed": --include each slot database that exists
        # at init (a shared real server); databases created later are out of
        # scope and not compared.
        self.scope = scope
        self.root = root  # mgharness TempRoot: processes are recorded and tagged with it
        # restart_source() -> new URI: a fresh source after one died (mongosim crashed)
        self.restart_source = restart_source

    def ensure_source(self):
        """ensure_source checks the source answers; restarts it if it died and it can."""
        c = O.source_client(self.source_uri)
        try:
            c.admin.command("ping")
            return []
        except (AutoReconnect, ServerSelectionTimeoutError) as e:
            if self.restart_source is None:
                raise
            self.source_uri = self.restart_source()
            return [f"the source did not answer ({e}); started a new one"]
        finally:
            c.close()

    def target_uri(self, dbname):
        pg = self.pg
        auth = pg.user + (f":{pg.password}" if getattr(pg, "password", None) else "")
        return f"postgresql://{auth}@{pg.host}:{pg.port}/{dbname}"


class Slot:
    """Slot: one scenario in a batch, with its database names and results."""

    def __init__(self, index, scenario, prefix):
        self.index = index
        self.scenario = scenario
        self.dbnames = {"main": f"{prefix}_{index}", "aux": f"{prefix}_{index}x"}
        self.all_dbnames = dict(self.dbnames)  # the compared ones may be fewer (Env.scope)
        self.diffs = []
        self.acks = []

    @property
    def seed(self):
        return self.scenario.seed


class BatchResult:
    """BatchResult: the slots, each migrate command's outcome, and timings."""

    def __init__(self, prefix, slots):
        self.prefix = prefix
        self.slots = slots
        self.steps = {}  # name -> {"rc", "seconds", "summary"}
        self.notes = []

    @property
    def failed(self):
        return [s for s in self.slots if s.diffs]

    def pipeline_ok(self):
        return all(v.get("ok", v.get("rc") == 0) for v in self.steps.values())

    def to_json(self):
        return {"prefix": self.prefix, "steps": self.steps, "notes": self.notes,
                "failed_seeds": [s.seed for s in self.failed]}


def _clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("MIGRATE_")}


class Batch:
    """Batch runs one migration over a list of scenarios (see run_batch)."""

    def __init__(self, env, scenarios, prefix=None, after=None):
        self.env = env
        self.prefix = prefix or ("rz" + uuid.uuid4().hex[:6])
        self.slots = [Slot(i, sc, self.prefix) for i, sc in enumerate(scenarios)]
        self.result = BatchResult(self.prefix, self.slots)
        self.dir = os.path.join(env.workdir, self.prefix)
        os.makedirs(self.dir, exist_ok=True)
        self.target = env.target_uri(self.prefix)
        self.log = O.AckLog()
        self.client = None
        self.sync = None
        self.after = after  # after(batch): called with source and target still in place

    # -- helpers --

    def step(self, name, fn):
        t = time.monotonic()
        out = fn()
        out["seconds"] = round(time.monotonic() - t, 2)
        self.result.steps[name] = out
        return out

    def migrate(self, *args, timeout=600):
        p = subprocess.run([self.env.migrate_bin, "--log-format=json", *args],
                           capture_output=True, text=True, errors="replace", timeout=timeout,
                           env=_clean_env())
        return p

    def pg(self, sql, params=None):
        conn = self.env.pg.connect(dbname=self.prefix)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def run_phase(self, phase):
        for slot in self.slots:
            ex = O.Executor(self.client, slot.all_dbnames, slot.index, self.log)
            for i, op in enumerate(slot.scenario.ops):
                if op.phase == phase:
                    ex.run(i, op)

    def sync_alive(self):
        if self.sync is None or not self.sync.running():
            return False
        if os.path.getsize(self.sync_log) > MAX_SYNC_LOG:
            self.result.notes.append(f"sync --follow wrote more than {MAX_SYNC_LOG >> 20} MB "
                                     f"of log (a loop?); stopped")
            self.sync.stop(timeout=10)
            return False
        return True

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return True
            except psycopg2.Error:
                pass
            if not self.sync_alive():
                self.result.notes.append(f"sync --follow exited while waiting for {what}")
                return False
            time.sleep(0.1)
        self.result.notes.append(f"timed out after {timeout}s waiting for {what}")
        return False

    def copied(self):
        """copied: every partition is done or failed, and the change stream has a checkpoint
        (with a failed partition the migration's phase stays 'copying')."""
        return self.pg("SELECT (SELECT count(*) FROM _migrate.partitions WHERE status NOT IN "
                       "('done', 'failed')) = 0 AND EXISTS (SELECT 1 FROM _migrate.checkpoint "
                       "WHERE cluster_time_ts IS NOT NULL)") == [(True,)]

    def caught_up(self, optime):
        rows = self.pg("SELECT cluster_time_ts, cluster_time_inc FROM _migrate.checkpoint "
                       "WHERE cluster_time_ts IS NOT NULL")
        return bool(rows) and (rows[0][0], rows[0][1]) >= (optime.time, optime.inc)

    # -- the run --

    def run(self):
        env = self.env
        conn = env.pg.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.prefix}"')
        finally:
            conn.close()
        self.result.notes += env.ensure_source()
        self.client = O.source_client(env.source_uri)
        try:
            try:
                self._run()
            except O.SourceDown as e:
                self.result.notes.append(str(e))
                self.result.steps["source"] = {"ok": False}
                if self.sync_alive():
                    self.result.steps["sync"] = self.stop_sync()
                return self.result
            if self.after is not None:
                self.after(self)
        finally:
            if self.sync_alive():
                self.stop_sync()
            self.cleanup()
        return self.result

    def _run(self):
        env = self.env
        src = env.source_uri
        self.step("pre", lambda: (self.run_phase("pre"), {"rc": 0})[1])
        includes = []
        if env.scope == "listed":
            existing = set(self.client.list_database_names())
            for s in self.slots:
                s.dbnames = {r: n for r, n in s.dbnames.items() if n in existing}
                includes += [a for n in s.dbnames.values() for a in ("--include", f"{n}.*")]
        r = self.step("init", lambda: self._cmd(
            "init", "--source", src, "--target", self.target, "--type-fidelity", env.fidelity,
            *includes))
        if r["rc"] != 0:
            self.compare_all()
            return
        self.step("gap", lambda: (self.run_phase("gap"), {"rc": 0})[1])
        self.sync_log = os.path.join(self.dir, "sync.log")
        root = env.root
        self.sync = ManagedProcess(
            [env.migrate_bin, "--log-format=json", "sync", "--source", src, "--target",
             self.target, "--follow", *SYNC_ARGS], log_path=self.sync_log, cwd=self.dir,
            env=_clean_env(), tag=root.path if root else None,
            on_spawn=root.record_process if root else None)
        # the copy's operations come after T0 (recorded before the plan, logged as
        # sync.start), so the change stream sees them while the copy runs
        self.step("copy_start", lambda: {"ok": self.wait(
            lambda: b'"event":"sync.start"' in _head(self.sync_log), 120, "the copy to start")})
        self.step("copy_ops", lambda: (self.run_phase("copy"), {"rc": 0})[1])
        self.step("copy", lambda: {"ok": self.wait(self.copied, 240, "the copy to finish")})
        self.step("follow_ops", lambda: (self.run_phase("follow"), {"rc": 0})[1])
        optime = self.client.admin.command("ping")["operationTime"]
        self.step("catch_up", lambda: {"ok": self.wait(lambda: self.caught_up(optime), 300,
                                                       "the change stream to catch up")})
        self.step("validate", lambda: self._cmd("validate", "--source", src, "--target",
                                                self.target, "--full", "--json",
                                                summary=_validate_summary))
        endpoint = os.path.join(self.dir, "endpoint")
        self.step("cutover", lambda: self._cmd(
            "cutover", "--source", src, "--target", self.target, "--max-lag", "30s",
            "--timeout", "300s", "--endpoint-file", endpoint, "--json",
            summary=_cutover_summary))
        self.step("sync", self.stop_sync)
        self.compare_all()

    def _cmd(self, *args, summary=None):
        p = self.migrate(*args)
        out = {"rc": p.returncode}
        if summary is not None:
            try:
                out["summary"] = summary(json.loads(p.stdout))
            except ValueError:
                pass
        # validate's exit 5 (a mismatch) is an outcome, not an error of the pipeline; its
        # report names every differing collection, so it must not be read as one
        if p.returncode != 0 and not (args[0] == "validate" and p.returncode == 5):
            out["error"] = _last_errors(p.stderr) or [f"migrate {args[0]} exited "
                                                      f"{p.returncode}"]
        return out

    def stop_sync(self):
        """stop_sync stops the follower (SIGTERM, 60 s, then SIGKILL); its exit code and errors."""
        if self.sync is None:
            return {"rc": None}
        t = time.monotonic()
        rc = self.sync.stop(timeout=60)
        out = {"rc": rc}
        if time.monotonic() - t > 55:
            out["note"] = "did not exit within 60 s of SIGTERM (killed)"
        errs = _last_errors(_tail(self.sync_log))
        if errs:
            out["errors"] = errs
        return out

    def compare_all(self):
        t = time.monotonic()
        conn = self.env.pg.connect(dbname=self.prefix)
        try:
            names = [n for s in self.slots for n in s.dbnames.values()]
            replaced = set()
            log = getattr(self, "sync_log", None)
            if log and os.path.exists(log):
                with open(log, "rb") as f:
                    replaced = compare.replaced_tables(f.read().decode("utf-8", "replace"))
            try:
                view = compare.TargetView(conn, names)
            except psycopg2.Error as e:  # no state schema: init failed
                conn.rollback()
                view = None
                self.result.notes.append(f"no target state to compare: {e}".strip())
            for s in self.slots:
                s.acks = self.log.for_slot(s.index)
                if view is None:
                    s.diffs = [{"kind": "no_target", "db": "main", "coll": None, "id": None,
                                "detail": "the migration did not get as far as init"}]
                    continue
                s.diffs = compare.compare_slot(self.client, view, s.dbnames,
                                               relaxed=self.env.fidelity == "relaxed",
                                               replaced=replaced)
        finally:
            conn.close()
        self.result.steps["compare"] = {"rc": 0, "seconds": round(time.monotonic() - t, 2)}

    def cleanup(self):
        if self.result.steps.get("source", {}).get("ok") is False:
            self.client.close()  # the source is gone: nothing to unfreeze or drop there
            self._drop_target()
            return
        try:
            self.client.admin.command({"setUserWriteBlockMode": 1, "global": False})
        except Exception as e:  # noqa: BLE001 - report, keep cleaning up
            self.result.notes.append(f"could not unfreeze the source: {e}")
        for s in self.slots:
            for name in s.all_dbnames.values():
                try:
                    self.client.drop_database(name)
                except Exception as e:  # noqa: BLE001
                    self.result.notes.append(f"could not drop source database {name}: {e}")
        self.client.close()
        self._drop_target()

    def _drop_target(self):
        if not self.env.keep_target:
            conn = self.env.pg.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{self.prefix}" WITH (FORCE)')
            finally:
                conn.close()


def _head(path, size=1 << 20):
    with open(path, "rb") as f:
        return f.read(size)


def _tail(path, size=1 << 20):
    """_tail is the last size bytes of a file, as text."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - size))
        return f.read().decode("utf-8", "replace")


def _last_errors(stderr, n=3):
    """_last_errors returns the messages of the last error/fatal JSON log lines."""
    out = []
    for line in stderr.splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("level") in ("error", "fatal"):
            out.append(j.get("message", "")[:500])
    return out[-n:]


def _validate_summary(j):
    return {"status": j.get("status"), "mismatches": j.get("mismatches"),
            "documents": j.get("documents")}


def _cutover_summary(j):
    return {"outcome": j.get("outcome"), "reason": j.get("reason"),
            "unavailable_s": j.get("unavailable_s")}


def run_batch(env, scenarios, prefix=None, after=None):
    """run_batch runs scenarios through one migration and returns a BatchResult.

    after(batch), if given, runs once the slots are compared, before the source
    databases and the target database are dropped."""
    return Batch(env, scenarios, prefix, after).run()


def scenarios_for(seeds, options):
    return [gen.scenario(s, options) for s in seeds]
