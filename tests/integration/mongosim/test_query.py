"""tests/integration/mongosim/test_query.py - query operators with MongoDB's array
semantics and the cross-type comparison order."""

import datetime

import bson
import pymongo
import pytest

DOCS = [
    {"_id": 1, "a": 5, "tags": ["x", "y"], "sub": {"v": 1}, "s": "apple"},
    {"_id": 2, "a": [1, 9], "tags": ["y"], "sub": [{"v": 2}, {"v": 3}], "s": "Banana"},
    {"_id": 3, "a": "5", "tags": [], "sub": {"v": None}, "s": "cherry"},
    {"_id": 4, "a": None, "sub": {"w": 1}},
    {"_id": 5, "tags": ["x", "z"], "sub": [{"v": 1, "k": "a"}, {"v": 5, "k": "b"}], "s": "apricot"},
    {"_id": 6, "a": [[1, 2], 3], "s": "date"},
]


@pytest.fixture
def coll(msim_client, dbname):
    c = msim_client[dbname].q
    c.insert_many(DOCS)
    return c


def ids(coll, flt):
    return sorted(d["_id"] for d in coll.find(flt, {"_id": 1}))


def test_equality_and_arrays(coll):
    assert ids(coll, {"a": 5}) == [1]
    assert ids(coll, {"a": 9}) == [2]           # any element
    assert ids(coll, {"a": [1, 9]}) == [2]      # whole array
    assert ids(coll, {"a": [1, 2]}) == [6]      # nested array element equals
    assert ids(coll, {"tags": "x"}) == [1, 5]
    assert ids(coll, {"tags": []}) == [3]


def test_null_matches_missing(coll):
    assert ids(coll, {"a": None}) == [4, 5]
    assert ids(coll, {"sub.v": None}) == [3, 4, 6]  # 6 has no sub at all


def test_comparison_type_bracketing(coll):
    assert ids(coll, {"a": {"$gt": 4}}) == [1, 2]   # "5" (string) is not > 4
    assert ids(coll, {"a": {"$lt": 2}}) == [2]
    assert ids(coll, {"a": {"$gte": "0"}}) == [3]
    # each condition may be met by a different element of an array
    assert ids(coll, {"a": {"$lte": 3, "$gte": 3}}) == [2, 6]
    assert ids(coll, {"a": {"$elemMatch": {"$lte": 3, "$gte": 3}}}) == [6]


def test_ne_nin_not_nor(coll):
    assert ids(coll, {"a": {"$ne": 5}}) == [2, 3, 4, 5, 6]
    assert ids(coll, {"tags": {"$nin": ["x"]}}) == [2, 3, 4, 6]
    assert ids(coll, {"a": {"$not": {"$gt": 4}}}) == [3, 4, 5, 6]
    assert ids(coll, {"$nor": [{"a": 5}, {"tags": "x"}]}) == [2, 3, 4, 6]


def test_in_exists_type(coll):
    assert ids(coll, {"a": {"$in": [9, "5"]}}) == [2, 3]
    assert ids(coll, {"s": {"$in": [bson.Regex("^ap")]}}) == [1, 5]
    assert ids(coll, {"a": {"$exists": True}}) == [1, 2, 3, 4, 6]
    assert ids(coll, {"a": {"$exists": False}}) == [5]
    assert ids(coll, {"a": {"$type": "string"}}) == [3]
    assert ids(coll, {"a": {"$type": "array"}}) == [2, 6]
    assert ids(coll, {"a": {"$type": "number"}}) == [1, 2, 6]
    assert ids(coll, {"a": {"$type": 10}}) == [4]


def test_and_or(coll):
    assert ids(coll, {"$or": [{"a": 5}, {"s": "date"}]}) == [1, 6]
    assert ids(coll, {"$and": [{"tags": "x"}, {"tags": "z"}]}) == [5]


def test_elem_match_and_size(coll):
    assert ids(coll, {"sub": {"$elemMatch": {"v": 1, "k": "a"}}}) == [5]
    assert ids(coll, {"sub": {"$elemMatch": {"v": 1, "k": "b"}}}) == []
    assert ids(coll, {"sub.v": 1, "sub.k": "b"}) == [5]  # without $elemMatch: any elements
    assert ids(coll, {"a": {"$elemMatch": {"$gt": 8}}}) == [2]
    assert ids(coll, {"tags": {"$size": 2}}) == [1, 5]
    assert ids(coll, {"tags": {"$size": 0}}) == [3]


def test_dotted_paths_through_arrays(coll):
    assert ids(coll, {"sub.v": 3}) == [2]
    assert ids(coll, {"sub.v": {"$gte": 2}}) == [2, 5]
    assert ids(coll, {"sub.0.v": 2}) == [2]
    assert ids(coll, {"a.1": 9}) == [2]


def test_regex(coll):
    assert ids(coll, {"s": {"$regex": "^a"}}) == [1, 5]
    assert ids(coll, {"s": {"$regex": "^b", "$options": "i"}}) == [2]
    assert ids(coll, {"s": bson.Regex("rr")}) == [3]
    assert ids(coll, {"s": {"$regex": "\\d"}}) == []
    assert ids(coll, {"s": {"$not": bson.Regex("^a")}}) == [2, 3, 4, 6]


def test_all_and_mod(coll):
    assert ids(coll, {"tags": {"$all": ["x", "z"]}}) == [5]
    assert ids(coll, {"a": {"$mod": [2, 1]}}) == [1, 2, 6]


def test_unsupported_operator_errors(coll):
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        list(coll.find({"a": {"$near": [0, 0]}}))
    assert exc.value.code == 2 and "$near" in str(exc.value)
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        list(coll.find({"$text": {"$search": "x"}}))
    assert exc.value.code == 2 and "$text" in str(exc.value)
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        list(coll.find({"a": {"$size": -1}}))
    assert exc.value.code == 2


def test_cross_type_sort_order(msim_client, dbname):
    values = [bson.MaxKey(), datetime.datetime(2020, 1, 1), True, bson.ObjectId(),
              bson.Binary(b"x", 0), [5], {"a": 1}, "str", 3.5, 2, None, bson.MinKey(),
              bson.Timestamp(1, 1), bson.Regex("a")]
    coll = msim_client[dbname].order
    coll.insert_many([{"_id": i, "v": v} for i, v in enumerate(values)])
    got = [d["_id"] for d in coll.find().sort("v", 1)]
    got_types = [msim_client[dbname].command(
        "aggregate", "order", pipeline=[{"$match": {"_id": i}},
                                        {"$project": {"t": {"$type": "$v"}}}],
        cursor={})["cursor"]["firstBatch"][0]["t"] for i in got]
    # MinKey < null < numbers (the array [5] sorts by its element 5) < string < object
    # < binData < objectId < bool < date < timestamp < regex < MaxKey
    assert got_types == ["minKey", "null", "int", "double", "array", "string", "object",
                         "binData", "objectId", "bool", "date", "timestamp", "regex", "maxKey"]


def test_id_types_are_ordered_and_distinct(msim_client, dbname):
    coll = msim_client[dbname].ids
    coll.insert_many([{"_id": 1}, {"_id": 1.5}, {"_id": "1"}, {"_id": bson.Int64(2)},
                      {"_id": {"x": 1}}, {"_id": bson.ObjectId()}])
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        coll.insert_one({"_id": 1.0})  # 1.0 == 1 across numeric types
    got = [type(d["_id"]).__name__ for d in coll.find()]
    assert got == ["int", "float", "Int64", "str", "dict", "ObjectId"]


def test_id_range_scans_match_a_full_scan(msim_client, dbname):
    """range filters on _id seek in the index; results equal a filter without seeking."""
    coll = msim_client[dbname].rng
    ids = list(range(0, 300, 3)) + ["a", "b", 2.5, bson.Int64(7), bson.ObjectId()]
    coll.insert_many([{"_id": i} for i in ids])
    for flt in ({"$gte": 30, "$lt": 60}, {"$gt": 30, "$lte": 60}, {"$gte": "a"},
                {"$lt": 10}, {"$gte": 2, "$lte": 8}, {"$gt": 299}, {"$lt": "b", "$gte": 0}):
        got = [d["_id"] for d in coll.find({"_id": flt})]
        # the same predicate evaluated without the _id index: $and on a copy of _id
        expected = [d["_id"] for d in coll.find({"$and": [{"_id": {"$exists": True}}]})
                    if _in(d["_id"], flt)]
        assert got == expected, flt


def _in(v, flt):
    num = isinstance(v, (int, float)) and not isinstance(v, bool)
    for op, bound in flt.items():
        bnum = isinstance(bound, (int, float))
        if num != bnum or (not num and type(v) is not type(bound)):
            return False
        if op == "$gte" and not v >= bound or op == "$gt" and not v > bound:
            return False
        if op == "$lte" and not v <= bound or op == "$lt" and not v < bound:
            return False
    return True
