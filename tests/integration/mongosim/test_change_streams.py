"""tests/integration/mongosim/test_change_streams.py - watch() on a collection, a database
and the deployment; resume tokens; history lost; postBatchResumeToken; pymongo's automatic
resume after a fail point closes the connection; fullDocument modes."""

import time

import bson
import pymongo
import pytest
from bson.son import SON


def drain(stream, n, timeout=10.0):
    """drain returns the next n events of stream (fails after timeout)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        ev = stream.try_next()
        if ev is not None:
            out.append(ev)
        assert time.monotonic() < deadline, f"only {len(out)} of {n} events arrived: {out}"
    return out


def test_collection_stream_every_operation_type(msim_client, dbname):
    db = msim_client[dbname]
    db.create_collection("w")
    with db.w.watch(max_await_time_ms=100) as s:
        db.w.insert_one({"_id": 1, "a": 1, "arr": [1]})
        db.w.update_one({"_id": 1}, {"$set": {"b.c": 2}, "$unset": {"a": ""}, "$push": {"arr": 2}})
        db.w.replace_one({"_id": 1}, {"r": 1})
        db.w.delete_one({"_id": 1})
        msim_client.admin.command("renameCollection", f"{dbname}.w", to=f"{dbname}.w2")
        evs = drain(s, 6)
    ops = [e["operationType"] for e in evs]
    assert ops == ["insert", "update", "replace", "delete", "rename", "invalidate"]
    ins, upd, rep, dele, ren, inv = evs
    assert ins["fullDocument"] == {"_id": 1, "a": 1, "arr": [1]}
    assert ins["ns"] == {"db": dbname, "coll": "w"} and ins["documentKey"] == {"_id": 1}
    assert isinstance(ins["clusterTime"], bson.Timestamp) and "wallTime" in ins
    assert upd["updateDescription"] == {"updatedFields": {"b.c": 2, "arr": [1, 2]},
                                        "removedFields": ["a"], "truncatedArrays": []}
    assert "fullDocument" not in upd
    assert rep["fullDocument"] == {"_id": 1, "r": 1}
    assert dele["documentKey"] == {"_id": 1} and "fullDocument" not in dele
    assert ren["to"] == {"db": dbname, "coll": "w2"}
    tokens = [e["_id"]["_data"] for e in evs]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_drop_invalidates_collection_stream(msim_client, dbname):
    db = msim_client[dbname]
    db.d.insert_one({"x": 1})
    with db.d.watch(max_await_time_ms=100) as s:
        db.d.drop()
        evs = drain(s, 2)
        assert [e["operationType"] for e in evs] == ["drop", "invalidate"]
        assert not s.alive
    # startAfter the invalidate: a new stream on the re-created collection
    with db.d.watch(start_after=evs[1]["_id"], max_await_time_ms=100) as s2:
        db.d.insert_one({"_id": "again"})
        ev = drain(s2, 1)[0]
    assert ev["operationType"] == "insert" and ev["documentKey"] == {"_id": "again"}
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.d.watch(resume_after=evs[1]["_id"])
    assert exc.value.code == 260


def test_database_stream(msim_client, dbname):
    db = msim_client[dbname]
    with db.watch(max_await_time_ms=100) as s:
        db.a.insert_one({"_id": 1})
        db.b.insert_one({"_id": 2})
        msim_client[dbname + "_other"].c.insert_one({"_id": 3})
        db.a.drop()
        msim_client.drop_database(dbname)
        evs = drain(s, 6)
    # invalidate events carry no ns
    assert [(e["operationType"], e.get("ns", {}).get("coll")) for e in evs] == [
        ("insert", "a"), ("insert", "b"), ("drop", "a"), ("drop", "b"),
        ("dropDatabase", None), ("invalidate", None)]
    msim_client.drop_database(dbname + "_other")


def test_cluster_stream(msim_client, dbname):
    with msim_client.watch(max_await_time_ms=100) as s:
        msim_client[dbname + "_x"].c.insert_one({"_id": 1})
        msim_client[dbname + "_y"].c.insert_one({"_id": 2})
        evs = drain(s, 2)
    assert [e["ns"]["db"] for e in evs] == [dbname + "_x", dbname + "_y"]


def test_resume_after_returns_exactly_the_later_events(msim_client, dbname):
    coll = msim_client[dbname].r
    coll.insert_one({"_id": "seed"})
    with coll.watch(max_await_time_ms=100) as s:
        for i in range(20):
            coll.insert_one({"_id": i})
        evs = drain(s, 20)
    for k in (0, 7, 18):
        with coll.watch(resume_after=evs[k]["_id"], max_await_time_ms=100) as s2:
            again = drain(s2, 19 - k)
            assert s2.try_next() is None
        assert [e["_id"] for e in again] == [e["_id"] for e in evs[k + 1:]]
        assert [e["documentKey"]["_id"] for e in again] == list(range(k + 1, 20))


def test_start_at_operation_time(msim_client, dbname):
    coll = msim_client[dbname].t
    coll.insert_one({"_id": "early"})
    coll.insert_one({"_id": "at"})
    # a read's operationTime is the time of the last write, and the start is inclusive
    t = msim_client[dbname].command("ping")["operationTime"]
    coll.insert_one({"_id": "after"})
    with coll.watch(start_at_operation_time=t, max_await_time_ms=100) as s:
        evs = drain(s, 2)
        assert s.try_next() is None
    assert [e["documentKey"]["_id"] for e in evs] == ["at", "after"]
    assert evs[0]["clusterTime"] == t


@pytest.mark.replset_only  # a cluster's high-water mark: test_sharded.py
def test_post_batch_resume_token_on_empty_get_more(mongosim_factory):
    # as on MongoDB the high-water mark moves only when the oplog does: not
    # with the clock on an idle server (test_idle.py has the no-op writer)
    client = mongosim_factory().client()
    db = client.pbrt
    db.create_collection("p")
    first = db.command("aggregate", "p", pipeline=[{"$changeStream": {}}], cursor={})
    cid = first["cursor"]["id"]
    pbrt0 = first["cursor"]["postBatchResumeToken"]
    t0 = time.monotonic()
    more = db.command(SON([("getMore", bson.Int64(cid)), ("collection", "p"),
                           ("maxTimeMS", 300)]))
    waited = time.monotonic() - t0
    assert more["cursor"]["nextBatch"] == []
    assert waited >= 0.25
    pbrt1 = more["cursor"]["postBatchResumeToken"]
    assert pbrt1 == pbrt0
    time.sleep(1.1)
    more = db.command(SON([("getMore", bson.Int64(cid)), ("collection", "p"),
                           ("maxTimeMS", 100)]))
    assert more["cursor"]["postBatchResumeToken"] == pbrt1  # idle: nothing moved
    db.other.insert_one({"_id": "elsewhere"})
    more = db.command(SON([("getMore", bson.Int64(cid)), ("collection", "p"),
                           ("maxTimeMS", 100)]))
    assert more["cursor"]["nextBatch"] == []
    pbrt2 = more["cursor"]["postBatchResumeToken"]
    assert pbrt2["_data"] > pbrt1["_data"]  # the oplog moved
    db.p.insert_one({"_id": 1})
    more = db.command(SON([("getMore", bson.Int64(cid)), ("collection", "p"),
                           ("maxTimeMS", 1000)]))
    assert [e["documentKey"] for e in more["cursor"]["nextBatch"]] == [{"_id": 1}]
    assert more["cursor"]["postBatchResumeToken"]["_data"] > pbrt2["_data"]
    db.command("killCursors", "p", cursors=[bson.Int64(cid)])
    client.close()


def test_get_more_wakes_up_on_write(msim_client, dbname):
    db = msim_client[dbname]
    db.create_collection("wake")
    import threading
    with db.wake.watch(max_await_time_ms=5000) as s:
        threading.Timer(0.3, lambda: db.wake.insert_one({"_id": 1})).start()
        t0 = time.monotonic()
        ev = s.next()
        assert time.monotonic() - t0 < 3.0
    assert ev["documentKey"] == {"_id": 1}


def test_history_lost_after_the_window_rolls_over(mongosim_factory):
    server = mongosim_factory("--oplog-size-mb", "1")
    client = server.client()
    try:
        coll = client.h.c
        t_early = client.h.command("ping")["operationTime"]
        with coll.watch(max_await_time_ms=100) as s:
            coll.insert_one({"_id": "first"})
            first = drain(s, 1)[0]
        # still in the window
        with coll.watch(resume_after=first["_id"]) as s:
            pass
        for i in range(30):
            coll.insert_one({"_id": i, "pad": "x" * 100_000})  # 3 MB through a 1 MB oplog
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            with coll.watch(resume_after=first["_id"]) as s:
                s.try_next()
        assert exc.value.code == 286
        assert exc.value.details["codeName"] == "ChangeStreamHistoryLost"
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            coll.watch(start_at_operation_time=t_early)
        assert exc.value.code == 286
        # an open stream whose next event rolled out of the window fails too
        with coll.watch(max_await_time_ms=100) as slow:
            coll.insert_one({"_id": "next"})
            for i in range(30):
                client.h.other.insert_one({"_id": i, "pad": "y" * 100_000})
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                drain(slow, 1)
            assert exc.value.code == 286
    finally:
        client.close()


def test_malformed_resume_token(msim_client, dbname):
    coll = msim_client[dbname].m
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        coll.watch(resume_after={"_data": "zz-not-a-token"})
    assert exc.value.code in (9, 260)
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        coll.watch(resume_after={"nodata": 1})
    assert exc.value.code == 260


def test_pymongo_resumes_after_fail_point_closes_connection(mongosim_factory):
    server = mongosim_factory()
    client = server.client()
    try:
        coll = client.fp.c
        coll.insert_one({"_id": "seed"})
        with coll.watch(max_await_time_ms=100) as s:
            coll.insert_one({"_id": 1})
            assert drain(s, 1)[0]["documentKey"] == {"_id": 1}
            client.admin.command("configureFailPoint", "failCommand", mode={"times": 1},
                                 data={"failCommands": ["getMore"], "closeConnection": True})
            coll.insert_one({"_id": 2})
            coll.insert_one({"_id": 3})
            evs = drain(s, 2)  # the first getMore dies with the connection; pymongo resumes
        assert [e["documentKey"]["_id"] for e in evs] == [2, 3]
        status = client.admin.command("serverStatus")
        assert status["connections"]["totalCreated"] >= 3  # the closed one was replaced
    finally:
        client.close()


def test_full_document_modes_and_pre_images(msim_client, dbname):
    db = msim_client[dbname]
    db.create_collection("img", changeStreamPreAndPostImages={"enabled": True})
    db.plain.insert_one({"_id": 1, "v": 0})
    db.img.insert_one({"_id": 1, "v": 0})
    with db.plain.watch(full_document="updateLookup", max_await_time_ms=100) as s:
        db.plain.update_one({"_id": 1}, {"$inc": {"v": 1}})
        ev = drain(s, 1)[0]
    assert ev["fullDocument"] == {"_id": 1, "v": 1}
    # pymongo 3.11 has no fullDocumentBeforeChange option: use the commands
    cur = db.command("aggregate", "img", cursor={}, pipeline=[
        {"$changeStream": {"fullDocument": "required", "fullDocumentBeforeChange": "required"}}])
    db.img.update_one({"_id": 1}, {"$inc": {"v": 1}})
    db.img.delete_one({"_id": 1})
    got = []
    for _ in range(20):  # a router may return them in more than one batch
        more = db.command(SON([("getMore", bson.Int64(cur["cursor"]["id"])), ("collection", "img"),
                               ("maxTimeMS", 500)]))
        got += more["cursor"]["nextBatch"]
        if len(got) >= 2:
            break
    upd, dele = got
    assert upd["fullDocument"] == {"_id": 1, "v": 1}
    assert upd["fullDocumentBeforeChange"] == {"_id": 1, "v": 0}
    assert dele["fullDocumentBeforeChange"] == {"_id": 1, "v": 1}
    with db.plain.watch(full_document="whenAvailable", max_await_time_ms=100) as s:
        db.plain.update_one({"_id": 1}, {"$inc": {"v": 1}})
        assert drain(s, 1)[0]["fullDocument"] is None  # no post-images recorded there
    with pytest.raises(pymongo.errors.OperationFailure):
        with db.plain.watch(full_document="required", max_await_time_ms=100) as s:
            db.plain.update_one({"_id": 1}, {"$inc": {"v": 1}})
            drain(s, 1)


def test_later_stages_apply_to_events(msim_client, dbname):
    coll = msim_client[dbname].st
    pipeline = [{"$match": {"operationType": "insert", "fullDocument.keep": True}},
                {"$project": {"fullDocument.keep": 1, "operationType": 1}}]
    with coll.watch(pipeline, max_await_time_ms=100) as s:
        coll.insert_one({"_id": 1, "keep": False})
        coll.insert_one({"_id": 2, "keep": True, "other": 1})
        coll.delete_one({"_id": 2})
        ev = drain(s, 1)[0]
        assert s.try_next() is None
    assert ev["fullDocument"] == {"keep": True} and "ns" not in ev
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        with coll.watch([{"$project": {"_id": 0}}], max_await_time_ms=100) as s:
            coll.insert_one({"_id": 3})
            drain(s, 1)
    assert exc.value.code == 280


def test_concurrent_writers_and_streams(mongosim_factory):
    """8 writer threads, finds and two streams at once: every write seen exactly once, in
    increasing token order."""
    import threading
    server = mongosim_factory()
    client = server.client(maxPoolSize=32)
    try:
        coll = client.conc.c
        client.conc.create_collection("c")
        n_threads, per_thread = 8, 150
        streams = [coll.watch(max_await_time_ms=100, batch_size=50) for _ in range(2)]
        errors = []

        def writer(t):
            try:
                for j in range(per_thread):
                    coll.insert_one({"_id": f"{t}-{j}", "t": t})
                    if j % 10 == 0:
                        coll.update_one({"_id": f"{t}-{j}"}, {"$set": {"u": 1}})
                        list(coll.find({"t": t}).limit(5))
            except Exception as e:  # noqa: BLE001 - asserted below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        expected = n_threads * per_thread + n_threads * (per_thread // 10)
        for s in streams:
            evs = drain(s, expected, timeout=60)
            tokens = [e["_id"]["_data"] for e in evs]
            assert tokens == sorted(tokens) and len(set(tokens)) == expected
            inserted = {e["documentKey"]["_id"] for e in evs if e["operationType"] == "insert"}
            assert len(inserted) == n_threads * per_thread
            s.close()
        for th in threads:
            th.join()
        assert errors == []
    finally:
        client.close()


def test_resume_on_labelled_server_error(mongosim_factory):
    """failGetMoreAfterCursorCheckout: a resumable code gets ResumableChangeStreamError and
    pymongo resumes; any other code reaches the application."""
    server = mongosim_factory()
    client = server.client()
    try:
        coll = client.lbl.c
        client.lbl.create_collection("c")
        with coll.watch(max_await_time_ms=100) as s:
            client.admin.command("configureFailPoint", "failGetMoreAfterCursorCheckout",
                                 mode={"times": 1}, data={"errorCode": 6})
            coll.insert_one({"_id": 1})
            assert drain(s, 1)[0]["documentKey"] == {"_id": 1}
        with coll.watch(max_await_time_ms=100) as s:
            client.admin.command("configureFailPoint", "failGetMoreAfterCursorCheckout",
                                 mode={"times": 1}, data={"errorCode": 2})
            coll.insert_one({"_id": 2})
            with pytest.raises(pymongo.errors.OperationFailure) as exc:
                drain(s, 1)
            assert exc.value.code == 2
            assert not exc.value.has_error_label("ResumableChangeStreamError")
    finally:
        client.close()
