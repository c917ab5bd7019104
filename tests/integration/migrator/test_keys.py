"""Integration: the key column through `migrate init` + `sync` (copy and change
stream) + `validate`, against mongosim (or a real replica set) and a
throwaway PostgreSQL 15 (issue 14, holes 1 and 8).

Proves: embedded-document _ids that differ only in field order stay two
rows, copied and followed (also both in one apply batch, which used to fail
with "ON CONFLICT DO UPDATE command cannot affect row a second time"), and
`doc->'_id'` stays queryable; string _ids a text key cannot hold (NUL,
invalid UTF-8, 5 KB) make init choose the canonical key by itself and are
all copied, the long one as a digest; an _id arriving later that does not
fit the table's key type stops the copy with an error naming the
collection, the _id and the way out, which works; `validate --changed`
reads canonical keys back to _ids, and checks a collection in full when a
changed key is a digest.
"""

import json

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON

from test_cdc import follow_in_background, stop, wait_for
from test_sync import assert_same, init, mongo_uri

RAW = CodecOptions(document_class=RawBSONDocument)


def raw(doc):
    """raw encodes doc (a SON keeps its field order) for insertion byte for byte."""
    return RawBSONDocument(bson.encode(doc))


def key_type(pg, db, coll):
    return pg.query("SELECT key_type FROM _migrate.collections WHERE db = %s AND coll = %s",
                    (db, coll))[0][0]


def count(pg, db, coll):
    return pg.query(f'SELECT count(*) FROM "{db}"."{coll}"')[0][0]


def test_key_order_ids_are_two_documents(mongo, dbname, postgres, migrate):
    c = mongo[dbname]["orders"]
    c.insert_many([raw(SON([("_id", SON([("day", 1), ("shop", 2)])), ("v", "a")])),
                   raw(SON([("_id", SON([("shop", 2), ("day", 1)])), ("v", "b")])),
                   raw(SON([("_id", SON([("day", 1), ("shop", "2")])), ("v", "c")])),
                   raw({"_id": 7, "v": "int"}), raw({"_id": "7", "v": "string"})])
    init(migrate, mongo, postgres, dbname)
    proc = follow_in_background(mongo, postgres)
    try:
        wait_for(lambda: count(postgres, dbname, "orders") == 5, what="the copy of 5 documents")
        # both orders of one pair in one batch, then a delete of one of the first pair
        c.insert_many([raw(SON([("_id", SON([("day", 2), ("shop", 1)])), ("v", "d")])),
                       raw(SON([("_id", SON([("shop", 1), ("day", 2)])), ("v", "e")]))])
        c.delete_one({"_id": SON([("shop", 2), ("day", 1)])})
        c.update_one({"_id": SON([("day", 1), ("shop", 2)])}, {"$set": {"v": "a2"}})
        wait_for(lambda: count(postgres, dbname, "orders") == 6, what="the followed changes")
        wait_for(lambda: postgres.query(
            f"""SELECT count(*) FROM "{dbname}".orders WHERE doc->>'v' = 'a2'""")[0][0] == 1,
            what="the update")
    finally:
        stop(proc)
    assert_same(mongo, postgres, dbname, "orders")
    assert key_type(postgres, dbname, "orders") == "canonical"
    # the rendered _id stays queryable in doc
    rows = postgres.query(f"""SELECT doc->>'v' FROM "{dbname}".orders
                              WHERE (doc->'_id'->>'day')::int = 1 ORDER BY 1""")
    assert [r[0] for r in rows] == ["a2", "c"]


def test_ids_a_text_key_cannot_hold_choose_canonical(mongo, dbname, postgres, migrate):
    c = mongo[dbname]["names"]
    long_id = "x" * 5000
    docs = [{"_id": f"plain{i}", "i": i} for i in range(20)]
    docs += [{"_id": "nul\x00inside", "i": 100}, {"_id": long_id, "i": 101},
             {"_id": long_id[:-1] + "y", "i": 102}]
    c.insert_many([raw(d) for d in docs])
    # a string _id that is not UTF-8: only raw BSON can carry it
    bad = (b"\x02_id\x00" + (3).to_bytes(4, "little") + b"\xff\xfe\x00" +
           b"\x10i\x00" + (103).to_bytes(4, "little"))
    c.insert_one(RawBSONDocument((len(bad) + 5).to_bytes(4, "little") + bad + b"\x00"))
    r = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                f"{dbname}.*", "--census", "full", "--json")
    assert r.rc == 0, r
    plan = r.json()["collections"][0]
    r = migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri)
    assert r.rc == 0, r
    assert_same(mongo, postgres, dbname, "names")
    assert plan["key_type"] == "canonical", plan
    assert any("a text key cannot hold them" in w for w in plan["census"]["warnings"]), plan
    digests = postgres.query(f"""SELECT doc->>'i' FROM "{dbname}".names
                                 WHERE _id LIKE '#%' ORDER BY 1""")
    assert [d[0] for d in digests] == ["101", "102"]
    assert postgres.query(f"""SELECT max(length(_id)) FROM "{dbname}".names""")[0][0] <= 2600


def test_misfit_id_names_collection_id_and_way_out(mongo, dbname, postgres, migrate):
    c = mongo[dbname]["events"]
    c.insert_many([{"_id": bson.ObjectId(), "n": i} for i in range(5)])
    init(migrate, mongo, postgres, dbname)
    assert key_type(postgres, dbname, "events") == "text_objectid"
    c.insert_one({"_id": 424242, "n": "late"})  # after init: an integer in a text_objectid table
    r = migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri)
    assert r.rc != 0, r
    assert f"{dbname}.events" in r.stderr and "424242" in r.stderr, r.stderr
    assert f"--key-type {dbname}.events=canonical;" in r.stderr, r.stderr  # named (issue 14)
    # the way out works
    r = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                f"{dbname}.*", "--reset", "--yes", "--key-type", f"{dbname}.events=canonical")
    assert r.rc == 0, r
    assert key_type(postgres, dbname, "events") == "canonical"
    r = migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri)
    assert r.rc == 0, r
    assert_same(mongo, postgres, dbname, "events")
    # a key type the census shows cannot hold every _id is refused up front
    r = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                f"{dbname}.*", "--reset", "--yes", "--key-type", f"{dbname}.events=bigint")
    assert r.rc == 2, r
    assert "objectId" in r.stderr and "canonical" in r.stderr, r.stderr


def test_validate_changed_reads_canonical_keys(mongo, dbname, postgres, migrate):
    c = mongo[dbname]["mixed"]
    long_id = "z" * 4000
    c.insert_many([raw(SON([("_id", SON([("a", i), ("b", "x")])), ("v", i)])) for i in range(10)]
                  + [raw({"_id": 1.5, "v": "dbl"}), raw({"_id": long_id, "v": "long"}),
                     raw({"_id": bson.Decimal128("0.1"), "v": "dec"})])
    init(migrate, mongo, postgres, dbname)
    assert key_type(postgres, dbname, "mixed") == "canonical"
    uri = mongo_uri(mongo)
    assert migrate("sync", "--source", uri, "--target", postgres.uri).rc == 0
    c.update_one({"_id": SON([("a", 3), ("b", "x")])}, {"$set": {"v": "changed"}})
    c.update_one({"_id": 1.5}, {"$set": {"v": "changed"}})
    c.update_one({"_id": bson.Decimal128("0.1")}, {"$set": {"v": "changed"}})
    assert migrate("sync", "--source", uri, "--target", postgres.uri).rc == 0
    validate = ["validate", "--source", uri, "--target", postgres.uri, "--json", "--changed"]
    r = migrate(*validate)
    assert r.rc == 0, r
    coll = [x for x in r.json()["collections"] if x["coll"] == "mixed"][0]
    assert coll["mismatches"] == [] and coll["source_docs"] == coll["target_docs"] == 3, coll
    # a changed long _id (a digest key): the collection is checked in full, and a row
    # changed behind our back is found
    c.update_one({"_id": long_id}, {"$set": {"v": "changed"}})
    assert migrate("sync", "--source", uri, "--target", postgres.uri).rc == 0
    postgres.query(f"""UPDATE "{dbname}".mixed SET doc = jsonb_set(doc, '{{v}}', '"tampered"')
                       WHERE doc->>'v' = '5'""")
    r = migrate(*validate)
    assert r.rc == 0 and r.json()["status"] == "mismatch", r
    coll = [x for x in r.json()["collections"] if x["coll"] == "mixed"][0]
    assert coll["source_docs"] == coll["target_docs"] == 13, coll
    assert [json.loads(m["_id"]) for m in coll["mismatches"]] == [{"a": 5, "b": "x"}], coll
