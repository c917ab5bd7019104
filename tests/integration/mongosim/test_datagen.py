"""tests/integration/mongosim/test_datagen.py - tests/tools/datagen against mongosim:
deterministic generation, realistic content, and a live workload whose ack log predicts
the final state of the collection exactly."""

import json
import subprocess

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from mgharness import build_path

RAW = CodecOptions(document_class=RawBSONDocument)


def datagen(*args, timeout=120):
    r = subprocess.run([build_path("bin", "datagen"), *args], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_generate_is_deterministic(mongosim, msim_client, dbname):
    common = ["--uri", mongosim.uri, "--db", dbname, "--count", "300", "--id-type", "mixed",
              "--all-types-every", "7"]
    datagen("generate", *common, "--coll", "a", "--seed", "42")
    datagen("generate", *common, "--coll", "b", "--seed", "42")
    datagen("generate", *common, "--coll", "c", "--seed", "43")
    db = msim_client[dbname]
    a = [d.raw for d in db.get_collection("a", codec_options=RAW).find()]
    b = [d.raw for d in db.get_collection("b", codec_options=RAW).find()]
    c = [d.raw for d in db.get_collection("c", codec_options=RAW).find()]
    assert len(a) == 300 and a == b
    assert a != c


def test_generated_documents_are_realistic(mongosim, msim_client, dbname):
    out = datagen("generate", "--uri", mongosim.uri, "--db", dbname, "--coll", "r",
                  "--count", "200", "--seed", "7", "--id-type", "mixed", "--size-min", "100",
                  "--size-max", "20000", "--big-every", "100", "--big-size", str(3 << 20),
                  "--all-types-every", "10")
    assert out["generated"] == 200
    coll = msim_client[dbname].r
    sizes = [len(d.raw) for d in coll.with_options(codec_options=RAW).find()]
    assert min(sizes) >= 100 and max(sizes) >= 3 << 20
    assert sum(1 for s in sizes if s > 1 << 20) == 2
    id_types = {type(d["_id"]).__name__ for d in coll.find({}, {"_id": 1})}
    assert {"ObjectId", "Int64", "str"} <= id_types and len(id_types) >= 4
    types = msim_client[dbname].command(
        "aggregate", "r", cursor={},
        pipeline=[{"$match": {"allTypes": {"$exists": True}}}, {"$limit": 1}])
    all_types = types["cursor"]["firstBatch"][0]["allTypes"]
    assert len(all_types) >= 19
    doc = coll.find_one({"address.geo.type": "Point"})
    assert isinstance(doc["items"], list) and "prefs" in doc["profile"]


def test_workload_ack_log_predicts_final_state(mongosim, msim_client, dbname, tmp_path):
    datagen("generate", "--uri", mongosim.uri, "--db", dbname, "--coll", "w", "--count", "200",
            "--seed", "5", "--id-type", "int")
    log = tmp_path / "ack.jsonl"
    out = datagen("workload", "--uri", mongosim.uri, "--db", dbname, "--coll", "w",
                  "--existing", "200", "--seed", "5", "--id-type", "int", "--rate", "150",
                  "--duration", "2", "--ack-log", str(log))
    assert out["failures"] == 0
    assert out["ops"] >= 250  # about 150/s for 2 s
    lines = [json_util.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == out["acknowledged_writes"]
    assert [l["seq"] for l in lines] == list(range(1, len(lines) + 1))
    ops = {l["op"] for l in lines}
    assert {"insert", "update", "replace", "delete"} <= ops
    assert any(l["txn"] is not None for l in lines)
    final = {}
    for l in lines:
        final[l["id"]] = l["doc"]
    # json_util gives timezone-aware dates; read them the same way
    coll = msim_client[dbname].get_collection("w", codec_options=CodecOptions(tz_aware=True))
    for _id, doc in final.items():
        assert coll.find_one({"_id": _id}) == doc, _id
    untouched = coll.count_documents({"_id": {"$nin": list(final)}})
    assert untouched + sum(1 for d in final.values() if d is not None) == coll.count_documents({})
