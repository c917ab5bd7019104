"""Integration: documents with duplicate field names through `migrate init`,
`sync` (copy and change stream) and `validate`, against mongosim (or a real
replica set) and a throwaway PostgreSQL 15 (issue 14, hole 2).

Proves: every value of a repeated field reaches the target (jsonb alone
would keep the last), in order, with `doc->'_id'` still queryable; the
census reports the documents; the change stream writes them the same way;
validation compares them exactly: a change to a value that is not the last
of its field is a mismatch naming the _id.
"""

import bson
from bson.raw_bson import RawBSONDocument

from test_cdc import follow_in_background, stop, wait_for
from test_sync import assert_same, init, mongo_uri


def element(key, value):
    """element encodes one BSON element {key: value} (string or int32 values)."""
    k = key.encode() + b"\x00"
    if isinstance(value, str):
        v = value.encode()
        return b"\x02" + k + (len(v) + 1).to_bytes(4, "little") + v + b"\x00"
    if isinstance(value, bytes):  # an embedded document, already encoded
        return b"\x03" + k + value
    return b"\x10" + k + value.to_bytes(4, "little", signed=True)


def document(*elements):
    body = b"".join(element(k, v) for k, v in elements)
    return (len(body) + 5).to_bytes(4, "little") + body + b"\x00"


def dup_doc(i):
    """a document whose field "v" appears three times, and a nested "n.k" twice."""
    nested = document(("k", f"inner-first-{i}"), ("x", 1), ("k", f"inner-last-{i}"))
    return RawBSONDocument(document(("_id", i), ("v", f"first-{i}"), ("w", 5),
                                    ("v", f"middle-{i}"), ("n", nested), ("v", f"last-{i}")))


def values_in_target(pg, db, coll, i):
    return pg.query(f'SELECT doc::text FROM "{db}"."{coll}" WHERE _id = %s', (i,))[0][0]


def test_duplicate_fields_copied_followed_and_validated(mongo, dbname, postgres, migrate):
    c = mongo[dbname]["dups"]
    c.insert_many([dup_doc(i) for i in range(5)] + [{"_id": i, "v": "plain"} for i in range(5, 9)])
    r = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                f"{dbname}.*", "--census", "full", "--json")
    assert r.rc == 0, r
    census = r.json()["collections"][0]["census"]
    assert census["facts"]["duplicate_key"] == 5, census
    proc = follow_in_background(mongo, postgres)
    try:
        wait_for(lambda: postgres.query(f'SELECT count(*) FROM "{dbname}".dups')[0][0] == 9,
                 what="the copy")
        # the change stream: a replacement with duplicates, an insert with duplicates
        c.replace_one({"_id": 6}, dup_doc(6))
        c.insert_one(dup_doc(20))
        wait_for(lambda: postgres.query(f'SELECT count(*) FROM "{dbname}".dups')[0][0] == 10,
                 what="the insert")
        wait_for(lambda: "first-6" in values_in_target(postgres, dbname, "dups", 6),
                 what="the replacement")
    finally:
        stop(proc)
    assert_same(mongo, postgres, dbname, "dups")
    for i in (0, 4, 6, 20):
        text = values_in_target(postgres, dbname, "dups", i)
        order = [text.index(f"{w}-{i}") for w in ("first", "middle", "last")]
        assert order == sorted(order), text
        assert text.index(f"inner-first-{i}") < text.index(f"inner-last-{i}"), text
    # doc->'_id' stays queryable, and the values in order are SQL-reachable
    rows = postgres.query(f"""SELECT doc->'_id', doc->'$fieldPairs'->1->>1
                              FROM "{dbname}".dups WHERE (doc->>'_id')::int = 3""")
    assert rows == [(3, "first-3")]

    uri = mongo_uri(mongo)
    validate = ["validate", "--source", uri, "--target", postgres.uri, "--json"]
    r = migrate(*validate)
    assert r.rc == 0 and r.json()["status"] == "clean", r
    # change the FIRST of three values of "v" in the target only
    postgres.query(f"""UPDATE "{dbname}".dups
                       SET doc = jsonb_set(doc, '{{$fieldPairs,1,1}}', '"tampered"')
                       WHERE _id = 2""")
    r = migrate(*validate)
    assert r.rc == 0 and r.json()["status"] == "mismatch", r
    coll = [x for x in r.json()["collections"] if x["coll"] == "dups"][0]
    assert [(m["_id"], m["kind"]) for m in coll["mismatches"]] == [("2", "different")], coll
