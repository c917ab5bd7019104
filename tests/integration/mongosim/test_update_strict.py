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


# --------------------------------------------------------------------------- _id rules


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
