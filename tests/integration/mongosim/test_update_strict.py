"""tests/integration/mongosim/test_update_strict.py - where mongosim must be as strict and as
exact as mongod (found by the randomized test, branch h/rand, and a review): findAndModify
with the update language's full set, values kept byte for byte (documentKey of a Code _id
with a NUL, regex option order), _id immutability (66), the _id an upsert takes from an $eq
filter, the nesting limit, empty timestamps filled in on insert, an old-binary value with a
wrong inner length, arrayFilters / positional $ / $[] / pipeline updates / $bit / $push with
$sort, and exact Decimal128 comparison. MongoDB's documented behaviour is the reference."""

import struct
import time

import bson
import pymongo
import pytest
from bson import Decimal128, Int64, Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON

RAW = CodecOptions(document_class=RawBSONDocument)


def element(type_byte, key, value):
    """element is one raw BSON element."""
    return bytes([type_byte]) + key.encode() + b"\x00" + value


def document(*elements):
    """document is a raw BSON document of the given raw elements."""
    body = b"".join(elements)
    return struct.pack("<i", 4 + len(body) + 1) + body + b"\x00"


def bstring(s):
    """bstring is a BSON string value (length, bytes, NUL): s may hold NULs."""
    return struct.pack("<i", len(s) + 1) + s + b"\x00"


def drain(stream, n, timeout=10.0):
    """drain returns the next n events of stream (fails after timeout)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        ev = stream.try_next()
        if ev is not None:
            out.append(ev)
        assert time.monotonic() < deadline, f"only {len(out)} of {n} events arrived"
    return out


def update_error(db, coll, stmt):
    """update_error runs one update statement and returns its write error (or None)."""
    r = db.command(SON([("update", coll), ("updates", [stmt])]))
    errs = r.get("writeErrors") or []
    return errs[0] if errs else None


# --------------------------------------------------------------------------- findAndModify


def test_find_and_modify_runs_the_whole_update_language(msim_client, dbname):
    coll = msim_client[dbname].fam
    coll.insert_one({"_id": 1, "a": [1, 2, 3], "b": [{"x": 1, "y": 0}, {"x": 2, "y": 0}], "n": 5})
    got = coll.find_one_and_update({"_id": 1, "b.x": 2}, {"$set": {"b.$.y": 7}},
                                   return_document=pymongo.ReturnDocument.AFTER)
    assert got["b"] == [{"x": 1, "y": 0}, {"x": 2, "y": 7}]
    got = coll.find_one_and_update({"_id": 1}, {"$inc": {"a.$[e]": 10}},
                                   array_filters=[{"e": {"$gte": 2}}],
                                   return_document=pymongo.ReturnDocument.AFTER)
    assert got["a"] == [1, 12, 13]
    got = coll.find_one_and_update({"_id": 1}, [{"$set": {"m": {"$add": ["$n", 1]}}}],
                                   return_document=pymongo.ReturnDocument.AFTER)
    assert got["m"] == 6
    # the old document comes back by default; the immutable _id is refused with 66
    before = coll.find_one_and_update({"_id": 1}, {"$bit": {"n": {"or": 2}}})
    assert before["n"] == 5 and coll.find_one({"_id": 1})["n"] == 7
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        coll.find_one_and_update({"_id": 1}, {"$set": {"_id": 2}})
    assert exc.value.code == 66
    # an upsert takes its _id from the filter's $eq
    got = coll.find_one_and_update({"_id": {"$eq": 9}}, {"$set": {"u": 1}}, upsert=True,
                                   return_document=pymongo.ReturnDocument.AFTER)
    assert got == {"_id": 9, "u": 1}


# --------------------------------------------------------------------------- exact bytes


def test_change_event_document_key_keeps_bytes_after_a_nul(msim_client, dbname):
    """a Code and a DBPointer _id hold NULs in their strings: the event's documentKey and
    the stored document keep every byte (libbson's typed appenders stop at the NUL)."""
    db = msim_client[dbname]
    coll = db.get_collection("nul", codec_options=RAW)
    code = element(0x0D, "_id", bstring(b"a\x00b"))
    dbp = element(0x0C, "_id", bstring(b"n\x00s") + b"\x01" * 12)
    docs = [document(code, element(0x10, "i", struct.pack("<i", 0))),
            document(dbp, element(0x10, "i", struct.pack("<i", 1)))]
    db.create_collection("nul")
    with coll.watch(max_await_time_ms=100) as s:
        for d in docs:
            coll.insert_one(RawBSONDocument(d))
        evs = drain(s, 2)
    for d, ev in zip(docs, evs):
        want_key = d[4:].split(b"\x10i\x00")[0]  # the _id element as sent
        assert ev.raw.find(b"documentKey") >= 0
        key = ev["documentKey"].raw
        assert key == document(want_key), (key, want_key)
        assert ev["fullDocument"].raw == d
    assert sorted(x.raw for x in coll.find()) == sorted(docs)


def test_regex_options_keep_their_order(msim_client, dbname):
    """a regex's options are stored as sent (/x/ui stays ui), through an update too."""
    coll = msim_client[dbname].get_collection("rx", codec_options=RAW)
    rx = element(0x0B, "r", b"x\x00ui\x00")
    doc = document(element(0x10, "_id", struct.pack("<i", 1)), rx)
    coll.insert_one(RawBSONDocument(doc))
    assert coll.find_one().raw == doc
    coll.update_one({"_id": 1}, {"$set": {"y": 1}})
    got = coll.find_one().raw
    assert rx in got, got


# --------------------------------------------------------------------------- _id rules


def test_id_is_immutable(msim_client, dbname):
    db = msim_client[dbname]
    db.i.insert_many([{"_id": 1}, {"_id": {"b": 2}}])
    # a modifier changing _id, even to an equal number of another type (not byte-identical)
    err = update_error(db, "i", {"q": {"_id": 1}, "u": {"$set": {"_id": Int64(1)}}})
    assert err is not None and err["code"] == 66, err
    err = update_error(db, "i", {"q": {"_id": {"b": 2}}, "u": {"$set": {"_id.b": 3}}})
    assert err is not None and err["code"] == 66, err
    # a replacement with another _id
    err = update_error(db, "i", {"q": {"_id": {"b": 2}}, "u": {"_id": {"b": 3}}})
    assert err is not None and err["code"] == 66, err
    # a byte-identical $set is a no-op, not an error
    assert update_error(db, "i", {"q": {"_id": 1}, "u": {"$set": {"_id": 1}}}) is None
    assert sorted(map(str, db.i.distinct("_id"))) == ["1", "{'b': 2}"]
    # a replacement without _id keeps the stored one byte for byte: a regex's option order
    # and a Code string's bytes after its NUL are part of it
    raw = db.get_collection("i", codec_options=RAW)
    for i, inner in enumerate([element(0x0B, "k", b"x\x00ui\x00"),
                               element(0x0D, "k", bstring(b"a\x00b"))]):
        key = element(0x03, "_id", document(inner, element(0x10, "i", struct.pack("<i", i))))
        raw.insert_one(RawBSONDocument(document(key)))
        r = db.command(SON([("update", "i"), ("updates", [
            {"q": {"_id": RawBSONDocument(document(inner, element(0x10, "i",
                                                                  struct.pack("<i", i))))},
             "u": {"r": i}}])]))
        assert r["n"] == 1 and r["nModified"] == 1, r
        assert raw.find_one({"r": i}).raw == document(key, element(0x10, "r", struct.pack("<i", i)))


def test_upsert_takes_the_id_of_an_eq_filter(msim_client, dbname):
    db = msim_client[dbname]
    db.command(SON([("update", "u"), ("updates", [
        {"q": {"_id": {"$eq": 41}}, "u": {"x": 1}, "upsert": True},
        {"q": {"_id": {"k": 1}}, "u": {"x": 2}, "upsert": True},
        {"q": {"$and": [{"_id": 43}, {"y": 5}]}, "u": {"$set": {"x": 3}}, "upsert": True}])]))
    assert sorted(db.u.find(), key=lambda d: d["x"]) == [
        {"_id": 41, "x": 1}, {"_id": {"k": 1}, "x": 2}, {"_id": 43, "y": 5, "x": 3}]


def test_nesting_deeper_than_the_storage_limit_is_refused(msim_client, dbname):
    """mongod stores at most 180 levels (BSONDepth::getMaxDepthForUserStorage, the document
    itself being the first): 180 are accepted, 181 refused with 15 Overflow, by insert and
    update alike."""
    coll = msim_client[dbname].deep

    def chain(m):
        """chain is m documents nested in one another."""
        v = 1
        for _ in range(m):
            v = {"d": v}
        return v

    coll.insert_one({"_id": 1, "d": chain(179)})  # the document and 179 levels below it
    with pytest.raises(pymongo.errors.WriteError) as exc:
        coll.insert_one({"_id": 2, "d": chain(180)})
    assert exc.value.code == 15 and "180 levels" in str(exc.value)
    coll.update_one({"_id": 1}, {"$set": {"e": chain(179)}})
    with pytest.raises(pymongo.errors.WriteError) as exc:
        coll.update_one({"_id": 1}, {"$set": {"f": chain(180)}})
    assert exc.value.code == 15
    with pytest.raises(pymongo.errors.WriteError) as exc:
        coll.replace_one({"_id": 1}, {"f": chain(180)})
    assert exc.value.code == 15
    assert coll.count_documents({}) == 1 and "f" not in coll.find_one({"_id": 1})


def test_empty_timestamps_are_filled_in_on_insert(msim_client, dbname):
    """each top-level Timestamp(0, 0) but _id gets the current cluster time (insert and
    replacement); nested ones and _id stay as they are."""
    coll = msim_client[dbname].ts
    coll.insert_one({"_id": Timestamp(0, 0), "t": Timestamp(0, 0), "n": {"t": Timestamp(0, 0)}})
    got = coll.find_one()
    assert got["_id"] == Timestamp(0, 0) and got["n"]["t"] == Timestamp(0, 0)
    assert got["t"].time > 0
    coll.replace_one({"_id": Timestamp(0, 0)}, {"t2": Timestamp(0, 0)})
    assert coll.find_one()["t2"].time > 0


def test_old_binary_with_a_wrong_inner_length_is_refused(msim_client, dbname):
    """binary subtype 2 repeats its length inside the value; when the two disagree the
    document is not valid BSON (22), and nothing is stored under a generated _id."""
    db = msim_client[dbname]
    bad = document(element(0x05, "_id", struct.pack("<i", 16) + b"\x02" + b"\x00" * 16),
                   element(0x10, "x", struct.pack("<i", 1)))
    with pytest.raises(pymongo.errors.PyMongoError) as exc:
        r = db.command(SON([("insert", "b"), ("documents", [RawBSONDocument(bad)])]))
        assert not r.get("writeErrors"), r
    assert getattr(exc.value, "code", None) == 22, exc.value
    assert db.b.count_documents({}) == 0
    good = document(element(0x05, "_id", struct.pack("<i", 20) + b"\x02" + struct.pack("<i", 16)
                            + b"\x00" * 16))
    db.command(SON([("insert", "b"), ("documents", [RawBSONDocument(good)])]))
    assert db.get_collection("b", codec_options=RAW).find_one().raw == good


# --------------------------------------------------------------------------- update language


def test_array_filters_and_positional_operators(msim_client, dbname):
    coll = msim_client[dbname].pos
    coll.insert_one({"_id": 1, "a": [1, 2, 3], "b": [{"x": 1, "v": [1, 5]}, {"x": 2, "v": [7]}]})
    coll.update_one({"_id": 1}, {"$set": {"a.$[e]": 9}}, array_filters=[{"e": {"$gte": 2}}])
    assert coll.find_one()["a"] == [1, 9, 9]
    coll.update_one({"_id": 1, "b.x": 2}, {"$set": {"b.$.y": 7}})
    coll.update_one({"_id": 1}, {"$inc": {"a.$[]": 1}})
    coll.update_one({"_id": 1}, {"$mul": {"b.$[o].v.$[i]": 10}},
                    array_filters=[{"o.x": 1}, {"i": {"$gt": 2}}])
    assert coll.find_one() == {"_id": 1, "a": [2, 10, 10],
                               "b": [{"x": 1, "v": [1, 50]}, {"x": 2, "v": [7], "y": 7}]}
    # an identifier without a filter, and a filter never used, are FailedToParse (9)
    err = update_error(msim_client[dbname], "pos",
                       {"q": {"_id": 1}, "u": {"$set": {"a.$[nope]": 0}}})
    assert err is not None and err["code"] == 2, err
    err = update_error(msim_client[dbname], "pos",
                       {"q": {"_id": 1}, "u": {"$set": {"a.0": 0}}, "arrayFilters": [{"z": 1}]})
    assert err is not None and err["code"] == 9, err
    # the positional $ without a matching array in the query is BadValue (2)
    err = update_error(msim_client[dbname], "pos", {"q": {"_id": 1}, "u": {"$set": {"a.$": 0}}})
    assert err is not None and err["code"] == 2, err


def test_pipeline_update(msim_client, dbname):
    coll = msim_client[dbname].pipe
    coll.insert_one({"_id": 1, "n": 5, "gone": True})
    coll.update_one({"_id": 1}, [{"$set": {"m": {"$add": ["$n", 1]}}}, {"$unset": "gone"}])
    assert coll.find_one() == {"_id": 1, "n": 5, "m": 6}
    err = update_error(msim_client[dbname], "pipe",
                       {"q": {"_id": 1}, "u": [{"$match": {"n": 5}}]})
    assert err is not None and err["code"] == 72, err  # InvalidOptions


def test_bit_and_push_with_sort(msim_client, dbname):
    coll = msim_client[dbname].bits
    coll.insert_one({"_id": 1, "n": 5, "l": Int64(12), "arr": [3, 1, 2],
                     "docs": [{"k": 2}, {"k": 1}]})
    coll.update_one({"_id": 1}, {"$bit": {"n": {"or": 2}, "l": {"and": 4, "xor": 1}}})
    coll.update_one({"_id": 1}, {"$push": {"arr": {"$each": [0], "$sort": -1, "$slice": 3},
                                           "docs": {"$each": [{"k": 3}], "$sort": {"k": 1}}}})
    got = coll.find_one()
    assert got["n"] == 7 and got["l"] == 5 and isinstance(got["l"], Int64)
    assert got["arr"] == [3, 2, 1] and got["docs"] == [{"k": 1}, {"k": 2}, {"k": 3}]
    err = update_error(msim_client[dbname], "bits", {"q": {"_id": 1},
                                                       "u": {"$bit": {"n": {"or": 1.5}}}})
    assert err is not None and err["code"] == 2, err  # BadValue: not an integer


# --------------------------------------------------------------------------- Decimal128


def test_decimal128_compares_exactly(msim_client, dbname):
    """a Decimal128 that differs from a number in its 34th digit is not equal to it (mongod
    compares in decimal, never through a binary floating point type)."""
    coll = msim_client[dbname].dec
    coll.insert_many([{"_id": 1, "v": Decimal128("1.000000000000000000000000000000001")},
                      {"_id": 2, "v": Decimal128("0.1")}, {"_id": 3, "v": Decimal128("1")}])
    assert [d["_id"] for d in coll.find({"v": 1})] == [3]
    assert [d["_id"] for d in coll.find({"v": {"$gt": 1}})] == [1]
    # 0.1 as a double is 0.1000000000000000055511151231257827...: not the decimal 0.1
    assert [d["_id"] for d in coll.find({"v": 0.1})] == []
    assert [d["_id"] for d in coll.find({"v": {"$lt": 0.1}})] == [2]
    assert [d["_id"] for d in coll.find().sort("v", 1)] == [2, 3, 1]
    # a double is compared as mongod's Decimal128(d, kRoundTo34Digits): 0.1 is equal to its
    # 34-digit rounding, not to the next Decimal128 up
    coll.insert_many([{"_id": 4, "v": Decimal128("0.1000000000000000055511151231257827")},
                      {"_id": 5, "v": Decimal128("0.1000000000000000055511151231257828")}])
    assert [d["_id"] for d in coll.find({"v": 0.1})] == [4]
