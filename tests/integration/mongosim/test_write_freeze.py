"""tests/integration/mongosim/test_write_freeze.py - setUserWriteBlockMode as MongoDB runs it:
the global lock in exclusive mode (it waits for open transactions, and every other
operation, reads included, queues behind it), user index builds aborted, the block recorded
in the oplog (the reply's operationTime), users holding bypassWriteBlockingMode (restore,
and root through it) not stopped, the setUserWriteBlockMode privilege required."""

import threading
import time

import pymongo
import pytest


def in_thread(fn):
    """in_thread runs fn in a thread; returns (thread, result dict with value/error/done_at)."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the test
            out["error"] = e
        out["done_at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def freeze(client, on=True):
    return client.admin.command({"setUserWriteBlockMode": 1, "global": on})


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_freeze_waits_for_an_open_transaction_and_queues_reads(mongosim_factory):
    server = mongosim_factory()
    admin = server.client(retryWrites=False)
    app = server.client(retryWrites=False)
    reader = server.client(retryReads=False)
    try:
        app.fz.c.insert_one({"_id": "seed"})
        session = app.start_session()
        session.start_transaction()
        app.fz.c.insert_one({"_id": "in-txn"}, session=session)
        t_freeze, res = in_thread(lambda: freeze(admin))
        time.sleep(0.8)
        assert "done_at" not in res, "the freeze did not wait for the open transaction"
        # a read queues behind the pending exclusive request
        t_read, rres = in_thread(lambda: reader.fz.c.find_one({"_id": "seed"}))
        time.sleep(0.5)
        assert "done_at" not in rres, "a read went past the pending freeze"
        # a new transaction cannot take the lock: LockTimeout, transient
        with app.start_session() as s2:
            s2.start_transaction()
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                app.fz.c.insert_one({"_id": "late-txn"}, session=s2)
            assert exc.value.code == 24
            assert exc.value.has_error_label("TransientTransactionError")
            s2.abort_transaction()
        # the open transaction goes on and commits before the block engages
        app.fz.c.insert_one({"_id": "in-txn-2"}, session=session)
        committed_at = time.monotonic()
        session.commit_transaction()
        t_freeze.join(10)
        t_read.join(10)
        assert "error" not in res, res.get("error")
        assert res["done_at"] >= committed_at
        assert rres["value"] == {"_id": "seed"} and rres["done_at"] >= committed_at
        fence = res["value"]["operationTime"]
        commit_time = app.fz.command("ping")["operationTime"]
        assert commit_time >= fence  # the freeze's own oplog entry is the newest
        with app.fz.c.watch(start_at_operation_time=fence, max_await_time_ms=200) as cs:
            assert cs.try_next() is None  # nothing after the fence
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            app.fz.c.insert_one({"_id": "after"})
        assert exc.value.code == 371
        assert sorted(d["_id"] for d in reader.fz.c.find()) == ["in-txn", "in-txn-2", "seed"]
        session.end_session()
    finally:
        freeze(admin, False)
        for c in (admin, app, reader):
            c.close()


def test_an_abandoned_transaction_holds_the_freeze_until_its_lifetime_ends(mongosim_factory):
    server = mongosim_factory("--transaction-lifetime-limit-secs", "2")
    admin = server.client(retryWrites=False)
    app = server.client(retryWrites=False)
    try:
        session = app.start_session()
        session.start_transaction()
        app.lt.c.insert_one({"_id": 1}, session=session)
        t0 = time.monotonic()
        freeze(admin)
        waited = time.monotonic() - t0
        assert 1.5 <= waited < 8, waited
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            session.commit_transaction()
        assert exc.value.code == 251  # aborted by the lifetime limit
        assert app.lt.c.count_documents({}) == 0
    finally:
        freeze(admin, False)
        admin.close()
        app.close()


def index_build_fail_point(server, mode, on):
    """index_build_fail_point sets hangAfterStartingIndexBuild where index builds run:
    the server, or every shard of a cluster (a router's fail points are its own)."""
    if mode == "sharded":
        for i in range(server.nshards):
            c = server.shard_client(i)
            try:
                c.admin.command("configureFailPoint", "hangAfterStartingIndexBuild",
                                mode="alwaysOn" if on else "off")
            finally:
                c.close()
        return
    c = server.client()
    try:
        c.admin.command("configureFailPoint", "hangAfterStartingIndexBuild",
                        mode="alwaysOn" if on else "off")
    finally:
        c.close()


def test_freeze_aborts_user_index_builds(mongosim_factory, mode):
    server = mongosim_factory()
    admin = server.client(retryWrites=False)
    try:
        admin.ix.c.insert_many([{"_id": i, "k": i} for i in range(100)])
        index_build_fail_point(server, mode, True)
        t_build, bres = in_thread(lambda: admin.ix.c.create_index("k"))
        time.sleep(0.5)
        assert "done_at" not in bres, "the index build did not hang on the fail point"
        freeze(admin)
        t_build.join(10)
        assert isinstance(bres.get("error"), pymongo.errors.OperationFailure)
        assert bres["error"].code == 276  # IndexBuildAborted
        names = [ix["name"] for ix in admin.ix.c.list_indexes()]
        assert names == ["_id_"]
        index_build_fail_point(server, mode, False)
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            admin.ix.c.create_index("k")
        assert exc.value.code == 371
        freeze(admin, False)
        admin.ix.c.create_index("k")
        assert "k_1" in [ix["name"] for ix in admin.ix.c.list_indexes()]
    finally:
        index_build_fail_point(server, mode, False)
        admin.close()


AUTH_ARGS = ("--auth", "root:rootpw",
             "--auth", "restorer:pw:restore",
             "--auth", "backer:pw:backup",
             "--auth", "app:pw:readWrite@shop",
             "--auth", "ops:pw:clusterManager,clusterMonitor")


def user_client(server, user, password="pw", **kw):
    return pymongo.MongoClient(server.host, server.port, username=user, password=password,
                               authSource="admin", serverSelectionTimeoutMS=5000, **kw)


def test_bypass_write_blocking_users_keep_writing(mongosim_factory):
    server = mongosim_factory(*AUTH_ARGS)
    root = user_client(server, "root", "rootpw", retryWrites=False)
    restorer = user_client(server, "restorer", retryWrites=False)
    app = user_client(server, "app", retryWrites=False)
    try:
        app.shop.c.insert_one({"_id": "before"})
        fence = freeze(root)["operationTime"]
        # readWrite does not bypass
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            app.shop.c.insert_one({"_id": "app-after"})
        assert exc.value.code == 371
        # root (through restore) and restore itself write on, after the fence
        root.shop.c.update_one({"_id": "before"}, {"$set": {"by": "root"}})
        restorer.shop.c.insert_one({"_id": "restored"})  # restore may insert, not update
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            restorer.shop.c.update_one({"_id": "before"}, {"$set": {"x": 1}})
        assert exc.value.code == 13
        with root.shop.c.watch(start_at_operation_time=fence, max_await_time_ms=200) as cs:
            late = []
            deadline = time.monotonic() + 10
            while len(late) < 2 and time.monotonic() < deadline:
                ev = cs.try_next()
                if ev is not None:
                    late.append(ev)
        assert [e["documentKey"]["_id"] for e in late] == ["before", "restored"]
        assert all(e["clusterTime"] > fence for e in late)
        # the privilege shows in connectionStatus
        privs = root.admin.command("connectionStatus", showPrivileges=True)["authInfo"][
            "authenticatedUserPrivileges"]
        cluster = [p for p in privs if p["resource"] == {"cluster": True}]
        assert cluster and "bypassWriteBlockingMode" in cluster[0]["actions"]
        assert not any("anyAction" in p["actions"] for p in privs)
    finally:
        freeze(root, False)
        for c in (root, restorer, app):
            c.close()


def test_freeze_needs_the_set_user_write_block_mode_privilege(mongosim_factory):
    server = mongosim_factory(*AUTH_ARGS)
    app = user_client(server, "app")
    ops = user_client(server, "ops")
    backer = user_client(server, "backer", retryWrites=False)
    try:
        for c in (app, ops):  # readWrite; clusterManager + clusterMonitor
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                freeze(c)
            assert exc.value.code == 13
        freeze(backer)  # backup grants setUserWriteBlockMode but not the bypass
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            backer.admin.command("ping")  # commands go on
            backer.config.settings.insert_one({"_id": "x"})  # internal databases are not blocked
            backer.shop.c.insert_one({"_id": 1})
        assert exc.value.code == 13  # backup cannot write to shop at all
        freeze(backer, False)
    finally:
        for c in (app, ops, backer):
            c.close()


def test_no_op_writer_goes_on_during_a_freeze(mongosim_factory):
    server = mongosim_factory("--periodic-noop-interval-secs", "1")
    client = server.client(retryWrites=False)
    try:
        fence = freeze(client)["operationTime"]
        assert wait_for(lambda: client.admin.command("ping")["operationTime"] > fence, 6)
    finally:
        freeze(client, False)
        client.close()


def test_freeze_gives_up_at_max_time_ms(mongosim_factory):
    # the exclusive lock wait is bounded by the command's maxTimeMS, as on
    # mongod; the server is then not frozen and nothing stays queued
    server = mongosim_factory()
    admin = server.client(retryWrites=False)
    app = server.client(retryWrites=False)
    try:
        session = app.start_session()
        session.start_transaction()
        app.mt.c.insert_one({"_id": 1}, session=session)
        t0 = time.monotonic()
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            admin.admin.command({"setUserWriteBlockMode": 1, "global": True, "maxTimeMS": 300})
        assert exc.value.code == 50
        assert 0.25 <= time.monotonic() - t0 < 5
        admin.mt.other.insert_one({"_id": "not frozen"})
        session.commit_transaction()
        assert app.mt.c.find_one() == {"_id": 1}
        session.end_session()
    finally:
        admin.close()
        app.close()
