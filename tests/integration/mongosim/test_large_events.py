"""tests/integration/mongosim/test_large_events.py - change events too large for BSON, as on
MongoDB: an event over BSONObjMaxInternalSize (16 MiB + 16 KiB) fails the stream with
BSONObjectTooLarge (10334), again on every resume before it; an event a 16 MiB document
makes alone still fits; $changeStreamSplitLargeEvent (7.0, or 6.0.9) returns fragments with
splitEvent {fragment, of} and fragment resume tokens."""

import bson
import pymongo
import pytest
from bson.son import SON

MIB = 1024 * 1024


def open_stream(db, coll, pipeline, **opts):
    """open_stream runs the aggregate of a collection stream; returns its cursor document."""
    cursor = {"batchSize": opts.pop("batchSize")} if "batchSize" in opts else {}
    return db.command("aggregate", coll, pipeline=[{"$changeStream": dict(opts)}] + pipeline,
                      cursor=cursor)["cursor"]


def get_more(db, coll, cid, max_time_ms=500):
    return db.command(SON([("getMore", bson.Int64(cid)), ("collection", coll),
                           ("maxTimeMS", max_time_ms)]))["cursor"]


def drain(db, coll, cursor, n):
    """drain returns the next n events of a raw stream cursor (firstBatch first)."""
    out = list(cursor.get("firstBatch", []))
    cid = cursor["id"]
    for _ in range(50):
        if len(out) >= n:
            break
        out += get_more(db, coll, cid)["nextBatch"]
    assert len(out) >= n, f"only {len(out)} of {n} events"
    return out


@pytest.fixture
def big(mongosim_factory):
    server = mongosim_factory()
    client = server.client(retryWrites=False)
    yield client
    client.close()


def seed_update(db):
    """seed_update writes a 12 MiB document (its insert event fits) and an update that
    sets a 9 MiB field: that event with updateLookup carries ~24 MiB (updateDescription +
    fullDocument). Returns the time of the insert (startAtOperationTime is inclusive): the
    insert's own operationTime, as a later read's may already be a no-op of another shard's."""
    start = db.command("insert", "c", documents=[
        {"_id": 1, "x": "x" * (6 * MIB), "y": "y" * (6 * MIB)}])["operationTime"]
    db.c.update_one({"_id": 1}, {"$set": {"y": "z" * (9 * MIB)}})
    db.c.insert_one({"_id": 2, "after": True})
    return start


def read_until_error(db, coll, pipeline, n, **opts):
    """read_until_error opens a stream and reads up to n events; returns (events, error)
    where error is the OperationFailure that ended it (None when n arrived). The error may
    come from the aggregate itself: mongod serializes the first batch's events there."""
    out = []
    try:
        cur = open_stream(db, coll, pipeline, **opts)
        out += cur["firstBatch"]
        for _ in range(20):
            if len(out) >= n:
                break
            out += get_more(db, coll, cur["id"])["nextBatch"]
    except pymongo.errors.OperationFailure as e:
        return out, e
    return out, None


def test_event_over_the_bson_limit_fails_the_stream(big):
    db = big.big
    start = seed_update(db)
    for attempt in range(2):
        # the insert of the 12 MiB document fits; the update's event does not,
        # on every attempt from before it
        evs, err = read_until_error(db, "c", [], 3, fullDocument="updateLookup",
                                    startAtOperationTime=start)
        assert err is not None and err.code == 10334, (attempt, evs)
        assert err.details["codeName"] == "BSONObjectTooLarge"
        assert "16793600" in err.details["errmsg"]
        assert "ResumableChangeStreamError" not in err.details.get("errorLabels", [])
        # on a replica set the batch with it fails whole; through a router the
        # insert may come in an earlier batch, the update never does
        assert [e["operationType"] for e in evs] in ([], ["insert"])
    # from a getMore the cursor is gone after the error
    cur = open_stream(db, "c", [], fullDocument="updateLookup", batchSize=1)
    db.c.update_one({"_id": 1}, {"$set": {"y": "w" * (9 * MIB)}})
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        # a router returns the event only once every shard's high-water mark
        # passed it (an idle shard's no-op), so empty batches may come first
        for _ in range(20):
            assert get_more(db, "c", cur["id"])["nextBatch"] == []
    assert exc.value.code == 10334
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        get_more(db, "c", cur["id"])
    assert exc.value.code == 43


def test_pymongo_does_not_resume_past_it(big):
    db = big.big
    with db.c.watch(full_document="updateLookup", max_await_time_ms=200) as s:
        seed_update(db)
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            for _ in range(10):
                s.try_next()
    assert exc.value.code == 10334


def test_projecting_the_large_fields_away_avoids_it(big):
    db = big.big
    start = seed_update(db)
    evs, err = read_until_error(db, "c", [{"$project": {"fullDocument": 0}}], 3,
                                fullDocument="updateLookup", startAtOperationTime=start)
    assert err is None
    assert [e["operationType"] for e in evs] == ["insert", "update", "insert"]
    assert "fullDocument" not in evs[1]


def test_pre_and_post_images_together_are_too_large(big):
    db = big.big
    db.create_collection("img", changeStreamPreAndPostImages={"enabled": True})
    db.img.insert_one({"_id": 1, "v": "a" * (9 * MIB)})
    start = db.command("update", "img", updates=[
        {"q": {"_id": 1}, "u": {"v": "b" * (9 * MIB)}}])["operationTime"]
    evs, err = read_until_error(db, "img", [], 1, startAtOperationTime=start,
                                fullDocumentBeforeChange="required")
    assert err is not None and err.code == 10334
    # each image alone fits
    evs, err = read_until_error(db, "img", [], 1, startAtOperationTime=start)
    assert err is None
    assert evs[0]["operationType"] == "replace" and len(evs[0]["fullDocument"]["v"]) == 9 * MIB


def test_a_full_16_mib_document_still_fits(big):
    # BSONObjMaxInternalSize leaves 16 KiB over the 16 MiB document limit, so
    # the insert event of the largest document MongoDB accepts is delivered
    db = big.big
    pad = 16 * MIB - len(bson.encode({"_id": 7, "p": ""}))
    doc = {"_id": 7, "p": "p" * pad}
    assert len(bson.encode(doc)) == 16 * MIB
    cur = open_stream(db, "max", [])
    db.max.insert_one(doc)
    ev = drain(db, "max", cur, 1)[0]
    assert len(bson.encode(ev)) > 16 * MIB
    assert ev["fullDocument"] == doc


def test_split_large_event_returns_fragments(big):
    db = big.big
    start = seed_update(db)
    pipe = [{"$changeStreamSplitLargeEvent": {}}]
    cur = open_stream(db, "c", pipe, fullDocument="updateLookup", startAtOperationTime=start)
    evs = drain(db, "c", cur, 4)
    assert evs[0]["operationType"] == "insert" and "splitEvent" not in evs[0]
    evs = evs[1:]
    ops = [(e.get("operationType"), e.get("splitEvent")) for e in evs]
    # the update came as two fragments: the small fields and updateDescription
    # (9 MiB) first, then fullDocument (15 MiB)
    assert ops[0] == ("update", {"fragment": 1, "of": 2})
    assert evs[1]["splitEvent"] == {"fragment": 2, "of": 2}
    assert "fullDocument" in evs[1] and "fullDocument" not in evs[0]
    assert "updateDescription" in evs[0] and "operationType" not in evs[1]
    assert evs[2]["operationType"] == "insert" and "splitEvent" not in evs[2]
    for e in evs[:2]:
        assert len(bson.encode(e)) <= 16 * MIB + 8 * 1024
    merged = {k: v for e in evs[:2] for k, v in e.items() if k not in ("_id", "splitEvent")}
    assert merged["fullDocument"]["y"] == "z" * (9 * MIB)
    assert merged["updateDescription"]["updatedFields"]["y"] == "z" * (9 * MIB)
    tokens = [e["_id"]["_data"] for e in evs[:3]]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    # resuming after the first fragment returns the second; after the last,
    # the next event
    again = drain(db, "c", open_stream(db, "c", pipe, fullDocument="updateLookup",
                                       resumeAfter=evs[0]["_id"]), 2)
    assert again[0]["splitEvent"] == {"fragment": 2, "of": 2}
    assert again[0]["_id"] == evs[1]["_id"] and again[1]["_id"] == evs[2]["_id"]
    after = drain(db, "c", open_stream(db, "c", pipe, fullDocument="updateLookup",
                                       resumeAfter=evs[1]["_id"]), 1)
    assert after[0]["_id"] == evs[2]["_id"]


def test_split_stage_rules(big):
    db = big.big
    start = seed_update(db)
    ev = drain(db, "c", open_stream(db, "c", [{"$changeStreamSplitLargeEvent": {}}],
                                    fullDocument="updateLookup", startAtOperationTime=start), 3)[1]
    assert ev["splitEvent"]["fragment"] == 1
    # a fragment token needs the stage to resume
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        open_stream(db, "c", [], fullDocument="updateLookup", resumeAfter=ev["_id"])
    assert exc.value.code == 280
    # resuming from a fragment with a pipeline that no longer splits the event
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        drain(db, "c", open_stream(db, "c", [{"$changeStreamSplitLargeEvent": {}}],
                                   resumeAfter=ev["_id"]), 1)
    assert exc.value.code == 280
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        open_stream(db, "c", [{"$changeStreamSplitLargeEvent": {}}, {"$match": {}}])
    assert exc.value.code == 7182802
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        open_stream(db, "c", [{"$changeStreamSplitLargeEvent": {"x": 1}}])
    assert exc.value.code == 7182800
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("aggregate", "c", pipeline=[{"$changeStreamSplitLargeEvent": {}}], cursor={})
    assert exc.value.code == 20


def test_no_split_stage_on_6_0(mongosim_factory):
    client = mongosim_factory("--server-version", "6.0").client()
    try:
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            open_stream(client.v6, "c", [{"$changeStreamSplitLargeEvent": {}}])
        assert exc.value.code == 40324
    finally:
        client.close()
