"""tests/integration/mongosim/test_admin.py - setUserWriteBlockMode, the failCommand fail
point, SCRAM-SHA-256 authentication, --load of Extended JSON."""

import json
import os
import threading
import time

import bson
import pymongo
import pytest


def test_write_block_rejects_writes_with_371_and_releases(mongosim_factory):
    server = mongosim_factory()
    client = server.client(retryWrites=False)
    try:
        coll = client.wb.c
        coll.insert_one({"_id": 1})
        client.admin.command({"setUserWriteBlockMode": 1, "global": True})
        for op in (lambda: coll.insert_one({"_id": 2}),
                   lambda: coll.update_one({"_id": 1}, {"$set": {"x": 1}}),
                   lambda: coll.delete_one({"_id": 1}),
                   lambda: client.wb.create_collection("new"),
                   lambda: coll.drop()):
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                op()
            assert exc.value.code == 371
            assert exc.value.details["codeName"] == "UserWritesBlocked"
        assert coll.find_one({"_id": 1}) == {"_id": 1}  # reads go on
        client.admin.command("ping")
        client.admin.command({"setUserWriteBlockMode": 1, "global": False})
        coll.insert_one({"_id": 2})
        assert coll.count_documents({}) == 2
    finally:
        client.close()


def test_no_write_lands_after_the_freeze_under_concurrent_writers(mongosim_factory):
    # A freeze's operationTime is the cutover's fence: every write the server
    # lets through must be at or before it, also writes racing the freeze
    # (checked before it, applied after). Six writers (with transactions) and
    # four long readers hammer the server while it is frozen twelve times; the
    # change stream from each fence must then hold nothing after it. Before
    # the check moved under the write lock about one freeze in fifteen let a
    # write through, so this catches a regression often, not always.
    server = mongosim_factory()
    admin = server.client(retryWrites=False)
    stop = threading.Event()

    errors = []

    def writer(k):
        client = server.client(retryWrites=False)
        coll, n = client.race.c, 0
        try:
            while not stop.is_set():
                n += 1
                try:
                    if n % 4 == 0:
                        with client.start_session() as s:
                            s.start_transaction()
                            coll.insert_one({"_id": f"{k}-{n}"}, session=s)
                            coll.delete_one({"_id": f"{k}-{n - 1}"}, session=s)
                            s.commit_transaction()
                    elif n % 3 == 0:
                        coll.update_one({"_id": f"{k}-{n - 1}"}, {"$set": {"u": n}})
                    elif n % 5 == 0:
                        coll.find_one_and_update({"_id": f"{k}-{n - 2}"}, {"$set": {"f": n}})
                    else:
                        coll.insert_one({"_id": f"{k}-{n}"})
                except pymongo.errors.PyMongoError as e:
                    # 371 once frozen; 24 (LockTimeout) for a transaction
                    # started while the freeze waits for the global lock
                    if getattr(e, "code", None) not in (371, 24):
                        errors.append(repr(e))
        finally:
            client.close()

    def reader():
        # long scans hold the server's read lock, so writers queue for the
        # write lock after their freeze check: that is where a write slipped
        # past the freeze before the check moved under the lock
        client = server.client()
        try:
            while not stop.is_set():
                list(client.race.big.find({}, batch_size=20000))
        finally:
            client.close()

    admin.race.big.insert_many([{"_id": i, "pad": "x" * 200} for i in range(20000)])
    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(6)]
    threads += [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    late = []
    try:
        for _ in range(12):
            time.sleep(0.3)
            fence = admin.admin.command({"setUserWriteBlockMode": 1, "global": True})[
                "operationTime"]
            time.sleep(0.2)
            with admin.race.c.watch(start_at_operation_time=fence, max_await_time_ms=200) as cs:
                empty = 0
                while empty < 2:  # an empty batch may come before the first events
                    ev = cs.try_next()
                    if ev is None:
                        empty += 1
                        continue
                    if ev["clusterTime"] > fence:
                        late.append((ev["clusterTime"], fence))
            admin.admin.command({"setUserWriteBlockMode": 1, "global": False})
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        written = admin.race.c.count_documents({})
        admin.close()
    assert errors == []
    assert written > 100, "the writers wrote nothing: the test proves nothing"
    assert late == []


def test_write_block_runs_on_any_database(mongosim_factory):
    # the command is not admin-only on mongod (its privilege is on the
    # cluster resource), so it works from any database
    server = mongosim_factory()
    client = server.client(retryWrites=False)
    try:
        client.anydb.command({"setUserWriteBlockMode": 1, "global": True})
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            client.anydb.c.insert_one({"_id": 1})
        assert exc.value.code == 371
        client.anydb.command({"setUserWriteBlockMode": 1, "global": False})
        client.anydb.c.insert_one({"_id": 1})
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            client.admin.command({"setUserWriteBlockMode": 1, "global": "yes"})
        assert exc.value.code == 14
    finally:
        client.close()


def test_fail_command_error_code_labels_and_times(mongosim_factory):
    server = mongosim_factory()
    client = server.client(retryReads=False, retryWrites=False)
    try:
        client.admin.command("configureFailPoint", "failCommand", mode={"times": 2},
                             data={"failCommands": ["insert", "find"], "errorCode": 2,
                                   "errorLabels": ["TransientTransactionError"]})
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            client.fc.c.insert_one({"_id": 1})
        assert exc.value.code == 2
        assert exc.value.details["errorLabels"] == ["TransientTransactionError"]
        assert "failCommand" in exc.value.details["errmsg"]
        with pytest.raises(pymongo.errors.OperationFailure):
            client.fc.c.find_one()
        client.fc.c.insert_one({"_id": 1})  # times exhausted
        client.admin.command("configureFailPoint", "failCommand", mode="alwaysOn",
                             data={"failCommands": ["count"], "errorCode": 2})
        for _ in range(3):
            with pytest.raises(pymongo.errors.OperationFailure):
                client.fc.command("count", "c")
        client.admin.command("configureFailPoint", "failCommand", mode="off")
        assert client.fc.command("count", "c")["n"] == 1
    finally:
        client.close()


def test_fail_command_app_name_and_block(mongosim_factory):
    server = mongosim_factory()
    target = server.client(appname="victim", retryReads=False)
    other = server.client(appname="bystander", retryReads=False)
    try:
        target.admin.command("configureFailPoint", "failCommand", mode={"times": 1},
                             data={"failCommands": ["find"], "blockConnection": True,
                                   "blockTimeMS": 500, "appName": "victim"})
        t0 = time.monotonic()
        other.bc.c.find_one()
        assert time.monotonic() - t0 < 0.4
        t0 = time.monotonic()
        target.bc.c.find_one()
        assert time.monotonic() - t0 >= 0.45
    finally:
        target.close()
        other.close()


def test_fail_command_close_connection(mongosim_factory):
    server = mongosim_factory()
    client = server.client(retryReads=False)
    try:
        client.admin.command("configureFailPoint", "failCommand", mode={"times": 1},
                             data={"failCommands": ["find"], "closeConnection": True})
        with pytest.raises(pymongo.errors.AutoReconnect):
            client.cc.c.find_one()
        assert client.cc.c.find_one() is None  # next attempt works
    finally:
        client.close()


def test_unknown_fail_point(msim_client):
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        msim_client.admin.command("configureFailPoint", "noSuchFailPoint", mode="alwaysOn")
    assert exc.value.code == 2


def test_scram_sha_256_auth(mongosim_factory):
    server = mongosim_factory("--auth", "alice:s3cret pass")
    good = pymongo.MongoClient(server.host, server.port, username="alice",
                               password="s3cret pass", authSource="admin",
                               serverSelectionTimeoutMS=5000)
    try:
        good.au.c.insert_one({"_id": 1})
        assert good.au.c.find_one() == {"_id": 1}
        status = good.admin.command("connectionStatus")
        assert status["authInfo"]["authenticatedUsers"] == [{"user": "alice", "db": "admin"}]
    finally:
        good.close()
    bad = pymongo.MongoClient(server.host, server.port, username="alice", password="wrong",
                              authSource="admin", serverSelectionTimeoutMS=3000)
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        bad.au.c.find_one()
    assert exc.value.code == 18
    bad.close()
    nouser = pymongo.MongoClient(server.host, server.port, username="mallory", password="x",
                                 serverSelectionTimeoutMS=3000)
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        nouser.au.c.find_one()
    assert exc.value.code == 18
    nouser.close()
    anon = server.client()
    try:
        anon.admin.command("ping")  # allowed before authentication
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            anon.au.c.find_one()
        assert exc.value.code == 13
    finally:
        anon.close()


def test_load_extended_json(mongosim_factory, tmp_path):
    lines = tmp_path / "people.json"
    lines.write_text(
        '{"_id": {"$oid": "5f1e2d3c4b5a697887766554"}, "name": "ann", "born": {"$date": "1990-01-02T00:00:00Z"}}\n'
        '{"_id": 2, "n": {"$numberLong": "9007199254740993"}, "d": {"$numberDecimal": "1.5"}}\n')
    arr = tmp_path / "array.json"
    arr.write_text(json.dumps([{"_id": i, "v": {"$numberInt": str(i)}} for i in range(5)]))
    server = mongosim_factory("--load", f"{lines},{arr}")
    client = server.client()
    try:
        people = client.test.people
        assert people.count_documents({}) == 2
        ann = people.find_one({"name": "ann"})
        assert ann["_id"] == bson.ObjectId("5f1e2d3c4b5a697887766554")
        assert ann["born"].year == 1990
        two = people.find_one({"_id": 2})
        assert two["n"] == 9007199254740993 and isinstance(two["n"], bson.Int64)
        assert two["d"] == bson.Decimal128("1.5")
        assert [d["v"] for d in client.test.array.find()] == list(range(5))
    finally:
        client.close()
    server2 = mongosim_factory("--load", str(arr), "--load-ns", "shop.items", name="m2")
    client = server2.client()
    try:
        assert client.shop.items.count_documents({}) == 5
    finally:
        client.close()


def test_load_rejects_bad_json(tmp_path):
    import subprocess
    from msim_service import mongosim_binary
    bad = tmp_path / "bad.json"
    bad.write_text('{"_id": 1, "x": }\n')
    r = subprocess.run([mongosim_binary(), "--port", "0", "--load", str(bad)],
                       capture_output=True, timeout=20)
    assert r.returncode == 2
    assert b"bad.json" in r.stderr


def test_fail_command_many_labels(mongosim_factory):
    """labels longer than a small inline document survive configuration (regression)."""
    server = mongosim_factory()
    client = server.client(retryReads=False)
    labels = [f"SomeRatherLongErrorLabelName{i:02d}" for i in range(12)]
    try:
        client.admin.command("configureFailPoint", "failCommand", mode={"times": 2},
                             data={"failCommands": ["find"], "errorCode": 2,
                                   "errorLabels": labels})
        for _ in range(2):
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                client.ml.c.find_one()
            assert exc.value.details["errorLabels"] == labels
        assert client.ml.c.find_one() is None
    finally:
        client.close()
