"""tests/integration/randomized/probe.py - what the source server supports, and where it is lax.

`capabilities(uri)` tries each optional update feature the generators can
use (gen.OPTIONAL_CAPS) on a scratch database and returns (caps, lacks):
the generators use only what the server has, and the run prints what it
lacks, so a missing feature in mongosim is reported, never silently
worked around.

`differences(uri)` checks behaviours where mongosim must be as strict as
MongoDB for this test to mean something; each entry it returns is a way the
server differs from MongoDB's documented behaviour.
"""

import time
import uuid

import pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON

import bsonx as B


def _scratch(client):
    return client["rzprobe_" + uuid.uuid4().hex[:8]]


def _update(db, filt, upd, **kw):
    body = {"q": filt, "u": upd, "upsert": kw.get("upsert", False), "multi": False}
    if "arrayFilters" in kw:
        body["arrayFilters"] = kw["arrayFilters"]
    r = db.command(SON([("update", "p"), ("updates", [body])]))
    if r.get("writeErrors"):
        raise pymongo.errors.OperationFailure(r["writeErrors"][0].get("errmsg"),
                                              r["writeErrors"][0].get("code"))
    return r


PROBES = {
    "array_filters": (lambda db: _update(db, {"_id": 1}, {"$set": {"arr.$[e]": 9}},
                                         arrayFilters=[{"e": {"$gte": 2}}]),
                      {"arr": [1, 9, 9]}),
    "pipeline_update": (lambda db: _update(db, {"_id": 1}, [{"$set": {"m": {"$add": ["$n", 1]}}}]),
                        {"m": 6}),
    "bit": (lambda db: _update(db, {"_id": 1}, {"$bit": {"n": {"or": 2}}}), {"n": 7}),
    "push_sort": (lambda db: _update(db, {"_id": 1},
                                     {"$push": {"arr": {"$each": [0], "$sort": -1}}}),
                  {"arr": [3, 2, 1, 0]}),
    "positional_all": (lambda db: _update(db, {"_id": 1}, {"$inc": {"arr.$[]": 1}}),
                       {"arr": [2, 3, 4]}),
    "positional": (lambda db: _update(db, {"_id": 1, "arr": 2}, {"$set": {"arr.$": 7}}),
                   {"arr": [1, 7, 3]}),
}


def capabilities(uri):
    """capabilities returns (set of OPTIONAL_CAPS the server has, sorted list it lacks)."""
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
    db = _scratch(client)
    caps, lacks = set(), []
    try:
        for name, (run, want) in PROBES.items():
            db["p"].delete_many({})
            db["p"].insert_one({"_id": 1, "arr": [1, 2, 3], "n": 5})
            try:
                run(db)
                got = db["p"].find_one({"_id": 1})
                ok = all(got.get(k) == v for k, v in want.items())
            except pymongo.errors.PyMongoError:
                ok = False
            (caps.add(name) if ok else lacks.append(name))
    finally:
        client.drop_database(db.name)
        client.close()
    return caps, sorted(lacks)


def differences(uri):
    """differences returns lines naming where the server is not as strict as MongoDB."""
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
    db = _scratch(client)
    out = []
    try:
        # an upsert replacement without _id takes the _id of the query's equality,
        # {_id: {$eq: X}} included (MongoDB: update's "extract equality" rules)
        db.command(SON([("update", "u"), ("updates", [
            {"q": {"_id": {"$eq": 41}}, "u": {"x": 1}, "upsert": True},
            {"q": {"_id": {"k": 1}}, "u": {"x": 2}, "upsert": True}])]))
        ids = sorted(str(d["_id"]) for d in db["u"].find())
        if ids != sorted(["41", "{'k': 1}"]):
            out.append(f"replacement upserts with filters {{_id: {{$eq: 41}}}} and "
                       f"{{_id: {{k: 1}}}} inserted _ids {ids}; MongoDB uses 41 and {{k: 1}}")
        # MongoDB refuses documents nested deeper than 100 levels
        v = B.i32(1)
        for _ in range(101):
            v = B.doc(("d", v))
        try:
            db["d"].insert_one(RawBSONDocument(B.encode(B.doc(("_id", B.i32(1)), ("d", v)))))
            out.append("a document nested 102 levels deep was accepted; MongoDB refuses "
                       "more than 100")
        except pymongo.errors.PyMongoError:
            pass
        # an _id is immutable byte for byte: {b: 2} -> {b: NumberDecimal(2)} is refused
        db["i"].insert_one({"_id": {"b": 2}})
        r = db.command(SON([("update", "i"), ("updates", [
            {"q": {"_id": {"b": 2}}, "u": {"_id": {"b": __import__("bson").Decimal128("2")}}}])]))
        if not r.get("writeErrors"):
            out.append("a replacement changing _id {b: 2} to {b: NumberDecimal(2)} was accepted; "
                       "MongoDB refuses it (66 ImmutableField)")
        # binary subtype 2 whose inner length disagrees with its size is not valid BSON
        bad = B.doc(("_id", (B.BINARY, 2, b"\x00" * 16)), ("x", B.i32(1)))
        r = db.command(SON([("insert", "b"), ("documents", [RawBSONDocument(B.encode(bad))])]))
        if not r.get("writeErrors"):
            raw = db.get_collection("b", codec_options=CodecOptions(
                document_class=RawBSONDocument)).find_one()
            keys = [k for k, _ in B.decode(raw.raw)[1]]
            out.append(f"an old-binary (subtype 2) _id whose inner length is wrong was accepted "
                       f"and stored with the fields {keys} (libbson cannot iterate the value, "
                       f"so the _id was not found and a second one was generated)")
        # the bytes of code and DBPointer strings after a NUL, and the order of regex
        # options, survive in the change event's documentKey and through a replacement
        raw_coll = db.get_collection("n", codec_options=CodecOptions(
            document_class=RawBSONDocument))
        vals = [(B.CODE, b"a\x00b"), (B.DBPOINTER, b"n\x00s", b"\x01" * 12),
                (B.REGEX, b"x", b"ui")]
        stream = raw_coll.watch(max_await_time_ms=500)
        for i, v in enumerate(vals):
            top = B.doc(("_id", v), ("i", B.i32(i)))
            nested = B.doc(("_id", B.doc(("k", v), ("i", B.i32(i)))))
            db.command("insert", "n", documents=[RawBSONDocument(B.encode(top)),
                                                 RawBSONDocument(B.encode(nested))])
            db.command("update", "n", updates=[{"q": {"_id": RawBSONDocument(B.encode(
                B.get(nested, "_id")))}, "u": {}}])
        events = []
        deadline = time.monotonic() + 5
        while len(events) < 3 * len(vals) and time.monotonic() < deadline:
            ev = stream.try_next()
            if ev is not None:
                events.append(B.decode(ev.raw))
        stream.close()
        for ev in events:
            key = B.get(B.get(ev, "documentKey"), "_id")
            full = B.get(ev, "fullDocument")
            if full is not None and full[0] == B.DOC and B.get(full, "_id") != key:
                out.append(f"the documentKey of an {B.show(B.get(ev, 'operationType'))} event "
                           f"is {B.show(key)}, the document's _id {B.show(B.get(full, '_id'))}")
        for ev in events:
            key = B.get(B.get(ev, "documentKey"), "_id")
            if key[0] == B.DOC and B.get(key, "k") not in vals:
                out.append(f"the documentKey of a {B.show(B.get(ev, 'operationType'))} event is "
                           f"{B.show(key)}, not the stored _id")
        for d in raw_coll.find():
            _id = B.get(B.decode(d.raw), "_id")
            if _id[0] == B.DOC and B.get(_id, "k") not in vals:
                out.append(f"a replacement without _id ({{}}) rewrote the stored _id to "
                           f"{B.show(_id)}")
        # an empty timestamp in a top-level field is set to the current time on insert
        db["t"].insert_one({"_id": 1, "ts": __import__("bson").Timestamp(0, 0)})
        ts = db["t"].find_one({"_id": 1})["ts"]
        if ts.time == 0:
            out.append("Timestamp(0, 0) in a top-level field was stored as is; MongoDB "
                       "replaces it with the current time on insert")
    finally:
        client.drop_database(db.name)
        client.close()
    return out
