"""Integration: the cutover lets nothing through that is not in PostgreSQL
(issue 14, holes 0, 3, 4 and 5), against a per-test mongosim and a
throwaway PostgreSQL 15.

- hole 3: the preflight refuses a collection not fully copied (an
  interrupted `sync --resync`), one that no clean full validation covered
  since its copy finished (a `--changed` run that checked nothing is no
  proof), invalid documents unless `--allow-invalid` names their
  collection, and an index that failed to build;
- hole 0: validation and the preflight name a source collection in scope
  that the plan lacks;
- hole 4: right before the flip the source must still be frozen and the
  applied checkpoint still at the fence, or the cutover aborts and
  unfreezes;
- hole 5: ownership is a lease in _migrate: a second cutover refuses while
  the owner is alive, also right after a PostgreSQL restart that cut the
  owner's sessions, and takes over only once the owner stopped renewing;
  the owner that lost it touches nothing afterwards.

Each test failed on the code before these fixes (docs/cutover.md says how).
"""

import os
import signal
import subprocess
import time

from mgharness import build_path

from test_cdc import assert_ack_log_reflected, follow_in_background, wait_for, workload
from test_cutover import (ENDPOINT, EXIT_ABORTED, EXIT_STATE, acked, prepare, state, stop,
                          write_error_code)
from test_cutover import cutover_args as base_args
from test_sync import datagen, init, mongo_uri


def cutover_args(mongo, pg, *extra):
    """the suite's cutover arguments with --max-lag 1h: an idle source's lag is not what
    these tests are about (the source's no-op writer moves it every 10 s)."""
    args = base_args(mongo, pg, *extra)
    args[args.index("--max-lag") + 1] = "1h"
    return args


def count(pg, db, table="docs"):
    return int(pg.query(f'SELECT count(*) FROM "{db}"."{table}"')[0][0])


def start_cutover(mongo, pg, *extra):
    return subprocess.Popen([build_path("bin", "migrate"), "--log-format=json",
                             *cutover_args(mongo, pg, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")


def wait_step(pg, step, proc=None, timeout=30):
    def reached():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the cutover ended early: {proc.communicate()[1][-4000:]}")
        return (state(pg) or ("",))[0] == step
    wait_for(reached, timeout=timeout, what=f"the {step} step")


def stopped_follower(mongo, pg, db, tmp_path, seconds=30):
    """a follower that applied a workload for a while and is now stopped (SIGSTOP),
    with writes acknowledged after it stopped: a drain has to wait for it."""
    follower = follow_in_background(mongo, pg)
    ack = str(tmp_path / "ack.log")
    wl = workload(mongo_uri(mongo), db, "docs", 1000, seconds, ack, seed=21, rate=300)
    time.sleep(1.5)
    follower.send_signal(signal.SIGSTOP)
    lines = acked(ack)
    wait_for(lambda: acked(ack) > lines + 20, timeout=10, what="writes after the follower stopped")
    return follower, wl, ack


def end(follower, wl):
    follower.send_signal(signal.SIGCONT)
    if wl.poll() is None:
        wl.kill()
        wl.wait()
    stop(follower)


# ---- hole 3 ---------------------------------------------------------------------------------

def test_interrupted_resync_is_refused(mongo, dbname, postgres, migrate, tmp_path):
    """the repro of the issue: sync --resync, Ctrl-C during the copy, validate --changed,
    cutover. It used to complete with the collection empty."""
    prepare(mongo, postgres, migrate, dbname, count=2000)
    uri = mongo_uri(mongo)
    # the copy's finds hang, so the interrupt lands during the copy
    mongo.admin.command({"configureFailPoint": "failCommand", "mode": "alwaysOn",
                         "data": {"failCommands": ["find"], "blockConnection": True,
                                  "blockTimeMS": 20000, "appName": "migrate-copy"}})
    sync = subprocess.Popen([build_path("bin", "migrate"), "sync", "--source", uri, "--target",
                             postgres.uri, "--resync", f"{dbname}.docs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: postgres.query("SELECT status FROM _migrate.collections")[0][0]
                 == "copying", timeout=30, what="the re-copy")
        sync.send_signal(signal.SIGINT)
        time.sleep(0.5)
        sync.send_signal(signal.SIGINT)  # the second one rolls the partitions in flight back
        sync.communicate(timeout=60)
    finally:
        mongo.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        if sync.poll() is None:
            sync.kill()
            sync.wait()
    assert count(postgres, dbname) == 0, "the interrupted re-copy left rows"
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--changed")
    assert r.rc == 0, r  # nothing changed: a clean run that checked nothing
    ep = str(tmp_path / "ep")
    r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep))
    assert r.rc == EXIT_STATE, r
    assert f"{dbname}.docs (status copying)" in r.stderr, r.stderr
    assert "not fully copied" in r.stderr
    assert write_error_code(mongo, dbname) is None, "the source was frozen"
    assert not os.path.exists(ep)
    # once copied again, the old full validation is no proof for the new copy
    r = migrate("sync", "--source", uri, "--target", postgres.uri)
    assert r.rc == 0, r
    assert count(postgres, dbname) == 2000
    r = migrate(*cutover_args(mongo, postgres, "--dry-run"))
    assert r.rc == EXIT_STATE, r
    assert "not covered by a clean full validation since their copy finished" in r.stderr
    assert f"{dbname}.docs" in r.stderr
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--full")
    assert r.rc == 0, r
    r = migrate(*cutover_args(mongo, postgres, "--dry-run"))
    assert r.rc == 0, r


def test_a_changed_run_alone_is_no_proof(mongo, dbname, postgres, migrate):
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "docs", 500, "--seed", "3")
    init(migrate, mongo, postgres, dbname)
    r = migrate("sync", "--source", uri, "--target", postgres.uri)
    assert r.rc == 0, r
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--changed")
    assert r.rc == 0, r
    # it checked what the change stream applied, not the 500 documents the copy wrote
    assert int(postgres.query("SELECT documents FROM _migrate.validation_runs")[0][0]) < 500
    r = migrate(*cutover_args(mongo, postgres))
    assert r.rc == EXIT_STATE, r
    assert "run migrate validate --full first" in r.stderr, r.stderr
    assert write_error_code(mongo, dbname) is None


def test_invalid_documents_and_unbuilt_indexes_are_refused(mongo, dbname, postgres, migrate):
    uri = mongo_uri(mongo)
    mongo[dbname]["nums"].insert_many([{"_id": i, "n": i} for i in range(100)])
    mongo[dbname]["nums"].create_index("n", unique=True)
    init(migrate, mongo, postgres, dbname)
    # an _id that does not fit the bigint key column, inserted after init: skipped as invalid
    mongo[dbname]["nums"].insert_one({"_id": "not a number", "n": -1})
    r = migrate("sync", "--source", uri, "--target", postgres.uri, "--skip-invalid")
    assert r.rc == 0, r
    assert postgres.query("SELECT count(*) FROM _migrate.invalid_docs")[0][0] == 1
    args = cutover_args(mongo, postgres, "--validation-age", "0", "--dry-run")
    r = migrate(*args)
    assert r.rc == EXIT_STATE, r
    assert f"{dbname}.nums (1, first _id \"not a number\")" in r.stderr, r.stderr
    assert "--allow-invalid" in r.stderr
    r = migrate(*args, "--allow-invalid", f"{dbname}.*")
    assert r.rc == 0, r
    # an index whose build failed (as a unique index over data that breaks it would)
    postgres.query("UPDATE _migrate.indexes SET build_status = 'failed', note = 'could not "
                   "create unique index' WHERE mongo_name = 'n_1' RETURNING 1")
    r = migrate(*args, "--allow-invalid", f"{dbname}.*")
    assert r.rc == EXIT_STATE, r
    assert f"{dbname}.nums index n_1 (failed: could not create unique index)" in r.stderr, r.stderr


# ---- hole 0 ---------------------------------------------------------------------------------

def test_a_collection_created_after_init_is_named(mongo, dbname, postgres, migrate, tmp_path):
    prepare(mongo, postgres, migrate, dbname, count=300)
    uri = mongo_uri(mongo)
    mongo[dbname]["new_after_init"].insert_many([{"_id": i} for i in range(100)])
    mongo[dbname + "_other"]["x"].insert_one({"_id": 1})  # out of scope: not named
    mongo[dbname]["v"].database.command({"create": "a_view", "viewOn": "docs"})  # never planned
    for mode in ("--full", "--changed"):
        r = migrate("validate", "--source", uri, "--target", postgres.uri, mode)
        assert r.rc == EXIT_STATE, r
        assert f"are not migrated: {dbname}.new_after_init (created after init?)" in r.stderr, \
            r.stderr
        assert "_other" not in r.stderr and "a_view" not in r.stderr
    ep = str(tmp_path / "ep")
    r = migrate(*cutover_args(mongo, postgres, "--endpoint-file", ep, "--validation-age", "0"))
    assert r.rc == EXIT_STATE, r
    assert f"{dbname}.new_after_init" in r.stderr, r.stderr
    assert write_error_code(mongo, dbname) is None
    assert not os.path.exists(ep)
    # excluding the collection is a way out too: here, a scope that leaves it out
    postgres.query("UPDATE _migrate.migration SET options = options || jsonb_build_object("
                   "'exclude', jsonb_build_array(%s)) RETURNING 1",
                   (f"{dbname}.new_after_init",))
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--changed")
    assert r.rc == 0, r


# ---- hole 4 ---------------------------------------------------------------------------------

def test_a_lifted_freeze_is_caught_before_the_flip(mongo, dbname, postgres, migrate, tmp_path):
    """someone lifts the write block while the cutover drains and the application writes
    on; the follower applies it all, the verification is clean - and the cutover must
    still not flip: the source is no longer frozen."""
    prepare(mongo, postgres, migrate, dbname, count=1000)
    follower, wl, ack = stopped_follower(mongo, postgres, dbname, tmp_path)
    ep = str(tmp_path / "ep")
    try:
        cut = start_cutover(mongo, postgres, "--endpoint-file", ep, "--follower-window", "1h",
                            "--timeout", "60s")
        wait_step(postgres, "drain", cut)
        wl.kill()  # the workload's later writes would fail the verification, not the look
        wl.wait()
        mongo.admin.command({"setUserWriteBlockMode": 1, "global": False})
        mongo[dbname]["docs"].insert_many([{"_id": f"late{i}"} for i in range(5)])
        follower.send_signal(signal.SIGCONT)  # it applies the late writes before it idles
        out, err = cut.communicate(timeout=120)
        assert cut.returncode == EXIT_ABORTED, err[-4000:]
        assert "no longer frozen" in state(postgres)[2], state(postgres)
        assert write_error_code(mongo, dbname) is None
        assert not os.path.exists(ep)
    finally:
        end(follower, wl)


def test_a_checkpoint_behind_the_fence_is_caught_before_the_flip(mongo, dbname, postgres,
                                                                migrate, tmp_path):
    """after the drain, the applied checkpoint goes back behind the fence (as a target
    failover that lost the last batches makes it): the cutover must not flip."""
    prepare(mongo, postgres, migrate, dbname, count=1000)
    follower, wl, ack = stopped_follower(mongo, postgres, dbname, tmp_path)
    ep = str(tmp_path / "ep")
    holder = postgres.connect()
    try:
        cut = start_cutover(mongo, postgres, "--endpoint-file", ep, "--follower-window", "1h",
                            "--timeout", "60s")
        wait_step(postgres, "drain", cut)
        # hold the cutover row as a follower's batch does (FOR SHARE): the cutover can record
        # the end of the drain only once this transaction ends
        cur = holder.cursor()
        cur.execute("BEGIN")
        cur.execute("SELECT fence_ts, fence_inc FROM _migrate.cutover FOR SHARE")
        fence_ts, fence_inc = cur.fetchone()
        follower.send_signal(signal.SIGCONT)
        wait_for(lambda: tuple(postgres.query(
            "SELECT cluster_time_ts, cluster_time_inc FROM _migrate.checkpoint")[0]) >=
                 (fence_ts, fence_inc), timeout=30, what="the drain to reach the fence")
        wl.kill()
        wl.wait()
        stop(follower)
        postgres.query("UPDATE _migrate.checkpoint SET cluster_time_ts = %s, cluster_time_inc = 0 "
                       "RETURNING 1", (fence_ts - 1,))
        cur.execute("COMMIT")
        out, err = cut.communicate(timeout=120)
        assert cut.returncode == EXIT_ABORTED, err[-4000:]
        assert "is behind the fence" in state(postgres)[2], state(postgres)
        assert write_error_code(mongo, dbname) is None
        assert not os.path.exists(ep)
    finally:
        holder.close()
        end(follower, wl)


# ---- hole 5 ---------------------------------------------------------------------------------

def test_a_second_cutover_refuses_across_a_target_restart(mongo, dbname, postgres, migrate,
                                                          tmp_path):
    """PostgreSQL restarts while the first cutover drains: its sessions are gone (an
    advisory lock went with them), but its lease is not; a second cutover started right
    then refuses, and the first one completes."""
    prepare(mongo, postgres, migrate, dbname, count=1000)
    follower, wl, ack = stopped_follower(mongo, postgres, dbname, tmp_path)
    hook_log = tmp_path / "flips.log"
    hook = f'echo "$MIGRATE_ENDPOINT" >> {hook_log}'
    try:
        cut1 = start_cutover(mongo, postgres, "--flip-hook", hook, "--follower-window", "1h",
                             "--timeout", "120s")
        wait_step(postgres, "drain", cut1)
        postgres.kill9()
        time.sleep(0.3)
        postgres.start()
        r = migrate(*cutover_args(mongo, postgres, "--flip-hook", hook, "--follower-window", "1h",
                                  "--timeout", "60s"), timeout=120)
        assert r.rc == EXIT_STATE, r
        assert "another migrate cutover owns the cutover" in r.stderr, r.stderr
        wl.kill()
        wl.wait()
        follower.send_signal(signal.SIGCONT)
        out, err = cut1.communicate(timeout=120)
        assert cut1.returncode == 0, err[-4000:]
    finally:
        end(follower, wl)
    st = state(postgres)
    assert st[1] == "done" and st[3] == 1, st
    assert hook_log.read_text() == ENDPOINT + "\n"  # flipped once, by the owner
    assert_ack_log_reflected(postgres, dbname, "docs", ack)


def test_takeover_only_from_a_silent_owner_which_then_touches_nothing(mongo, dbname, postgres,
                                                                      migrate, tmp_path):
    """the owner stops (SIGSTOP: a paused VM, a stuck process) during the drain: after its
    lease a second cutover takes over and completes; the first, when it runs again, finds
    it lost the cutover and neither unfreezes nor flips."""
    prepare(mongo, postgres, migrate, dbname, count=1000)
    follower, wl, ack = stopped_follower(mongo, postgres, dbname, tmp_path)
    hook_log = tmp_path / "flips.log"
    hook = f'echo "$MIGRATE_ENDPOINT" >> {hook_log}'
    try:
        cut1 = start_cutover(mongo, postgres, "--flip-hook", hook, "--follower-window", "1h",
                             "--timeout", "120s")  # the default lease: 15 s
        wait_step(postgres, "drain", cut1)
        cut1.send_signal(signal.SIGSTOP)
        wl.kill()
        wl.wait()
        follower.send_signal(signal.SIGCONT)
        started = time.monotonic()
        r = migrate(*cutover_args(mongo, postgres, "--flip-hook", hook, "--follower-window", "1h",
                                  "--timeout", "60s"), timeout=180)
        assert r.rc == 0, r
        assert time.monotonic() - started >= 15.0, "took over before the owner's lease lapsed"
        assert '"event":"cutover.takeover"' in r.stderr
        cut1.send_signal(signal.SIGCONT)
        out, err = cut1.communicate(timeout=60)
        assert cut1.returncode == EXIT_STATE, err[-4000:]
        assert "lost the cutover to another migrate cutover" in err
    finally:
        cut1.send_signal(signal.SIGCONT)
        end(follower, wl)
    st = state(postgres)
    assert st[1] == "done", st
    assert hook_log.read_text() == ENDPOINT + "\n"  # one flip, by the new owner
    assert write_error_code(mongo, dbname) == 371  # the old owner did not unfreeze
    assert_ack_log_reflected(postgres, dbname, "docs", ack)
