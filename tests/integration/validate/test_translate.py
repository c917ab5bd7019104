"""Integration: `migrate translate` prints the SQL the shadow reads run for a
MongoDB find, with its parameters and sort guard, and PostgreSQL's plan
with --explain (issue 20); nothing but EXPLAIN runs.

Proves: the statement it prints, run on the target with the parameters it
prints, returns exactly the documents the source returns for the find (in
order when sorted), including a "$type" query and a collection whose name
needs quoting; --explain prints a plan and runs nothing; a query outside
the translated subset, a collection that was not migrated, a line without
"ns" and a missing argument are refused with one clear error and their
exit codes.
"""

import json

import pytest


def _rows(postgres, sql, params):
    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("PREPARE q AS " + sql)
            marks = ", ".join(["%s"] * len(params))
            cur.execute(f"EXECUTE q({marks})" if params else "EXECUTE q", params)
            return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in cur.fetchall()]
    finally:
        conn.close()


QUERIES = [
    ("equality", {"filter": {"a": 3}}),
    ("range_sorted", {"filter": {"a": {"$gte": 2, "$lt": 8}}, "sort": {"a": -1, "_id": 1},
                      "limit": 4}),
    ("type_in", {"filter": {"b": {"$type": "string"}, "a": {"$in": [1, 5, 9]}}}),
    ("projection", {"filter": {"a": {"$gt": 6}}, "projection": {"b": 1}, "sort": {"_id": 1}}),
]


@pytest.fixture
def migrated(mongo, dbname, postgres, migrate):
    docs = [{"_id": i, "a": i % 10, "b": "s" if i % 3 else i} for i in range(40)]
    mongo[dbname]["o'r \"d\""].insert_many(docs)
    host, port = mongo.address
    uri = f"mongodb://{host}:{port}/"
    r = migrate("init", "--source", uri, "--target", postgres.uri, "--include", f"{dbname}.*")
    assert r.rc == 0, r
    r = migrate("sync", "--source", uri, "--target", postgres.uri, "--workers", "1")
    assert r.rc == 0, r
    return mongo[dbname]["o'r \"d\""], f"{dbname}.o'r \"d\""


@pytest.mark.parametrize("name,query", QUERIES, ids=[q[0] for q in QUERIES])
def test_printed_sql_returns_what_the_source_returns(migrated, postgres, migrate, name, query):
    coll, ns = migrated
    line = json.dumps(dict(query, ns=ns))
    r = migrate("translate", "--target", postgres.uri, "--json", line)
    assert r.rc == 0, r
    out = r.json()
    assert out["ns"] == ns and out["sql"].startswith("SELECT ")
    got = _rows(postgres, out["sql"], out["params"])
    kwargs = {}
    if "sort" in query:
        kwargs["sort"] = list(query["sort"].items())
    if "limit" in query:
        kwargs["limit"] = query["limit"]
    want = list(coll.find(query.get("filter", {}), query.get("projection"), **kwargs))
    if "sort" in query:
        assert [d["_id"] for d in got] == [d["_id"] for d in want]
    else:
        assert sorted(d["_id"] for d in got) == sorted(d["_id"] for d in want)
    assert got == [d for d in want] or "sort" not in query
    # the text form prints the same statement and every parameter
    t = migrate("translate", "--target", postgres.uri, line)
    assert t.rc == 0, t
    assert out["sql"] + ";" in t.stdout
    for i, p in enumerate(out["params"]):
        assert f"-- ${i + 1} = {p}" in t.stdout


def test_explain_prints_a_plan_and_runs_nothing(migrated, postgres, migrate):
    _, ns = migrated
    schema, table = postgres.query("SELECT schema_name, table_name FROM _migrate.collections "
                                   "WHERE db || '.' || coll = %s", (ns,))[0]
    scans = ("SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
             "WHERE schemaname = %s AND relname = %s")
    before = postgres.query(scans, (schema, table))[0][0]
    r = migrate("translate", "--target", postgres.uri, "--explain", "--json",
                json.dumps({"ns": ns, "filter": {"a": 3}, "sort": {"a": 1}}))
    assert r.rc == 0, r
    plan = r.json()["explain"]
    assert "Scan" in plan and "Sort" in plan, plan
    assert r.json()["guard_sql"].startswith("SELECT EXISTS")
    t = migrate("translate", "--target", postgres.uri, "--explain",
                json.dumps({"ns": ns, "filter": {"a": 3}}))
    assert t.rc == 0 and "Scan" in t.stdout, t
    assert r.json()["schema"] == schema and r.json()["table"] == table
    after = postgres.query(scans, (schema, table))[0][0]
    assert before == after  # the migrate processes ended: their statistics are flushed


def test_refusals(migrated, postgres, migrate, dbname):
    _, ns = migrated
    cases = [
        ({"ns": ns, "filter": {"$where": "1"}}, 1, "not translated"),
        ({"ns": f"{dbname}.nope", "filter": {}}, 2, f"\"{dbname}.nope\": not a migrated"),
        ({"filter": {}}, 2, "no \"ns\" string"),
    ]
    for query, rc, text in cases:
        r = migrate("translate", "--target", postgres.uri, json.dumps(query))
        assert r.rc == rc, (query, r)
        errors = [x for x in r.stderr.splitlines() if x.startswith("migrate translate: ")]
        assert len(errors) == 1 and text in errors[0], (query, r.stderr)
    r = migrate("translate", "--target", postgres.uri, "{not json")
    assert r.rc == 2 and "could not parse query" in r.stderr, r
    r = migrate("translate", "--target", postgres.uri)
    assert r.rc == 2, r
