"""Integration: `migrate cutover` against a per-test mongosim and a
throwaway PostgreSQL 15 (docs/cutover.md).

Proves: under a steady datagen workload with `migrate sync --follow` in
another process the cutover completes, every write the source acknowledged
is in PostgreSQL, writes after the freeze fail with UserWritesBlocked (371),
the endpoint file and etcd key hold the endpoint, validation afterwards is
clean and a re-run does not flip again; failures before the flip (freeze
refused by failCommand, a forced verification mismatch, a failing flip
hook, a drain timeout) leave the source writable, the state aborted with
the reason and nothing flipped; a PostgreSQL crash and restart during the
drain does not end the cutover (its ownership is a lease in _migrate);
kill -9 after the freeze resumes (once the crashed run's lease lapsed), and
`--abort` unfreezes.
"""

import json
import os
import signal
import subprocess
import time

import pymongo
import pytest

from mgharness import build_path
from mgharness.mongosim import MongosimInstance

from test_cdc import assert_ack_log_reflected, follow_in_background, wait_for, workload
from test_sync import datagen, init, mongo_uri

EXIT_ABORTED, EXIT_STATE = 7, 8
ENDPOINT = "postgresql://app@127.0.0.1:5000/app?target_session_attrs=read-write"


def prepare(mongo, pg, migrate, db, count=3000):
    """a copied, caught-up and validated migration of db.docs."""
    uri = mongo_uri(mongo)
    datagen(uri, db, "docs", count, "--seed", "7", "--size-min", "100", "--size-max", "800")
    init(migrate, mongo, pg, db)
    r = migrate("sync", "--source", uri, "--target", pg.uri)
    assert r.rc == 0, r
    r = migrate("validate", "--source", uri, "--target", pg.uri, "--full")
    assert r.rc == 0, r


def cutover_args(mongo, pg, *extra):
    return ["cutover", "--source", mongo_uri(mongo), "--target", pg.uri, "--max-lag", "10s",
            "--endpoint", ENDPOINT, *extra]


def state(pg):
    rows = pg.query("SELECT step, outcome, reason, attempt, fence_ts, unavailable_s, steps "
                    "FROM _migrate.cutover")
    return rows[0] if rows else None


def write_error_code(mongo, db):
    """write_error_code inserts one document: None when accepted, else the error code.

    The probe goes to another database: a collection created in the migrated
    one would be in the migration's scope and not migrated, which the
    preflight refuses (issue 14, hole 0). The freeze is global either way."""
    try:
        mongo[db + "_probe"]["probe"].insert_one({"x": 1})
        return None
    except pymongo.errors.PyMongoError as e:
        return getattr(e, "code", -1)


def acked(path):
    with open(path) as f:
        return sum(1 for _ in f)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cutover_under_workload_with_a_follower(mongo, dbname, postgres, etcd, migrate,
                                               tmp_path):
    prepare(mongo, postgres, migrate, dbname)
    uri = mongo_uri(mongo)
    follower = follow_in_background(mongo, postgres)
    ack = str(tmp_path / "ack.log")
    wl = workload(uri, dbname, "docs", 3000, 6, ack, seed=8, rate=400)
    hook_log = tmp_path / "hook.log"
    # an endpoint file the operator prepared keeps its mode across the flip
    (tmp_path / "ep").write_text("placeholder\n")
    os.chmod(tmp_path / "ep", 0o640)
    try:
        time.sleep(2.5)
        r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", str(tmp_path / "ep"),
                                  "--endpoint-etcd", etcd.endpoint, "--endpoint-etcd-key",
                                  "/app/db", "--flip-hook",
                                  f'echo "$MIGRATE_ENDPOINT" >> {hook_log}', "--json"))
        assert r.rc == 0, r
        report = r.json()
        assert report["outcome"] == "done"
        assert set(report["steps"]) >= {"preflight", "freeze", "fence", "drain", "verify", "flip",
                                        "done"}
        assert 0 < report["unavailable_s"] < 30
        assert report["fence"]["t"] > 0
        # the source stays frozen after the cutover: writes fail with UserWritesBlocked
        assert write_error_code(mongo, dbname) == 371
        out, err = wl.communicate(timeout=60)
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["failures"] > 0, "the workload wrote nothing during the freeze"
        assert stats["acknowledged_writes"] > 0
    finally:
        if wl.poll() is None:
            wl.kill()
            wl.wait()
        stop(follower)
    # every acknowledged write is in PostgreSQL (the drain reached the fence)
    assert_ack_log_reflected(postgres, dbname, "docs", ack)
    assert (tmp_path / "ep").read_text() == ENDPOINT + "\n"
    assert os.stat(tmp_path / "ep").st_mode & 0o777 == 0o640
    assert etcd.get("/app/db") == ENDPOINT
    assert hook_log.read_text() == ENDPOINT + "\n"
    st = state(postgres)
    assert st[1] == "done" and st[0] == "done"
    kinds = [r[0] for r in postgres.query(
        "SELECT data->>'step' FROM _migrate.events WHERE kind = 'cutover.step' ORDER BY id")]
    assert kinds == ["preflight", "freeze", "fence", "drain", "verify", "flip", "done"]
    assert '"event":"cutover.step"' in r.stderr
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--full")
    assert r.rc == 0, r
    # a re-run neither flips nor runs the hook again
    r = migrate(*cutover_args(mongo, postgres, "--flip-hook", f"echo again >> {hook_log}"))
    assert r.rc == 0, r
    assert "already done" in r.stdout
    assert hook_log.read_text() == ENDPOINT + "\n"


def assert_aborted_nothing_flipped(mongo, pg, db, ep, reason_part):
    st = state(pg)
    assert st[1] == "aborted", st
    assert reason_part in st[2], st
    assert write_error_code(mongo, db) is None, "the source was left frozen"
    assert not os.path.exists(ep), "the endpoint was flipped"


def test_failures_before_the_flip_unfreeze_and_flip_nothing(mongo, dbname, postgres, migrate,
                                                            tmp_path):
    prepare(mongo, postgres, migrate, dbname, count=1000)
    ep = str(tmp_path / "ep")
    # 1. the freeze itself fails
    mongo.admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1},
                         "data": {"failCommands": ["setUserWriteBlockMode"],
                                  "errorCode": 11600}})
    r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep))
    assert r.rc == EXIT_ABORTED, r
    assert_aborted_nothing_flipped(mongo, postgres, dbname, ep, "block the source's writes")
    # 2. a failing flip hook (it runs first: nothing else is written)
    r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep, "--flip-hook", "exit 3"))
    assert r.rc == EXIT_ABORTED, r
    assert_aborted_nothing_flipped(mongo, postgres, dbname, ep, "flip hook")
    # 3. a forced verification mismatch (a row gone from the target)
    postgres.query(f'DELETE FROM "{dbname}"."docs" WHERE ctid IN (SELECT ctid FROM '
                   f'"{dbname}"."docs" LIMIT 1) RETURNING 1')
    r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep, "--verify", "counts"))
    assert r.rc == EXIT_ABORTED, r
    assert_aborted_nothing_flipped(mongo, postgres, dbname, ep, "verification found differences")
    assert state(postgres)[3] == 3  # three attempts recorded on the same row


def test_drain_timeout_aborts(mongo, dbname, postgres, migrate, tmp_path):
    prepare(mongo, postgres, migrate, dbname, count=1000)
    uri = mongo_uri(mongo)
    follower = follow_in_background(mongo, postgres)
    ack = str(tmp_path / "ack.log")
    wl = workload(uri, dbname, "docs", 1000, 30, ack, seed=9, rate=300)  # killed below
    ep = str(tmp_path / "ep")
    try:
        time.sleep(1.5)
        follower.send_signal(signal.SIGSTOP)  # alive (fresh checkpoint) but not applying
        lines = acked(ack)
        wait_for(lambda: acked(ack) > lines + 20, timeout=10,
                 what="writes after the follower stopped")
        r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep, "--timeout", "1500ms",
                                  "--follower-window", "1h"))
        assert r.rc == EXIT_ABORTED, r
        assert_aborted_nothing_flipped(mongo, postgres, dbname, ep, "timed out")
    finally:
        follower.send_signal(signal.SIGCONT)
        wl.kill()
        wl.wait()
        stop(follower)


def test_preflight_refusals(mongo, dbname, postgres, migrate, tmp_path):
    prepare(mongo, postgres, migrate, dbname, count=200)
    postgres.query("UPDATE _migrate.validation_runs SET finished_at = now() - interval '2 hours' "
                   "RETURNING 1")
    r = migrate(*cutover_args(mongo, postgres, "--validation-age", "1h"))
    assert r.rc == EXIT_STATE, r
    assert "no clean validation" in r.stderr
    assert write_error_code(mongo, dbname) is None
    r = migrate(*cutover_args(mongo, postgres, "--validation-age", "0", "--max-lag", "1h",
                              "--dry-run"))
    assert r.rc == 0, r
    assert "preflight passed" in r.stdout
    assert write_error_code(mongo, dbname) is None
    # behind the source's last write, and the last follower measured that an hour ago
    postgres.query("UPDATE _migrate.checkpoint SET cluster_time_ts = cluster_time_ts - 3600 "
                   "RETURNING 1")
    postgres.query("UPDATE _migrate.follower SET beat_at = beat_at - interval '1 hour' "
                   "RETURNING 1")
    r = migrate(*cutover_args(mongo, postgres, "--validation-age", "0", "--max-lag", "5s"))
    assert r.rc == EXIT_STATE, r
    assert "lag" in r.stderr
    assert state(postgres)[1] == "aborted" and "lag" in state(postgres)[2]
    assert write_error_code(mongo, dbname) is None


def test_kill_9_after_freeze_resumes_and_abort_unfreezes(mongo, dbname, postgres, migrate,
                                                        tmp_path):
    prepare(mongo, postgres, migrate, dbname, count=1000)
    uri = mongo_uri(mongo)
    ep = str(tmp_path / "ep")
    binary = build_path("bin", "migrate")

    def crash_in_drain():
        follower = follow_in_background(mongo, postgres)
        ack = str(tmp_path / "ack.log")
        wl = workload(uri, dbname, "docs", 1000, 30, ack, seed=10, rate=300)  # killed below
        time.sleep(1.5)
        follower.send_signal(signal.SIGSTOP)
        # writes acknowledged after the follower stopped: the checkpoint is behind any fence
        lines = acked(ack)
        wait_for(lambda: acked(ack) > lines + 20 or wl.poll() is not None, timeout=10,
                 what="writes after the follower stopped")
        assert wl.poll() is None, wl.communicate()
        # a long --follower-window: the stopped follower is trusted, so the drain waits
        proc = subprocess.Popen([binary, *cutover_args(mongo, postgres, "--endpoint-file", ep,
                                                       "--timeout", "60s", "--follower-window",
                                                       "1h", "--lease", "2s")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (state(postgres) or ("",))[0] == "drain", timeout=30,
                     what="the drain step")
        except AssertionError:
            proc.kill()
            raise AssertionError(f"{state(postgres)}: {proc.communicate()[1][-3000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        follower.kill()  # while stopped: the checkpoint stays behind the fence
        follower.wait()
        wl.kill()
        wl.wait()
        assert write_error_code(mongo, dbname) == 371  # still frozen after the crash
        assert not os.path.exists(ep)

    crash_in_drain()
    # the re-run resumes (no follower now: it applies the stream itself) and completes
    r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep, "--follower-window",
                              "300ms"))
    assert r.rc == 0, r
    assert "applying the change stream here" in r.stderr
    assert "write-unavailability window (freeze -> flip)" in r.stdout
    assert "drain" in r.stdout and "endpoint: " + ENDPOINT in r.stdout
    st = state(postgres)
    assert st[1] == "done" and st[3] == 1 and "resume" in st[6], st
    assert open(ep).read() == ENDPOINT + "\n"
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--full")
    assert r.rc == 0, r

    # second run: a new migration of the same source, crash, then --abort
    os.unlink(ep)
    postgres.query("DELETE FROM _migrate.cutover RETURNING 1")
    mongo.admin.command({"setUserWriteBlockMode": 1, "global": False})
    crash_in_drain()
    r = migrate("cutover", "--source", uri, "--target", postgres.uri, "--abort")
    assert r.rc == 0, r
    assert write_error_code(mongo, dbname) is None
    assert state(postgres)[1] == "aborted"
    assert not os.path.exists(ep)


def test_postgres_restart_during_drain_keeps_the_cutover(mongo, dbname, postgres, migrate,
                                                        tmp_path):
    """the target crashes and comes back while cutover waits for the drain: the cutover
    reconnects, keeps its ownership (a lease in _migrate, not a session lock) and, once the
    follower applies again, drains, looks once more before the flip, and completes."""
    prepare(mongo, postgres, migrate, dbname, count=1000)
    uri = mongo_uri(mongo)
    follower = follow_in_background(mongo, postgres)
    ack = str(tmp_path / "ack.log")
    wl = workload(uri, dbname, "docs", 1000, 30, ack, seed=10, rate=300)  # killed below
    ep = str(tmp_path / "ep")
    try:
        time.sleep(1.5)
        follower.send_signal(signal.SIGSTOP)  # the drain has to wait
        lines = acked(ack)
        wait_for(lambda: acked(ack) > lines + 20, timeout=10,
                 what="writes after the follower stopped")
        cut = subprocess.Popen([build_path("bin", "migrate"), "--log-format=json",
                                *cutover_args(mongo, postgres, "--endpoint-file", ep,
                                              "--timeout", "60s", "--follower-window", "1h")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               errors="replace")
        wait_for(lambda: (state(postgres) or ("",))[0] == "drain", timeout=20,
                 what="the drain step")
        postgres.kill9()
        time.sleep(0.5)
        postgres.start()
        wl.kill()
        wl.wait()
        follower.send_signal(signal.SIGCONT)  # the follower reconnects and applies again
        out, err = cut.communicate(timeout=120)
        assert cut.returncode == 0, err[-5000:]
        assert '"event":"cutover.target_back"' in err
        st = state(postgres)
        assert st[1] == "done" and st[3] == 1, st
        assert open(ep).read() == ENDPOINT + "\n"
    finally:
        follower.send_signal(signal.SIGCONT)
        if wl.poll() is None:
            wl.kill()
            wl.wait()
        stop(follower)
    assert_ack_log_reflected(postgres, dbname, "docs", ack)


def test_preflight_refuses_a_user_without_the_write_block_privilege(services, postgres,
                                                                    migrate):
    """a source user that may not run setUserWriteBlockMode: refused before any freeze,
    and the message names the ways out."""
    sim = services.add(MongosimInstance(services.root, name="rwonly",
                                        args=["--auth", "app:pw:readWriteAnyDatabase"]))
    uri = f"mongodb://app:pw@{sim.address}/?authSource=admin"
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    client["p"]["docs"].insert_many([{"_id": i} for i in range(20)])
    for args in (["init", "--source", uri, "--target", postgres.uri],
                 ["sync", "--source", uri, "--target", postgres.uri],
                 ["validate", "--source", uri, "--target", postgres.uri, "--full"]):
        r = migrate(*args)
        assert r.rc == 0, r
    r = migrate("cutover", "--source", uri, "--target", postgres.uri, "--max-lag", "10s",
                "--endpoint", ENDPOINT)
    assert r.rc == EXIT_STATE, r
    assert "setUserWriteBlockMode" in r.stderr and "--freeze hook:CMD" in r.stderr, r.stderr
    client["p"]["docs"].insert_one({"_id": "still writable"})  # never frozen
    client.close()


def test_an_idle_follower_drains_the_cutover(mongo, dbname, postgres, migrate):
    """Issue 15 point 1: on an idle source (a no-op every 10 s, as on MongoDB) the checkpoint
    stands still for longer than --follower-window while `sync --follow` is alive and caught
    up: the preflight's lag is 0 and the drain is left to that follower."""
    prepare(mongo, postgres, migrate, dbname, count=200)
    follower = follow_in_background(mongo, postgres)
    try:
        # the checkpoint goes quiet for longer than the 5 s window
        wait_for(lambda: postgres.query("SELECT extract(epoch FROM now() - updated_at) > 6 "
                                        "FROM _migrate.checkpoint")[0][0], timeout=30,
                 what="a checkpoint older than --follower-window")
        r = migrate(*cutover_args(mongo, postgres, "--max-lag", "1s", "--follower-window", "5s"))
        assert r.rc == 0, r
        assert "applying the change stream here" not in r.stderr, r.stderr
        assert '"applier":"sync --follow"' in r.stderr, r.stderr
    finally:
        stop(follower)


def test_a_quiet_follower_is_never_raced_by_a_second_applier(mongo, dbname, postgres, migrate,
                                                             tmp_path):
    """the follower is alive (its process and session are) but has not moved the checkpoint
    for longer than --follower-window: the cutover waits for it rather than start a second
    applier that would race it when it moves again; here it never does, so the drain times
    out and the cutover aborts."""
    prepare(mongo, postgres, migrate, dbname, count=200)
    follower = follow_in_background(mongo, postgres)
    ep = str(tmp_path / "ep")
    try:
        wait_for(lambda: postgres.query("SELECT extract(epoch FROM now() - updated_at) > 6 "
                                        "FROM _migrate.checkpoint")[0][0], timeout=30,
                 what="a checkpoint older than --follower-window")
        follower.send_signal(signal.SIGSTOP)
        r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep, "--timeout", "4s",
                                  "--follower-window", "1s"))
        assert r.rc == EXIT_ABORTED, r
        assert "applying the change stream here" not in r.stderr, r.stderr
        assert_aborted_nothing_flipped(mongo, postgres, dbname, ep, "timed out")
        # and a second `sync --follow` refuses to race it
        second = migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri,
                         "--follow")
        assert second.rc == EXIT_STATE, second
        assert "another follower is applying it" in second.stderr, second.stderr
    finally:
        follower.send_signal(signal.SIGCONT)
        stop(follower)
