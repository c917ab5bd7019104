"""Integration: PostgreSQL names for databases, collections, primary keys and
indexes through `migrate init` + `sync`, against mongosim (or a real replica
set) and a throwaway PostgreSQL 15 (issue 14, holes 6 and 9).

Proves: collection `user` with index `group_id_1` and collection
`user_group` with index `id_1` both get their index, each with its own
definition (they used to share one name, the second build a silent no-op);
a collection named `orders_pkey` beside `orders`, index names over 63
bytes, a database named `pg_...` (a reserved schema prefix), collection
names with quotes, spaces, dots, unicode, 63+ bytes and one equal to
another's hashed name all get valid, distinct names and copy; an index
whose name is taken by a different index is marked failed, never built,
and re-running the build of an index that exists is idempotent.
"""

import bson

from test_sync import assert_same, mongo_uri


def planned(pg, db):
    return {(r[0], r[1]): (r[2], r[3]) for r in pg.query(
        "SELECT coll, mongo_name, pg_name, build_status FROM _migrate.indexes WHERE db = %s",
        (db,))}


def index_defs(pg, schema):
    return {r[0]: r[1] for r in pg.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (schema,))}


def fnv1a32(text):
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def test_colliding_and_long_index_names(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    long_name = "a_rather_long_index_name_" + "x" * 60
    db["user"].insert_many([{"_id": i, "group_id": i, "b": i} for i in range(5)])
    db["user"].create_index("group_id", name="group_id_1", unique=True)
    db["user_group"].insert_many([{"_id": i, "id": i % 2, "c": i} for i in range(5)])
    db["user_group"].create_index("id", name="id_1")
    db["user_group"].create_index("c", name=long_name)
    db["user_group"].create_index("b", name=long_name + "2")
    db["orders"].insert_one({"_id": 1, "pkey": 2})
    db["orders"].create_index("pkey", name="pkey")
    db["orders_pkey"].insert_one({"_id": 1})
    r = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                f"{dbname}.*")
    assert r.rc == 0, r
    r = migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri)
    assert r.rc == 0, r
    for coll in ("user", "user_group", "orders", "orders_pkey"):
        assert_same(mongo, postgres, dbname, coll)
    plan = planned(postgres, dbname)
    defs = index_defs(postgres, dbname)
    built = {k: v for k, v in plan.items() if k[1] != "_id_"}
    assert all(status == "built" for _, status in built.values()), plan
    names = [name for name, _ in built.values()]
    assert len(set(names)) == len(names), names
    for (coll, mongo_name), (pg_name, _) in built.items():
        assert len(pg_name.encode()) <= 63
        d = defs.get(pg_name)
        assert d is not None, (coll, mongo_name, pg_name, defs)
        assert f'ON {dbname}.{coll} ' in d or f'ON {dbname}."{coll}" ' in d, d
    field = {("user", "group_id_1"): "group_id", ("user_group", "id_1"): "id",
             ("user_group", long_name): "c", ("user_group", long_name + "2"): "b",
             ("orders", "pkey"): "pkey"}
    for key, f in field.items():
        assert f"(doc -> '{f}'::text)" in defs[built[key][0]], (key, defs[built[key][0]])
    assert "UNIQUE" in defs[built[("user", "group_id_1")][0]]
    # each table's primary key has the name the plan recorded
    for coll in ("user", "user_group", "orders", "orders_pkey"):
        pk = plan[(coll, "_id_")][0]
        assert pk in defs and "UNIQUE" in defs[pk] and "(_id)" in defs[pk], (coll, pk, defs)


def test_index_name_taken_by_another_index(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    db["items"].insert_many([{"_id": i, "sku": f"s{i}", "other": i} for i in range(5)])
    db["items"].create_index("sku", name="sku_1", unique=True)
    db["items"].create_index("other", name="other_1")
    uri = mongo_uri(mongo)
    r = migrate("init", "--source", uri, "--target", postgres.uri, "--include", f"{dbname}.*")
    assert r.rc == 0, r
    plan = planned(postgres, dbname)
    taken = plan[("items", "sku_1")][0]
    # someone creates a different index under the planned name before the build
    postgres.query(f'CREATE INDEX "{taken}" ON "{dbname}".items ((doc -> \'other\'))')
    r = migrate("sync", "--source", uri, "--target", postgres.uri)
    plan = planned(postgres, dbname)
    assert plan[("items", "sku_1")][1] == "failed", (plan, r)
    note = postgres.query("SELECT note FROM _migrate.indexes WHERE db = %s AND mongo_name = "
                          "'sku_1'", (dbname,))[0][0]
    assert "a different relation of that name exists" in note, note
    assert plan[("items", "other_1")][1] == "built", plan
    # the foreign index is untouched, and nothing unique was created on sku
    defs = index_defs(postgres, dbname)
    assert "'other'" in defs[taken] and "UNIQUE" not in defs[taken], defs[taken]
    # building an index that exists already as planned (a re-run after the commit): built
    postgres.query("UPDATE _migrate.indexes SET build_status = 'pending' WHERE db = %s AND "
                   "mongo_name = 'other_1'", (dbname,))
    migrate("sync", "--source", uri, "--target", postgres.uri)
    assert planned(postgres, dbname)[("items", "other_1")][1] == "built"


def test_hostile_namespaces(mongo, dbname, postgres, migrate):
    pgdb = "pg_" + dbname
    hashed = "users_%08x" % fnv1a32(f"{dbname}.Users")
    colls = ["Users", "users", hashed, 'we"ird name', "dot.ted.name", "caf\u00e9 \u6771",
             "y" * 70, "y" * 71, "1starts_with_digit", "orders", "orders_pkey"]
    try:
        for i, c in enumerate(colls):
            mongo[dbname][c].insert_one({"_id": i, "coll": c})
        mongo[pgdb]["stats"].insert_one({"_id": 1})
        r = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                    f"{dbname}.*", "--include", f"{pgdb}.*", "--json")
        assert r.rc == 0, r
        rows = postgres.query("SELECT db, coll, schema_name, table_name FROM _migrate.collections")
        mapping = {(d, c): (s, t) for d, c, s, t in rows}
        assert not [s for s, _ in mapping.values() if s.startswith("pg_")], mapping
        tables = [v for v in mapping.values()]
        assert len(set(tables)) == len(tables), tables
        assert mapping[(dbname, hashed)] == (dbname, hashed)  # a plain name keeps its name
        for s, t in tables:
            assert len(t.encode()) <= 63 and len(s.encode()) <= 63
        r = migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri)
        assert r.rc == 0, r
        for (d, c), (s, t) in mapping.items():
            rows = postgres.query(f'SELECT doc->>\'coll\' FROM "{s}"."{t}"')
            if d == dbname:
                assert [x[0] for x in rows] == [c], (d, c, s, t, rows)
            else:
                assert len(rows) == 1
        assert_same(mongo, postgres, dbname, "Users", mapping[(dbname, "Users")][1])
    finally:
        mongo.drop_database(pgdb)
