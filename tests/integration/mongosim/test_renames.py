"""tests/integration/mongosim/test_renames.py - renameCollection as MongoDB writes it to the
oplog: within a database, with dropTarget, one entry (one rename event, no drop of the
target); across databases, the documents inserted into a temporary collection
"tmpXXXXX.renameCollection" of the target database, a rename of it onto the target, and a
drop of the source (MongoDB's jstests/change_streams rename-across-databases sequence)."""

import re

import pytest

TMP = re.compile(r"^tmp[0-9A-Za-z]{5}\.renameCollection$")


def drain(stream, n, timeout=10.0):
    import time
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        ev = stream.try_next()
        if ev is not None:
            out.append(ev)
        assert time.monotonic() < deadline, f"only {len(out)} of {n}: {out}"
    return out


def quiet(stream):
    """quiet asserts the stream has nothing more now."""
    assert stream.try_next() is None


@pytest.fixture
def client(mongosim_factory):
    c = mongosim_factory().client()
    yield c
    c.close()


def test_same_database_rename_with_drop_target_is_one_event(client):
    db = client.rn
    db.src.insert_many([{"_id": 1}, {"_id": 2}])
    db.dst.insert_one({"_id": "old"})
    with db.watch(max_await_time_ms=100) as dbs, \
            db.dst.watch(max_await_time_ms=100) as on_target, \
            db.src.watch(max_await_time_ms=100) as on_source:
        client.admin.command("renameCollection", "rn.src", to="rn.dst", dropTarget=True)
        db.dst.insert_one({"_id": 3})
        evs = drain(dbs, 2)
        assert [e["operationType"] for e in evs] == ["rename", "insert"]
        assert evs[0]["ns"] == {"db": "rn", "coll": "src"}
        assert evs[0]["to"] == {"db": "rn", "coll": "dst"}
        quiet(dbs)
        # a stream on the target is invalidated by the rename onto it
        assert [e["operationType"] for e in drain(on_target, 2)] == ["rename", "invalidate"]
        assert [e["operationType"] for e in drain(on_source, 2)] == ["rename", "invalidate"]
    assert sorted(d["_id"] for d in db.dst.find()) == [1, 2, 3]
    assert "src" not in db.list_collection_names()


@pytest.mark.replset_only
def test_rename_across_databases_copies_renames_and_drops(client):
    src, dst = client.rn_a, client.rn_b
    src.c.insert_many([{"_id": 2}, {"_id": 3, "p": 3}])
    dst.c.insert_one({"_id": 0})
    with client.watch(max_await_time_ms=100) as cluster, \
            src.watch(max_await_time_ms=100) as on_src_db, \
            dst.c.watch(max_await_time_ms=100) as on_target:
        client.admin.command("renameCollection", "rn_a.c", to="rn_b.c", dropTarget=True)
        evs = drain(cluster, 4)
        quiet(cluster)
        assert [e["operationType"] for e in evs] == ["insert", "insert", "rename", "drop"]
        tmp = evs[0]["ns"]["coll"]
        assert TMP.match(tmp), tmp
        assert evs[0]["ns"]["db"] == "rn_b" and evs[0]["documentKey"] == {"_id": 2}
        assert evs[1]["ns"] == {"db": "rn_b", "coll": tmp} and evs[1]["fullDocument"] == {
            "_id": 3, "p": 3}
        assert evs[2]["ns"] == {"db": "rn_b", "coll": tmp}
        assert evs[2]["to"] == {"db": "rn_b", "coll": "c"}
        assert evs[3]["ns"] == {"db": "rn_a", "coll": "c"}
        # no drop event for the target that dropTarget replaced
        assert not any(e["operationType"] == "drop" and e["ns"]["db"] == "rn_b" for e in evs)
        assert [e["operationType"] for e in drain(on_src_db, 1)] == ["drop"]
        quiet(on_src_db)
        assert [e["operationType"] for e in drain(on_target, 2)] == ["rename", "invalidate"]
    assert sorted(d["_id"] for d in dst.c.find()) == [2, 3]
    assert "c" not in src.list_collection_names()
    assert [n for n in dst.list_collection_names() if TMP.match(n)] == []


@pytest.mark.replset_only
def test_rename_across_databases_with_expanded_events_shows_the_create(client):
    src = client.rn_x
    src.c.insert_one({"_id": 1})
    start = client.admin.command("ping")["operationTime"]
    client.admin.command("renameCollection", "rn_x.c", to="rn_y.c")
    cur = client.admin.command("aggregate", 1, pipeline=[{"$changeStream": {
        "allChangesForCluster": True, "showExpandedEvents": True,
        "startAtOperationTime": start}}, {"$match": {"ns.db": {"$in": ["rn_x", "rn_y"]}}}],
        cursor={})["cursor"]
    evs = cur["firstBatch"]  # from the insert into the source (the start is inclusive)
    assert [e["operationType"] for e in evs] == ["insert", "create", "insert", "rename", "drop"]
    assert TMP.match(evs[1]["ns"]["coll"]) and evs[1]["ns"]["db"] == "rn_y"


def test_rename_onto_an_existing_target_needs_drop_target(client):
    import pymongo
    client.rn_c.a.insert_one({"_id": 1})
    client.rn_c.b.insert_one({"_id": 2})
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        client.admin.command("renameCollection", "rn_c.a", to="rn_c.b")
    assert exc.value.code == 48
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        client.rn_c.command("renameCollection", "rn_c.a", to="rn_c.z")
    assert exc.value.code == 13  # admin only, as on mongod
