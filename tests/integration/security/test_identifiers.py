"""Integration: hostile names through every statement the migrator issues
(issue 17, item 3).

The target database runs with standard_conforming_strings off, so a
literal that depends on it (a backslash in a plain '...') breaks.
Names from the operator (the state schema) and from the source (collection
names, index names, field paths of indexes, sorts and projections) hold
quotes, dots, spaces, `$`, backslashes, non-ASCII letters and run past 63
bytes. The whole migration runs on them - init (DDL and the plan), sync
(copy, index build, then the change-stream apply of later writes), validate
(checksums, --changed, shadow reads), status and cutover - and each step
must succeed and land exactly where it says, with every identifier quoted
by the one quoting function. A state schema over 63 bytes, which
PostgreSQL would silently cut, is refused with a clear error before
anything is created (on the code before the fix init created a schema of
the cut name).
"""

import json

from bson import json_util

STATE = 'st "Ü\'n\\ï". $x y'  # quotes, backslash, dot, space, $, non-ASCII: 17 bytes
COLLS = ['we"ird \'coll\' Ünï', "dots.in.the.name", "back\\slash", "c" * 100]
INDEX_NAME = 'i"dx \'q\' $ ' + "n" * 70
INDEX_PATH = 'f"a.g\\h'


def uri_of(mongo):
    host, port = mongo.address
    return f"mongodb://{host}:{port}/"


def namespaces(pg):
    return {r[0] for r in pg.query("SELECT nspname FROM pg_namespace")}


def run(migrate, *args, ok=(0,)):
    r = migrate(*args)
    assert r.rc in ok, f"migrate {args[0]}: rc {r.rc}\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return r


def test_state_schema_over_63_bytes_is_refused(mongo, dbname, postgres, migrate):
    mongo[dbname]["c"].insert_one({"_id": 1})
    before = namespaces(postgres)
    long_name = "s" * 60 + "Ünï"  # 65 bytes: PostgreSQL would cut it to 63
    r = migrate("init", "--source", uri_of(mongo), "--target", postgres.uri, "--include",
                f"{dbname}.*", "--state-schema", long_name)
    assert r.rc != 0, "init accepted a state schema PostgreSQL cuts to 63 bytes"
    assert "longer than 63 bytes" in r.stderr, r.stderr[-2000:]
    assert namespaces(postgres) == before, "init created something before refusing"
    # exactly 63 bytes (multi-byte letters included) is taken as it is
    exact = "s" * 58 + "Ünï"
    assert len(exact.encode()) == 63
    run(migrate, "init", "--source", uri_of(mongo), "--target", postgres.uri, "--include",
        f"{dbname}.*", "--state-schema", exact)
    assert exact in namespaces(postgres)


def test_every_command_on_hostile_names(mongo, dbname, postgres, migrate, tmp_path):
    uri = uri_of(mongo)
    db = mongo[dbname]
    # literals must read the same with this setting off (a backslash is in a field path)
    postgres.query(f"ALTER DATABASE {postgres.dbname} SET standard_conforming_strings = off")
    postgres.query(f"ALTER DATABASE {postgres.dbname} SET escape_string_warning = off")
    for i, name in enumerate(COLLS):
        db[name].insert_many([{"_id": k, "v": k * (i + 1), "f\"a": {"g\\h": k % 5},
                               "s": f"x'{k}\\"} for k in range(50)])
        db[name].create_index([(INDEX_PATH, 1), ("v", -1)], name=INDEX_NAME)
    common = ["--source", uri, "--target", postgres.uri, "--state-schema", STATE]
    plan = run(migrate, "init", *common, "--include", f"{dbname}.*", "--json").json()
    assert STATE in namespaces(postgres)
    tables = postgres.query(f'SELECT db, coll, schema_name, table_name FROM "{STATE.replace(chr(34), chr(34) * 2)}".collections')
    assert sorted(r[1] for r in tables) == sorted(COLLS), tables
    mapping = {r[1]: (r[2], r[3]) for r in tables}
    assert plan is not None

    # copy and index build
    run(migrate, "sync", *common, "--workers", "2")
    for name, (schema, table) in mapping.items():
        n = postgres.query(f'SELECT count(*) FROM "{schema}"."{table}"')[0][0]
        assert n == 50, (name, n)
        defs = [r[0] for r in postgres.query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (schema, table))]
        assert any("'f\"a'" in d and "g\\" in d for d in defs), defs

    # the change stream's apply: inserts, updates, deletes on every collection
    for name in COLLS:
        db[name].insert_one({"_id": 1000, "v": 1, "s": "new'\\"})
        db[name].update_one({"_id": 3}, {"$set": {"v": -3}})
        db[name].delete_one({"_id": 4})
    run(migrate, "sync", *common)
    for name, (schema, table) in mapping.items():
        rows = dict(postgres.query(f'SELECT _id::text, doc->>\'v\' FROM "{schema}"."{table}" '
                                   "WHERE _id::text IN ('1000', '3', '4')"))
        assert rows == {"1000": "1", "3": "-3"}, (name, rows)

    # validate: checksums, --changed and shadow reads with hostile paths
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json_util.dumps(
        {"name": f"q{i}", "ns": f"{dbname}.{name}", "filter": {INDEX_PATH: {"$gte": 2}},
         "sort": {INDEX_PATH: 1, "v": -1}, "projection": {"s": 1, "f\"a": 1}})
        for i, name in enumerate(COLLS)) + "\n")
    rep = run(migrate, "validate", *common, "--full", "--json").json()
    assert rep["status"] == "clean", rep
    run(migrate, "validate", *common, "--changed")
    rep = run(migrate, "validate", *common, "--shadow", str(queries), "--json").json()
    assert [s["status"] for s in rep["shadow"]] == ["match"] * len(COLLS), rep["shadow"]

    status = run(migrate, "status", "--target", postgres.uri, "--state-schema", STATE,
                 "--json").json()
    assert len(status["collections"]) == len(COLLS), status

    endpoint = tmp_path / "endpoint"
    rep = run(migrate, "cutover", *common, "--max-lag", "60s", "--endpoint-file", str(endpoint),
              "--json").json()
    assert endpoint.exists(), rep
    cut = postgres.query(f'SELECT outcome FROM "{STATE.replace(chr(34), chr(34) * 2)}".cutover')
    assert cut and cut[0][0] in ("done", "flipped", "completed"), cut
    # nothing landed under a cut or mangled name
    assert not [n for n in namespaces(postgres) if n != STATE and n.startswith("st ")]
    assert json.dumps(rep)
