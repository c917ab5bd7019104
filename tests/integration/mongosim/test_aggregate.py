"""tests/integration/mongosim/test_aggregate.py - aggregation stages used by the migrator
(census by $type, $bucketAuto partitioning on _id, $collStats) and the common ones."""

import bson
import pymongo
import pytest


@pytest.fixture
def coll(msim_client, dbname):
    c = msim_client[dbname].agg
    docs = []
    for i in range(100):
        v = [i, str(i), float(i), None, {"n": i}][i % 5]
        docs.append({"_id": i, "v": v, "g": i % 4, "n": i, "arr": [i, i + 1]})
    c.insert_many(docs)
    return c


def test_match_sort_skip_limit_project(coll):
    out = list(coll.aggregate([{"$match": {"g": 1}}, {"$sort": {"n": -1}}, {"$skip": 2},
                               {"$limit": 3}, {"$project": {"_id": 0, "n": 1, "twice": {"$add": ["$n", "$n"]}}}]))
    assert out == [{"n": 89, "twice": 178}, {"n": 85, "twice": 170}, {"n": 81, "twice": 162}]


def test_group_by_type_for_census(coll):
    out = list(coll.aggregate([{"$group": {"_id": {"$type": "$v"}, "count": {"$sum": 1},
                                           "minId": {"$min": "$_id"}, "maxId": {"$max": "$_id"}}},
                               {"$sort": {"_id": 1}}]))
    assert out == [
        {"_id": "double", "count": 20, "minId": 2, "maxId": 97},
        {"_id": "int", "count": 20, "minId": 0, "maxId": 95},
        {"_id": "null", "count": 20, "minId": 3, "maxId": 98},
        {"_id": "object", "count": 20, "minId": 4, "maxId": 99},
        {"_id": "string", "count": 20, "minId": 1, "maxId": 96},
    ]
    missing = list(coll.aggregate([{"$group": {"_id": {"$type": "$nope"}, "c": {"$sum": 1}}}]))
    assert missing == [{"_id": "missing", "c": 100}]


def test_group_accumulators(coll):
    out = list(coll.aggregate([{"$group": {"_id": "$g", "sum": {"$sum": "$n"}, "avg": {"$avg": "$n"},
                                           "first": {"$first": "$n"}, "last": {"$last": "$n"},
                                           "c": {"$sum": 1}}}, {"$sort": {"_id": 1}}]))
    assert out[0] == {"_id": 0, "sum": sum(range(0, 100, 4)), "avg": 48.0, "first": 0,
                      "last": 96, "c": 25}
    assert len(out) == 4


def test_bucket_auto_on_id_partitions_everything(coll):
    out = list(coll.aggregate([{"$bucketAuto": {"groupBy": "$_id", "buckets": 7}}]))
    assert len(out) == 7
    assert sum(b["count"] for b in out) == 100
    assert out[0]["_id"]["min"] == 0 and out[-1]["_id"]["max"] == 99
    for prev, nxt in zip(out, out[1:]):
        assert prev["_id"]["max"] == nxt["_id"]["min"]  # contiguous, no overlap
    # the ranges [min, max) cover every document exactly once
    total = 0
    for i, b in enumerate(out):
        hi = {"$lte" if i == len(out) - 1 else "$lt": b["_id"]["max"]}
        total += coll.count_documents({"_id": {"$gte": b["_id"]["min"], **hi}})
    assert total == 100
    # the same buckets when the input is not in _id order
    shuffled = list(coll.aggregate([{"$sort": {"n": -1}},
                                    {"$bucketAuto": {"groupBy": "$_id", "buckets": 7}}]))
    assert shuffled == out
    by_field = list(coll.aggregate([{"$bucketAuto": {"groupBy": "$g", "buckets": 2}}]))
    assert [b["count"] for b in by_field] == [50, 50]
    assert by_field[0]["_id"] == {"min": 0, "max": 2}


def test_coll_stats_stage(coll):
    out = list(coll.aggregate([{"$collStats": {"storageStats": {}, "count": {}}}]))
    assert len(out) == 1
    st = out[0]["storageStats"]
    assert st["count"] == 100 and st["size"] > 0 and st["avgObjSize"] > 0
    assert st["storageSize"] >= st["size"]
    assert out[0]["count"]["count"] == 100


def test_count_sample_unwind_addfields(coll):
    assert list(coll.aggregate([{"$match": {"g": 2}}, {"$count": "k"}])) == [{"k": 25}]
    sample = list(coll.aggregate([{"$sample": {"size": 10}}]))
    assert len(sample) == 10 and len({d["_id"] for d in sample}) == 10
    unwound = list(coll.aggregate([{"$match": {"_id": 3}}, {"$unwind": "$arr"},
                                   {"$project": {"arr": 1}}]))
    assert unwound == [{"_id": 3, "arr": 3}, {"_id": 3, "arr": 4}]
    added = list(coll.aggregate([{"$match": {"_id": 1}}, {"$addFields": {"x": "$g", "n": 0}},
                                 {"$project": {"_id": 0, "x": 1, "n": 1}}]))
    assert added == [{"n": 0, "x": 1}]


def test_aggregate_cursor_batches(coll):
    cur = coll.aggregate([{"$sort": {"_id": -1}}], batchSize=7)
    assert [d["_id"] for d in cur] == list(range(99, -1, -1))


def test_unknown_stage_and_errors(coll, msim_client, dbname):
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        list(coll.aggregate([{"$frobnicate": {}}]))
    assert exc.value.code == 40324 and "$frobnicate" in str(exc.value)
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        list(coll.aggregate([{"$out": "x"}]))
    assert exc.value.code == 115
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        msim_client[dbname].command("aggregate", "agg", pipeline=[])
    assert exc.value.code == 9  # cursor option required
