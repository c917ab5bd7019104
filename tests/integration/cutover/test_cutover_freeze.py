"""Integration: the write freeze as MongoDB runs it (issue 15, point 3), against a
strict mongosim (users and built-in roles, the global lock in exclusive mode).

- users holding bypassWriteBlockingMode (the built-in restore role, root
  through it) write through setUserWriteBlockMode: the preflight names them
  and refuses unless --allow-bypass-users names every one of them;
- a write one of them makes after the fence is caught right before the
  flip (the change stream after the fence), and the cutover aborts;
- the freeze waits for MongoDB's global lock behind open transactions,
  stalling every other operation meanwhile: it waits at most
  --freeze-timeout and then aborts with the source unfrozen.

The first and the last failed on the code before these fixes (it froze
regardless of such users; it waited as long as the transaction lived).
"""

import signal
import subprocess
import time

import pymongo

from mgharness import build_path
from mgharness.mongosim import MongosimInstance

from test_cdc import wait_for
from test_cutover import EXIT_ABORTED, EXIT_STATE, state, stop

ENDPOINT = "postgresql://app@127.0.0.1:5000/app"
USERS = ["--auth", "admin:adminpw", "--auth", "app:apppw:readWriteAnyDatabase",
         "--auth", "bk:bkpw:restore"]
# nobody may bypass: the migration's user freezes (backup) and reads and lists users
NO_BYPASS = ["--auth", "admin:adminpw:backup,readAnyDatabase,userAdminAnyDatabase",
             "--auth", "app:apppw:readWriteAnyDatabase"]


def auth_uri(sim, user, pw):
    return f"mongodb://{user}:{pw}@{sim.address}/?authSource=admin"


def migrated(services, postgres, migrate, db, count=500, users=USERS):
    """a mongosim with users (in USERS admin is root), and a copied, validated migration of
    db.docs made as admin."""
    sim = services.add(MongosimInstance(services.root, name="freeze", args=users))
    uri = auth_uri(sim, "admin", "adminpw")
    app = pymongo.MongoClient(auth_uri(sim, "app", "apppw"), serverSelectionTimeoutMS=5000)
    app[db]["docs"].insert_many([{"_id": i, "v": "x" * 50} for i in range(count)])
    for args in (["init", "--source", uri, "--target", postgres.uri, "--include", f"{db}.*"],
                 ["sync", "--source", uri, "--target", postgres.uri],
                 ["validate", "--source", uri, "--target", postgres.uri, "--full"]):
        r = migrate(*args)
        assert r.rc == 0, r
    return sim, uri, app


def cutover(uri, postgres, *extra):
    return ["cutover", "--source", uri, "--target", postgres.uri, "--max-lag", "1h",
            "--endpoint", ENDPOINT, *extra]


def writable(client, db):
    try:
        client[db + "_probe"]["p"].insert_one({})
        return True
    except pymongo.errors.OperationFailure as e:
        assert e.code == 371, e
        return False


def test_users_that_bypass_the_freeze_are_named(services, postgres, migrate, dbname):
    sim, uri, app = migrated(services, postgres, migrate, dbname)
    r = migrate(*cutover(uri, postgres))
    assert r.rc == EXIT_STATE, r
    assert "2 source user(s) may write through the freeze" in r.stderr, r.stderr
    assert "admin@admin" in r.stderr and "bk@admin" in r.stderr
    assert "app@admin" not in r.stderr  # readWriteAnyDatabase is stopped by the block
    assert "--allow-bypass-users" in r.stderr
    assert writable(app, dbname)
    r = migrate(*cutover(uri, postgres, "--allow-bypass-users", "bk@admin", "--dry-run"))
    assert r.rc == EXIT_STATE, r  # admin@admin is not named
    assert "1 source user(s)" in r.stderr and "admin@admin" in r.stderr
    r = migrate(*cutover(uri, postgres, "--allow-bypass-users", "bk@admin",
                         "--allow-bypass-users", "admin@admin", "--dry-run"))
    assert r.rc == 0, r
    app.close()


def test_a_write_through_the_freeze_aborts_before_the_flip(services, postgres, migrate,
                                                           dbname, tmp_path):
    """a user the operator allowed still writes after the fence: it is caught before the
    flip, the cutover aborts and unfreezes."""
    sim, uri, app = migrated(services, postgres, migrate, dbname)
    bk = pymongo.MongoClient(auth_uri(sim, "bk", "bkpw"), serverSelectionTimeoutMS=5000)
    follower = subprocess.Popen([build_path("bin", "migrate"), "sync", "--source", uri,
                                 "--target", postgres.uri, "--follow", "--batch-delay", "20ms"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ep = tmp_path / "ep"
    try:
        wait_for(lambda: postgres.query("SELECT updated_at > now() - interval '2 s' FROM "
                                        "_migrate.checkpoint")[0][0], timeout=30,
                 what="the follower")
        follower.send_signal(signal.SIGSTOP)
        cut = subprocess.Popen([build_path("bin", "migrate"), "--log-format=json",
                                *cutover(uri, postgres, "--allow-bypass-users", "*",
                                         "--endpoint-file", str(ep), "--follower-window", "1h")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: (state(postgres) or ("",))[0] == "drain", timeout=30, what="the drain")
        assert not writable(app, dbname)  # frozen for the application
        bk[dbname]["docs"].insert_one({"_id": "through the freeze"})  # restore bypasses
        follower.send_signal(signal.SIGCONT)
        out, err = cut.communicate(timeout=120)
        assert cut.returncode == EXIT_ABORTED, err[-4000:]
        reason = state(postgres)[2]
        assert "the source changed after the fence" in reason, reason
        assert f"insert on {dbname}.docs" in reason, reason
        assert writable(app, dbname)  # unfrozen
        assert not ep.exists()
    finally:
        follower.send_signal(signal.SIGCONT)
        stop(follower)
        bk.close()
        app.close()


def test_the_freeze_gives_up_behind_a_long_transaction(services, postgres, migrate, dbname):
    """setUserWriteBlockMode waits for the global lock behind an open transaction while
    every other operation queues: the cutover waits --freeze-timeout (5 s by default), not
    the transaction's lifetime (60 s), and leaves the source unfrozen."""
    sim, uri, app = migrated(services, postgres, migrate, dbname, users=NO_BYPASS)
    session = app.start_session()
    session.start_transaction()
    app[dbname]["docs"].insert_one({"_id": "in a long transaction"}, session=session)
    try:
        started = time.monotonic()
        r = migrate(*cutover(uri, postgres), timeout=40)
        took = time.monotonic() - started
        assert r.rc == EXIT_ABORTED, r
        assert took < 20, f"the freeze waited {took:.1f} s"
        reason = state(postgres)[2]
        assert "within --freeze-timeout 5.0 s" in reason and "open transactions" in reason, reason
    finally:
        session.abort_transaction()
        session.end_session()
    assert writable(app, dbname)
    app.close()
