"""Integration: every text validate writes to PostgreSQL is well-formed UTF-8,
also when it is cut (the board's repro from the randomized test: a collection
with `{_id: {a: 1}}` and `{_id: Symbol("éz" * 1500)}`, both different on the
target). validate used to cut the _id's text mid-character and exit on
PostgreSQL's "invalid byte sequence for encoding UTF8" when it recorded the
mismatch.
"""

import bson
from bson.raw_bson import RawBSONDocument

from test_checksums import EXIT_MISMATCH, mongo_uri


def symbol_doc(text):
    """symbol_doc is the raw BSON of {_id: Symbol(text)} (pymongo has no Symbol type)."""
    s = text.encode()
    elem = b"\x0e_id\x00" + (len(s) + 1).to_bytes(4, "little") + s + b"\x00"
    return RawBSONDocument((len(elem) + 5).to_bytes(4, "little") + elem + b"\x00")


def test_a_long_multibyte_id_is_recorded_as_valid_utf8(mongo, dbname, postgres, migrate):
    long_id = "éz" * 1500
    coll = mongo[dbname]["odd"]
    coll.insert_one({"_id": {"a": 1}, "v": 1})
    uri = mongo_uri(mongo)
    r = migrate("init", "--source", uri, "--target", postgres.uri, "--include", f"{dbname}.*")
    assert r.rc == 0, r
    r = migrate("sync", "--source", uri, "--target", postgres.uri)
    assert r.rc == 0, r
    # the second document is only on the source (missing on the target: sync does not run
    # again here), the first differs on the target by a field only it has, multibyte all along
    coll.insert_one(symbol_doc(long_id))
    assert coll.count_documents({}) == 2
    postgres.query(f'UPDATE "{dbname}".odd SET doc = doc || jsonb_build_object(%s, %s) '
                   "RETURNING 1", ("é" * 3000, "ü" * 3000))
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--full", "--json",
                "--fail-on", "any")
    assert r.rc == EXIT_MISMATCH, r
    assert "invalid byte sequence" not in r.stderr, r.stderr
    rows = postgres.query("SELECT id_json, doc_id, fields::text FROM _migrate."
                          "validation_mismatches WHERE coll = 'odd' ORDER BY id_json")
    assert len(rows) == 2, rows
    # what is recorded still names the long _id (whole or cut between characters)
    assert any("éz" * 100 in (row[0] or "") for row in rows), [r[0][:80] for r in rows]
    report = r.json()
    odd = [c for c in report["collections"] if c["coll"] == "odd"][0]
    assert odd["different"] == 1 and odd["missing"] == 1, odd
    # a second run finds the same two (the identity did not change by being cut)
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--full", "--fail-on", "any")
    assert r.rc == EXIT_MISMATCH, r
    assert postgres.query("SELECT count(*), max(seen_runs) FROM _migrate.validation_mismatches "
                          "WHERE coll = 'odd'")[0] == (2, 2)
