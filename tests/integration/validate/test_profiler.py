"""Integration: `migrate validate --shadow-from-profiler` takes the find
commands recorded in the source's system.profile and shadow-reads them.

Against a real MongoDB (MIGRATE_TEST_MONGODB_URI) the profiler records the
finds this test runs; mongosim has no profiler, so there the test writes
entries shaped like MongoDB's (op "query", ns, command {find, filter, sort,
limit}, ts) into system.profile itself.
"""

import datetime
import os

import bson
from bson.int64 import Int64
from bson.raw_bson import RawBSONDocument


def mongo_uri(client):
    host, port = client.address
    return f"mongodb://{host}:{port}/"


def test_profiler_finds_are_shadow_read(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    db["orders"].insert_many([{"_id": i, "status": "open" if i % 3 else "done", "total": i * 10}
                              for i in range(40)])
    uri = mongo_uri(mongo)
    assert migrate("init", "--source", uri, "--target", postgres.uri, "--include",
                   f"{dbname}.*").rc == 0
    assert migrate("sync", "--source", uri, "--target", postgres.uri).rc == 0
    finds = [({"status": "open"}, None, 0), ({"total": {"$gte": 200}}, [("total", -1)], 5),
             ({"$where": "true"}, None, 0)]
    if os.environ.get("MIGRATE_TEST_MONGODB_URI"):
        db.command("profile", 2)
        for flt, sort, limit in finds:
            list(db["orders"].find(flt, sort=sort, limit=limit))
        db.command("profile", 0)
    else:
        now = datetime.datetime.now(datetime.timezone.utc)
        entries = []
        for k, (flt, sort, limit) in enumerate(finds):
            cmd = {"find": "orders", "filter": flt}
            if sort:
                cmd["sort"] = dict(sort)
            if limit:
                cmd["limit"] = Int64(limit)
            entries.append({"op": "query", "ns": f"{dbname}.orders", "command": cmd,
                            "ts": now + datetime.timedelta(seconds=k)})
        # raw BSON: pymongo 3.11 refuses '$' keys in dicts
        db["system.profile"].insert_many([RawBSONDocument(bson.encode(e)) for e in entries])
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--shadow-from-profiler",
                "--json")
    assert r.rc == 0, r
    rep = r.json()
    by_status = {}
    for s in rep["shadow"]:
        assert s["ns"] == f"{dbname}.orders"
        by_status.setdefault(s["status"], []).append(s)
    assert len(by_status["match"]) == 2, rep["shadow"]
    assert [s["reason"] for s in by_status["not_translated"]] == [
        "not translated: operator $where"]
    counts = sorted(s["pg_count"] for s in by_status["match"])
    assert counts == [5, 26]
