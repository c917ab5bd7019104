"""tests/integration/mongosim/test_crud.py - CRUD through pymongo: every BSON type byte-exact
(the BSON corpus valid cases of MongoDB's specifications are the source of truth), bulk
semantics, updates, findAndModify, cursors across many batches, catalog commands."""

import datetime
import re
import struct
import subprocess
import time
import uuid

import bson
import pymongo
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON

from mgharness import build_path
from msim_service import op_msg, raw_connect, read_reply

RAW = CodecOptions(document_class=RawBSONDocument)


def with_id(raw, id_value):
    """with_id returns the BSON document raw with an int32 _id element put first.

    The corpus's "All BSON types" documents have an ObjectId _id as their first element;
    it gives way to the test's (a server refuses a document with two _id fields).
    """
    elements = raw[4:-1]
    if elements.startswith(b"\x07_id\x00"):
        elements = elements[5 + 12:]
    body = b"\x10_id\x00" + struct.pack("<i", id_value) + elements + b"\x00"
    return struct.pack("<i", 4 + len(body)) + body


def corpus_cases():
    """corpus_cases yields (file, index, case) for every valid case of the BSON corpus.

    The cases are the project's own vectors (tests/unit/schema/bson_corpus_valid.h,
    generated from MongoDB's bson-corpus), printed by mg_schema_tool, so the test
    needs nothing outside the repository.
    """
    out = subprocess.run([build_path("tests", "bin", "mg_schema_tool"), "corpus"],
                         capture_output=True, text=True, check=True).stdout
    for i, line in enumerate(out.splitlines()):
        hexdoc, where = line.split("\t", 1)
        fname, description = where.split(": ", 1)
        yield fname, i, {"canonical_bson": hexdoc, "description": description}


def test_bson_corpus_round_trip_is_byte_exact(msim_client, dbname):
    coll = msim_client[dbname].get_collection("corpus", codec_options=RAW)
    checked = 0
    for i, (fname, n, case) in enumerate(corpus_cases()):
        raw = bytes.fromhex(case["canonical_bson"])
        doc = with_id(raw, i)
        coll.insert_one(RawBSONDocument(doc))
        got = coll.find_one({"_id": i})
        assert got is not None, (fname, case["description"])
        assert got.raw == doc, (fname, case["description"])
        checked += 1
    assert checked > 300
    assert coll.count_documents({}) == checked


def test_bson_corpus_values_match_themselves(msim_client, dbname):
    """a document used as a filter finds itself: equality of every value type."""
    coll = msim_client[dbname].get_collection("corpus", codec_options=RAW)
    checked = 0
    for i, (fname, n, case) in enumerate(corpus_cases()):
        raw = bytes.fromhex(case["canonical_bson"])
        if b"$" in raw:
            continue  # a field starting with $ in a filter is an operator by definition
        if "Dotted key" in case["description"] or "Dot as key" in case["description"]:
            continue  # a dotted key in a filter is a path, as on a real server
        doc = with_id(raw, i)
        coll.insert_one(RawBSONDocument(doc))
        # the find command (not Cursor, which inflates the filter in Python)
        reply = msim_client[dbname].command(
            SON([("find", "corpus"), ("filter", RawBSONDocument(doc))]), codec_options=RAW)
        found = [d.raw for d in reply["cursor"]["firstBatch"]]
        assert found == [doc], (fname, case["description"])
        checked += 1
    assert checked > 250


def test_every_bson_type_through_pymongo(msim_client, dbname):
    doc = {
        "_id": bson.ObjectId(),
        "double": 1.5, "string": "héllo", "doc": {"a": {"b": [1, 2]}}, "array": [1, "a", None],
        "binary": bson.Binary(b"\x00\x01", 0), "uuid": bson.Binary(uuid.uuid4().bytes, 4),
        "oid": bson.ObjectId(), "bool": True,
        "date": datetime.datetime(2020, 1, 2, 3, 4, 5, 678000), "null": None,
        "regex": bson.Regex("^a.*b$", "i"), "code": bson.Code("function(){}"),
        "codews": bson.Code("x", {"x": 1}), "int32": 42, "ts": bson.Timestamp(5, 6),
        "int64": bson.Int64(1 << 40), "dec": bson.Decimal128("1.10"),
        "minkey": bson.MinKey(), "maxkey": bson.MaxKey(),
    }
    coll = msim_client[dbname].types
    coll.insert_one(doc)
    raw = coll.with_options(codec_options=RAW).find_one({"_id": doc["_id"]}).raw
    assert raw == bson.encode(doc)
    for key, value in doc.items():
        if key in ("regex",):
            continue  # a regex value in a filter is a pattern match, tested elsewhere
        assert coll.count_documents({key: value}) == 1, key


def test_insert_generates_id_first(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_one(RawBSONDocument(bson.encode({"a": 1, "_id": 5})))
    raw = coll.with_options(codec_options=RAW).find_one({"_id": 5}).raw
    assert list(bson.decode(raw).keys()) == ["_id", "a"]
    coll.insert_many([{"x": 1}], bypass_document_validation=False)
    assert isinstance(coll.find_one({"x": 1})["_id"], bson.ObjectId)


def test_duplicate_key_ordered_and_unordered(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_one({"_id": 1})
    with pytest.raises(pymongo.errors.BulkWriteError) as exc:
        coll.insert_many([{"_id": 0}, {"_id": 1}, {"_id": 2}], ordered=True)
    details = exc.value.details
    assert details["nInserted"] == 1
    assert details["writeErrors"][0]["index"] == 1
    assert details["writeErrors"][0]["code"] == 11000
    assert "dup key" in details["writeErrors"][0]["errmsg"]
    assert coll.count_documents({"_id": 2}) == 0
    with pytest.raises(pymongo.errors.BulkWriteError) as exc:
        coll.insert_many([{"_id": 3}, {"_id": 1}, {"_id": 4}], ordered=False)
    assert exc.value.details["nInserted"] == 2
    assert coll.count_documents({"_id": {"$in": [3, 4]}}) == 2


def test_update_operators(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_one({"_id": 1, "n": 1, "arr": [1, 2, 3], "tags": ["a"], "sub": {"x": 1}, "gone": 1})
    r = coll.update_one({"_id": 1}, {"$set": {"sub.y": 2, "new": "v"}, "$unset": {"gone": ""},
                                     "$inc": {"n": 5}, "$push": {"arr": 4},
                                     "$addToSet": {"tags": {"$each": ["a", "b"]}}})
    assert (r.matched_count, r.modified_count) == (1, 1)
    doc = coll.find_one({"_id": 1})
    assert doc == {"_id": 1, "n": 6, "arr": [1, 2, 3, 4], "tags": ["a", "b"],
                   "sub": {"x": 1, "y": 2}, "new": "v"}
    coll.update_one({"_id": 1}, {"$pull": {"arr": {"$gte": 3}}})
    assert coll.find_one({"_id": 1})["arr"] == [1, 2]
    coll.update_one({"_id": 1}, {"$pull": {"tags": "a"}, "$mul": {"n": 2}, "$max": {"m": 3},
                                 "$rename": {"new": "renamed"}})
    doc = coll.find_one({"_id": 1})
    assert doc["tags"] == ["b"] and doc["n"] == 12 and doc["m"] == 3 and doc["renamed"] == "v"
    r = coll.update_one({"_id": 1}, {"$set": {"n": 12}})
    assert (r.matched_count, r.modified_count) == (1, 0)


def test_update_replacement_upsert_multi(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_many([{"_id": i, "g": i % 2} for i in range(10)])
    r = coll.update_many({"g": 0}, {"$set": {"even": True}})
    assert (r.matched_count, r.modified_count) == (5, 5)
    r = coll.replace_one({"_id": 3}, {"replaced": 1})
    assert r.modified_count == 1
    assert coll.find_one({"_id": 3}) == {"_id": 3, "replaced": 1}
    r = coll.update_one({"_id": 100, "k": "v"}, {"$set": {"u": 1}, "$setOnInsert": {"ins": 1}},
                        upsert=True)
    assert r.upserted_id == 100 and r.matched_count == 0
    assert coll.find_one({"_id": 100}) == {"_id": 100, "k": "v", "u": 1, "ins": 1}
    r = coll.replace_one({"name": "new"}, {"name": "new", "z": 1}, upsert=True)
    assert isinstance(r.upserted_id, bson.ObjectId)


def test_update_errors(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_one({"_id": 1, "s": "text", "a": 1})
    with pytest.raises(pymongo.errors.WriteError) as exc:
        coll.update_one({"_id": 1}, {"$inc": {"s": 1}})
    assert exc.value.code == 14
    with pytest.raises(pymongo.errors.WriteError) as exc:
        coll.update_one({"_id": 1}, {"$set": {"_id": 2}})
    assert exc.value.code == 66
    with pytest.raises(pymongo.errors.WriteError) as exc:
        coll.update_one({"_id": 1}, {"$bogus": {"a": 1}})
    assert exc.value.code == 9 and "$bogus" in str(exc.value)
    with pytest.raises(pymongo.errors.WriteError) as exc:
        coll.update_one({"_id": 1}, {"$set": {"a": 1}, "$inc": {"a": 1}})
    assert exc.value.code == 40


def test_delete(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_many([{"_id": i, "v": i} for i in range(20)])
    assert coll.delete_one({"v": {"$gte": 10}}).deleted_count == 1
    assert coll.delete_many({"v": {"$gte": 10}}).deleted_count == 9
    assert coll.count_documents({}) == 10


def test_find_and_modify(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_many([{"_id": i, "v": i} for i in range(5)])
    before = coll.find_one_and_update({"v": {"$gte": 2}}, {"$inc": {"v": 10}}, sort=[("v", -1)])
    assert before == {"_id": 4, "v": 4}
    after = coll.find_one_and_update({"_id": 0}, {"$set": {"w": 1}},
                                     return_document=pymongo.ReturnDocument.AFTER,
                                     projection={"_id": 0})
    assert after == {"v": 0, "w": 1}
    gone = coll.find_one_and_delete({"_id": 1})
    assert gone == {"_id": 1, "v": 1} and coll.count_documents({}) == 4
    up = coll.find_one_and_update({"_id": 50}, {"$set": {"v": 50}}, upsert=True,
                                  return_document=pymongo.ReturnDocument.AFTER)
    assert up == {"_id": 50, "v": 50}
    assert coll.find_one_and_replace({"_id": 2}, {"r": 1}) == {"_id": 2, "v": 2}


def test_sort_skip_limit_projection(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_many([{"_id": i, "a": i % 3, "b": -i, "sub": {"x": i, "y": "s"}} for i in range(30)])
    docs = list(coll.find({}, {"_id": 1}).sort([("a", 1), ("b", -1)]).skip(2).limit(5))
    assert [d["_id"] for d in docs] == [6, 9, 12, 15, 18]
    docs = list(coll.find({"_id": {"$lt": 2}}, {"sub.x": 1, "_id": 0}))
    assert docs == [{"sub": {"x": 0}}, {"sub": {"x": 1}}]
    docs = list(coll.find({"_id": 0}, {"sub": 0, "a": 0}))
    assert docs == [{"_id": 0, "b": 0}]
    assert list(coll.find({}).sort("_id", -1).limit(1))[0]["_id"] == 29
    assert coll.find_one({}, sort=[("_id", 1)], hint=[("_id", 1)])["_id"] == 0
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        list(coll.find({}, {"a": 1, "b": 0}))
    assert exc.value.code == 31254


def test_cursor_across_many_batches(msim_client, dbname):
    coll = msim_client[dbname].c
    n = 5000
    coll.insert_many([{"_id": i, "pad": "x" * 200} for i in range(n)])
    cur = coll.find({}, batch_size=7)
    ids = [d["_id"] for d in cur]
    assert ids == list(range(n))
    # the server caps a batch at 16 MiB: big documents need several getMores
    big = msim_client[dbname].big
    big.insert_many([{"_id": i, "blob": "y" * (1 << 20)} for i in range(40)])
    assert sum(1 for _ in big.find()) == 40
    status = msim_client.admin.command("serverStatus")
    assert status["opcounters"]["getmore"] > 0


def test_get_more_and_kill_cursors_by_command(msim_client, dbname):
    db = msim_client[dbname]
    db.c.insert_many([{"_id": i} for i in range(10)])
    first = db.command("find", "c", batchSize=3)
    cid = first["cursor"]["id"]
    assert cid != 0 and len(first["cursor"]["firstBatch"]) == 3
    more = db.command("getMore", bson.Int64(cid), collection="c", batchSize=4)
    assert [d["_id"] for d in more["cursor"]["nextBatch"]] == [3, 4, 5, 6]
    killed = db.command("killCursors", "c", cursors=[bson.Int64(cid)])
    assert killed["cursorsKilled"] == [cid]
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("getMore", bson.Int64(cid), collection="c")
    assert exc.value.code == 43


def test_idle_cursor_times_out(mongosim_factory):
    server = mongosim_factory("--cursor-timeout-ms", "500")
    client = server.client()
    try:
        db = client.idle
        db.c.insert_many([{"_id": i} for i in range(10)])
        cid = db.command("find", "c", batchSize=2)["cursor"]["id"]
        time.sleep(2.5)
        with pytest.raises(pymongo.errors.OperationFailure) as exc:
            db.command("getMore", bson.Int64(cid), collection="c")
        assert exc.value.code == 43
    finally:
        client.close()


def test_count_and_distinct(msim_client, dbname):
    coll = msim_client[dbname].c
    coll.insert_many([{"_id": i, "k": i % 3, "arr": [i % 2, 9]} for i in range(12)])
    assert coll.count_documents({"k": 1}) == 4
    assert msim_client[dbname].command("count", "c")["n"] == 12
    assert sorted(coll.distinct("k")) == [0, 1, 2]
    assert sorted(coll.distinct("arr")) == [0, 1, 9]
    assert coll.estimated_document_count() == 12


def test_catalog_commands(msim_client, dbname):
    db = msim_client[dbname]
    db.create_collection("one")
    with pytest.raises(pymongo.errors.CollectionInvalid):
        db.create_collection("one")
    db.two.insert_one({"a": 1})
    assert sorted(db.list_collection_names()) == ["one", "two"]
    assert dbname in msim_client.list_database_names()
    db.two.create_index([("a", 1)], name="a_1")
    names = [ix["name"] for ix in db.two.list_indexes()]
    assert names == ["_id_", "a_1"]
    db.two.drop_index("a_1")
    assert [ix["name"] for ix in db.two.list_indexes()] == ["_id_"]
    msim_client.admin.command("renameCollection", f"{dbname}.two", to=f"{dbname}.three")
    assert sorted(db.list_collection_names()) == ["one", "three"]
    assert db.three.find_one()["a"] == 1
    db.drop_collection("one")
    assert db.list_collection_names() == ["three"]
    msim_client.drop_database(dbname)
    assert dbname not in msim_client.list_database_names()


def test_coll_stats_and_db_stats(msim_client, dbname):
    db = msim_client[dbname]
    db.c.insert_many([{"_id": i, "pad": "z" * 100} for i in range(50)])
    st = db.command("collStats", "c")
    assert st["count"] == 50 and st["size"] > 50 * 100
    assert st["avgObjSize"] == st["size"] // 50 and st["storageSize"] >= st["size"]
    ds = db.command("dbStats")
    assert ds["objects"] == 50 and ds["collections"] == 1 and ds["dataSize"] == st["size"]


def test_invalid_names_and_arguments(mongosim, msim_client, dbname):
    db = msim_client[dbname]
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("insert", "bad$name", documents=[{}])
    assert exc.value.code == 73
    with raw_connect(mongosim) as sock:
        sock.sendall(op_msg({"insert": "c", "documents": "notarray", "$db": dbname}))
        _, _, reply = read_reply(sock)
    assert reply["ok"] == 0 and reply["code"] == 14 and "documents" in reply["errmsg"]
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("find", "c", filter={"a": {"$unknownOp": 1}})
    assert exc.value.code == 2 and "$unknownOp" in exc.value.details["errmsg"]
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("find", "c", filter={"$where": "1"})
    assert exc.value.code == 2
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("find", "c", skip=-1)
    assert exc.value.code == 51024
