"""Integration: ties are not mismatches (issue 20).

When a sort does not order every document, MongoDB and PostgreSQL may
return documents with equal sort keys in different orders and, at a skip
or limit, different members of the tied group. The test makes sure they
do: after the copy it rewrites three tied rows in PostgreSQL unchanged
(UPDATE ... SET doc = doc), which moves them to the end of the heap, so
PostgreSQL returns the tied group in another order than the source. The
report must call those results "match", flag them tie_sensitive and say
why; a query whose sort orders every document is not tie-sensitive; and
a real difference inside a tied group, or a document with another sort key
at the limit, is still a mismatch. On the code before the fix the tied
queries were reported "mismatch" ("order or content differs").
"""

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS


def _run(migrate, uri, postgres, dbname, tmp_path, queries, name):
    lines = []
    for qname, extra in queries:
        q = {"name": qname, "ns": f"{dbname}.ties", "filter": {}}
        q.update(extra)
        lines.append(json_util.dumps(q, json_options=CANONICAL_JSON_OPTIONS))
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = migrate("validate", "--source", uri, "--target", postgres.uri, "--shadow", str(path),
                "--shadow-repeat", "1", "--json")
    assert r.rc in (0, 5), r
    return {s["name"]: s for s in r.json()["shadow"]}


def test_tied_documents_are_compared_as_sets(mongo, dbname, postgres, migrate, tmp_path):
    coll = mongo[dbname]["ties"]
    # t: six documents tie on 5 (one with 5.0, one as a long), two on 9, one missing, one null
    docs = [{"_id": i, "t": 5, "u": i % 2} for i in range(6)]
    docs[4]["t"] = 5.0
    docs += [{"_id": 6, "t": 9, "u": 0}, {"_id": 7, "t": 9, "u": 1}, {"_id": 8, "u": 0},
             {"_id": 9, "t": None, "u": 1}]
    coll.insert_many(docs)
    host, port = mongo.address
    uri = f"mongodb://{host}:{port}/"
    r = migrate("init", "--source", uri, "--target", postgres.uri, "--include", f"{dbname}.*")
    assert r.rc == 0, r
    r = migrate("sync", "--source", uri, "--target", postgres.uri, "--workers", "1")
    assert r.rc == 0, r
    schema, table = postgres.query("SELECT schema_name, table_name FROM _migrate.collections "
                                   "WHERE db = %s AND coll = 'ties'", (dbname,))[0]
    rel = f'"{schema}"."{table}"'
    postgres.query(f"UPDATE {rel} SET doc = doc WHERE doc->>'_id' IN ('0', '1', '2')")

    tied = [
        ("ties_whole", {"sort": {"t": 1}}),
        ("ties_limit_cut", {"sort": {"t": 1}, "limit": 5}),
        ("ties_skip_cut", {"sort": {"t": -1}, "skip": 3}),
        ("ties_compound", {"sort": {"u": 1, "t": 1}}),
        ("ties_projected", {"sort": {"t": 1}, "projection": {"t": 1}}),
    ]
    exact = [("ordered_by_id", {"sort": {"t": 1, "_id": -1}})]
    rep = _run(migrate, uri, postgres, dbname, tmp_path, tied + exact, "ties")
    pg_order = rep["ties_whole"]["pg_ids"]
    mongo_order = [str(d["_id"]) for d in coll.find({}, sort=[("t", 1)])]
    # the premise: the two sides do return tied documents in different orders
    assert pg_order != mongo_order, (pg_order, mongo_order)
    for name, _ in tied:
        s = rep[name]
        assert s["status"] == "match", (name, s["status"], s["reason"])
        assert s["tie_sensitive"], (name, s)
    assert "tie-sensitive" in rep["ties_whole"]["reason"]
    assert rep["ordered_by_id"]["status"] == "match"
    assert not rep["ordered_by_id"]["tie_sensitive"]

    # real differences are still found: a changed document inside a tied group, and a
    # document whose sort key moved it into the group cut by the limit
    postgres.query(f"UPDATE {rel} SET doc = jsonb_set(doc, '{{u}}', '7') WHERE doc->>'_id' = '3'")
    postgres.query(f"UPDATE {rel} SET doc = jsonb_set(doc, '{{t}}', '4') WHERE doc->>'_id' = '7'")
    rep = _run(migrate, uri, postgres, dbname, tmp_path,
               [("changed_in_group", {"sort": {"t": 1}}),
                ("other_key_at_cut", {"sort": {"t": 1}, "limit": 3})], "changed")
    for name in ("changed_in_group", "other_key_at_cut"):
        assert rep[name]["status"] == "mismatch", (name, rep[name])
