"""Integration: `migrate init` against mongosim (or a real replica set) and
a throwaway PostgreSQL 15.

Proves: the tables, key column types, index plan and state that init
creates; that --dry-run changes nothing (catalog compared before and
after); that a re-run reports instead of changing; --reset --yes; and that
bad input (unreachable or wrong-credential source/target, an include
pattern matching nothing, a target schema holding unrelated tables) gives a
clear error, the documented exit code and nothing half-created.
"""

import bson
import psycopg2
import pymongo
import pytest

from mgharness import pick_free_port
from mgharness.mongosim import MongosimInstance

EXIT_USAGE, EXIT_SOURCE, EXIT_TARGET, EXIT_STATE = 2, 3, 4, 8
LONG_NAME = "a_really_long_collection_name_" + "x" * 60


def load_source(db):
    """load_source fills db with the collections the tests expect."""
    orders = db["orders"]
    orders.insert_many([{"status": "open" if i % 2 else "done", "total": i * 1.5,
                         "customer": {"id": i % 7, "name": f"c{i}"}, "tags": ["a", "b"],
                         "at": bson.datetime.datetime(2024, 1, 1 + i % 28),
                         "email": f"u{i}@example.com"} for i in range(50)])
    orders.create_index("status")
    orders.create_index([("customer.id", 1), ("at", -1)])
    orders.create_index("email", unique=True)
    orders.create_index("tags")
    orders.create_index("at", expireAfterSeconds=3600, name="at_ttl")
    orders.create_index([("status", "hashed")], name="status_hashed")
    orders.create_index([("total", 1)], name="total_partial",
                        partialFilterExpression={"total": {"$gt": 10}})
    orders.create_index([("customer.name", 1)], sparse=True, name="name_sparse")
    orders.create_index([("customer.name", "text")], name="name_text")
    orders.create_index([("loc", "2dsphere")], name="loc_geo")
    orders.create_index([("$**", 1)], name="wildcard")

    mixed = db["mixed"]
    mixed.insert_many([{"_id": 1, "v": 1}, {"_id": "two", "v": 2},
                       {"_id": bson.ObjectId(), "v": 3}])
    db["ints"].insert_many([{"_id": i, "v": i} for i in range(20)])
    db["strings"].insert_many([{"_id": f"k{i}"} for i in range(5)])
    db["Users"].insert_one({"name": "upper"})
    db["users"].insert_one({"name": "lower"})
    db["order-items"].insert_one({"sku": 1})
    db[LONG_NAME].insert_one({"x": 1})
    db.command({"create": "orders_view", "viewOn": "orders", "pipeline": [{"$match": {}}]})


def catalog(pg):
    """catalog returns every user relation and schema, to compare snapshots."""
    rels = pg.query("SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2")
    schemas = pg.query("SELECT nspname FROM pg_namespace ORDER BY 1")
    return rels, schemas


def column_type(pg, schema, table, column):
    rows = pg.query("SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
                    "AND a.attname = %s", (schema, table, column))
    return rows[0][0] if rows else None


def init_args(source_uri, target, dbname, *extra):
    return ["init", "--source", source_uri, "--target", target, "--include", f"{dbname}.*",
            *extra]


def test_init_creates_tables_index_plan_and_state(mongo, dbname, postgres, migrate):
    load_source(mongo[dbname])
    r = migrate(*init_args(mongo_uri(mongo), postgres.uri, dbname, "--json"))
    assert r.rc == 0, r
    plan = r.json()
    assert plan["outcome"].startswith("initialised")
    colls = {c["collection"]: c for c in plan["collections"]}
    assert set(colls) == {"orders", "mixed", "ints", "strings", "Users", "users", "order-items",
                          LONG_NAME}
    assert {s["namespace"]: s["reason"] for s in plan["skipped"]}[
        f"{dbname}.orders_view"].startswith("view")

    # key column types follow DESIGN §3
    assert colls["orders"]["key_type"] == "text_objectid"
    assert colls["ints"]["key_type"] == "bigint"
    assert colls["strings"]["key_type"] == "text_string"
    assert colls["mixed"]["key_type"] == "canonical"
    assert column_type(postgres, dbname, "orders", "_id") == "text"
    assert column_type(postgres, dbname, "ints", "_id") == "bigint"
    assert column_type(postgres, dbname, "mixed", "_id") == "text"
    assert column_type(postgres, dbname, "orders", "doc") == "jsonb"
    # the SQL helpers an application writes documents with (docs/application.md)
    assert postgres.query("SELECT count(*) FROM pg_proc WHERE pronamespace = %s::regnamespace "
                          "AND proname LIKE 'bson%%'", (f'"{dbname}"',)) == [(17,)]

    # names: sanitised, collisions hashed, long names cut, all recorded
    assert colls["orders"]["table"] == "orders"
    upper, lower = colls["Users"]["table"], colls["users"]["table"]
    assert upper != lower and upper.startswith("users_") and lower.startswith("users_")
    assert colls["order-items"]["table"] == "order_items"
    assert len(colls[LONG_NAME]["table"]) == 63
    recorded = dict(postgres.query(
        "SELECT coll, table_name FROM _migrate.collections WHERE db = %s", (dbname,)))
    assert recorded == {c: v["table"] for c, v in colls.items()}
    for c in colls.values():
        assert postgres.query("SELECT to_regclass(%s) IS NOT NULL",
                              (f'"{c["schema"]}"."{c["table"]}"',))[0][0]

    # the index plan: every kind translated or reported with a reason
    idx = {i["name"]: i for i in colls["orders"]["indexes"]}
    assert idx["_id_"]["translation"] == "primary_key"
    assert idx["status_1"]["translation"] == "translated"
    assert idx["email_1"]["sql"].startswith("CREATE UNIQUE INDEX")
    assert idx["at_ttl"]["translation"] == "translated_with_caveat"
    assert "TTL" in idx["at_ttl"]["note"]
    assert idx["tags_1"]["translation"] == "translated_with_caveat"  # array field
    assert "USING hash" in idx["status_hashed"]["sql"]
    assert "WHERE" in idx["total_partial"]["sql"]
    assert "IS NOT NULL" in idx["name_sparse"]["sql"]
    assert idx["name_text"]["translation"] == "not_translated"
    assert idx["name_text"]["suggestion"]
    assert idx["loc_geo"]["translation"] == "not_translated"
    assert "PostGIS" in idx["loc_geo"]["note"]
    assert "jsonb_path_ops" in idx["wildcard"]["sql"]
    rows = postgres.query("SELECT mongo_name, build_status FROM _migrate.indexes "
                          "WHERE db = %s AND coll = 'orders'", (dbname,))
    status = dict(rows)
    assert status["status_1"] == "pending" and status["name_text"] == "skipped"

    # the planned statements are valid on the real server, and building twice is idempotent
    for (sql,) in postgres.query("SELECT sql FROM _migrate.indexes WHERE sql IS NOT NULL "
                                 "AND db = %s", (dbname,)):
        postgres.query(sql)
        postgres.query(sql)

    # census recorded; state version and the init event
    report = postgres.query("SELECT report FROM _migrate.census WHERE db = %s AND coll = 'orders'",
                            (dbname,))[0][0]
    assert report["count"] == 50 and report["id_types"] == {"objectId": 50}
    mixed = postgres.query("SELECT report FROM _migrate.census WHERE db = %s AND coll = 'mixed'",
                           (dbname,))[0][0]
    assert any("mixed _id types" in w for w in mixed["warnings"])
    assert postgres.query("SELECT value FROM _migrate.meta WHERE key = 'schema_version'") == [
        ("1",)]
    assert postgres.query("SELECT count(*) FROM _migrate.events WHERE kind = 'init'") == [(1,)]


def mongo_uri(client):
    """mongo_uri returns the URI the fixture client was made from."""
    host, port = client.address
    return f"mongodb://{host}:{port}/"


def test_dry_run_changes_nothing(mongo, dbname, postgres, migrate):
    load_source(mongo[dbname])
    before = catalog(postgres)
    r = migrate(*init_args(mongo_uri(mongo), postgres.uri, dbname, "--dry-run"))
    assert r.rc == 0, r
    assert "DDL (not executed):" in r.stdout
    assert 'CREATE TABLE "%s"."orders"' % dbname in r.stdout
    assert 'CREATE SCHEMA "_migrate"' in r.stdout
    assert "dry run: nothing was changed" in r.stdout
    assert catalog(postgres) == before


def test_rerun_reports_and_reset_recreates(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    db["a"].insert_one({"x": 1})
    args = init_args(mongo_uri(mongo), postgres.uri, dbname)
    assert migrate(*args).rc == 0
    postgres.query(f'INSERT INTO "{dbname}".a VALUES (\'keep\', \'{{}}\')')

    again = migrate(*args)
    assert again.rc == 0, again
    assert "already initialised: the target matches this plan" in again.stdout
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".a') == [(1,)]

    db["b"].insert_one({"y": 2})
    changed = migrate(*args, "--json")
    assert changed.rc == EXIT_STATE, changed
    plan = changed.json()
    assert {c["collection"]: c["recorded"] for c in plan["collections"]} == {
        "a": "exists", "b": "new: not in the recorded plan"}
    assert postgres.query("SELECT to_regclass(%s)", (f'"{dbname}".b',)) == [(None,)]

    refused = migrate(*args, "--reset")
    assert refused.rc == EXIT_USAGE and "--yes" in refused.stderr

    reset = migrate(*args, "--reset", "--yes")
    assert reset.rc == 0, reset
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".a') == [(0,)]
    assert postgres.query("SELECT count(*) FROM _migrate.collections") == [(2,)]


def test_unreachable_source(postgres, migrate):
    port = pick_free_port()
    r = migrate("init", "--source", f"mongodb://app:Secr3t@127.0.0.1:{port}/"
                "?serverSelectionTimeoutMS=1000", "--target", postgres.uri)
    assert r.rc == EXIT_SOURCE, r
    assert f"could not connect to source \"mongodb://app:********@127.0.0.1:{port}/" in r.stderr
    assert "Secr3t" not in r.stdout + r.stderr
    assert not postgres.query("SELECT 1 FROM pg_namespace WHERE nspname = '_migrate'")


def test_wrong_source_credentials(services, postgres, migrate):
    sim = services.add(MongosimInstance(services.root, name="authsim",
                                        args=["--auth", "admin:right"]))
    r = migrate("init", "--source", f"mongodb://admin:wrong@{sim.address}/?authSource=admin",
                "--target", postgres.uri)
    assert r.rc == EXIT_SOURCE, r
    assert "Authentication failed" in r.stderr
    assert "wrong" not in r.stderr.replace("wrong@", "")  # never the password itself


def test_unreachable_and_wrong_target(mongo, dbname, services, migrate):
    mongo[dbname]["a"].insert_one({"x": 1})
    port = pick_free_port()
    r = migrate(*init_args(mongo_uri(mongo), f"postgresql://app:Pw9@127.0.0.1:{port}/db", dbname))
    assert r.rc == EXIT_TARGET, r
    assert "could not connect to target" in r.stderr and "Pw9" not in r.stderr

    pg = services.postgres(name="pwpg", password="right-password")
    r = migrate(*init_args(mongo_uri(mongo),
                           f"postgresql://{pg.user}:WrongPw1@127.0.0.1:{pg.port}/postgres",
                           dbname))
    assert r.rc == EXIT_TARGET, r
    assert "password authentication failed" in r.stderr and "WrongPw1" not in r.stderr


def test_include_matching_nothing(mongo, dbname, postgres, migrate):
    mongo[dbname]["a"].insert_one({"x": 1})
    r = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                f"{dbname}.nope")
    assert r.rc == EXIT_USAGE, r
    assert f'include pattern "{dbname}.nope" matches no collection' in r.stderr
    assert not postgres.query("SELECT 1 FROM pg_namespace WHERE nspname = '_migrate'")

    bad = migrate("init", "--source", mongo_uri(mongo), "--target", postgres.uri, "--include",
                  "nodot")
    assert bad.rc == EXIT_USAGE and 'invalid include pattern "nodot"' in bad.stderr


def test_target_schema_with_unrelated_tables(mongo, dbname, postgres, migrate):
    mongo[dbname]["a"].insert_one({"x": 1})
    postgres.query("CREATE SCHEMA app; CREATE TABLE app.legacy (id int)")
    before = catalog(postgres)
    r = migrate(*init_args(mongo_uri(mongo), postgres.uri, dbname, "--target-schema", "app"))
    assert r.rc == EXIT_TARGET, r
    assert 'target schema "app" already holds 1 table(s) not created by migrate ("legacy")' \
        in r.stderr
    assert catalog(postgres) == before  # nothing half-created


def test_target_database_not_utf8(mongo, dbname, postgres, migrate):
    """A target database in another encoding is refused before anything is created."""
    mongo[dbname]["a"].insert_one({"name": "caf\u00e9 \u20ac"})
    postgres.query("CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                   "TEMPLATE template0")
    target = postgres.uri.rsplit("/", 1)[0] + "/latin"
    before = postgres.query("SELECT nspname FROM pg_namespace ORDER BY 1", dbname="latin")
    r = migrate(*init_args(mongo_uri(mongo), target, dbname))
    assert r.rc == EXIT_TARGET, r
    assert ('could not initialise target database "latin": its encoding is LATIN1; '
            "migrate needs UTF8") in r.stderr, r.stderr
    assert postgres.query("SELECT nspname FROM pg_namespace ORDER BY 1", dbname="latin") == before


def test_client_encoding_from_the_environment_cannot_garble(mongo, dbname, postgres, migrate):
    """PGCLIENTENCODING (or a URI's client_encoding) never makes the server read our UTF-8
    as another encoding: the text lands as the source holds it."""
    text = "caf\u00e9 \u20ac \u6771 \U0001f600"
    mongo[dbname]["a"].insert_one({"_id": "\u00e9", "name": text})
    target = postgres.uri + "?client_encoding=LATIN1"
    env = {"PGCLIENTENCODING": "LATIN1"}
    r = migrate(*init_args(mongo_uri(mongo), target, dbname), env=env)
    assert r.rc == 0, r
    r = migrate("sync", "--source", mongo_uri(mongo), "--target", target, env=env)
    assert r.rc == 0, r
    assert postgres.query(f'SELECT _id, doc->>\'name\' FROM "{dbname}".a') == [("\u00e9", text)]


def as_role(pg, role, sql, params=None):
    """as_role runs sql with the privileges of role (SET ROLE); returns rows or the error."""
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute('SET ROLE "%s"' % role.replace('"', '""'))
            try:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else None
            except psycopg2.Error as e:
                return e
    finally:
        conn.close()


def test_app_role_least_privilege(mongo, dbname, postgres, migrate):
    """--app-role: the role reads and writes the migrated tables (with the SQL helpers) and
    can do nothing else: no state schema, no DDL, not the tables' owner."""
    role = 'app "role" \u00e9'
    mongo[dbname]["a"].insert_many([{"n": i} for i in range(3)])
    r = migrate(*init_args(mongo_uri(mongo), postgres.uri, dbname, "--app-role", role))
    assert r.rc == 0, r
    assert migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri).rc == 0
    assert postgres.query("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s",
                          (role,)) == [(False, False)]
    s = f'"{dbname}"'
    assert as_role(postgres, role, f"SELECT count(*) FROM {s}.a") == [(3,)]
    assert as_role(postgres, role,
                   f"INSERT INTO {s}.a SELECT o, jsonb_build_object('_id', {s}.bson_oid(o), "
                   f"'at', {s}.bson_date(now()), 'price', {s}.bson_double(10)) "
                   f"FROM (SELECT {s}.bson_new_oid() AS o) x RETURNING doc->'price'") == [(10.0,)]
    assert as_role(postgres, role, f"UPDATE {s}.a SET doc = doc || '{{\"x\": 1}}'") is None
    assert as_role(postgres, role, f"DELETE FROM {s}.a WHERE doc ? 'price'") is None
    for sql in ["SELECT * FROM _migrate.collections", "INSERT INTO _migrate.events (kind) "
                "VALUES ('x')", f"CREATE TABLE {s}.mine (x int)", f"DROP TABLE {s}.a",
                f"TRUNCATE {s}.a", f"ALTER TABLE {s}.a ADD COLUMN y int"]:
        e = as_role(postgres, role, sql)
        assert isinstance(e, psycopg2.Error), sql
        assert "permission denied" in str(e) or "must be owner" in str(e), (sql, e)
    assert postgres.query(f"SELECT count(*) FROM {s}.a") == [(3,)]
    # tables migrate creates there later get the same grants
    postgres.query(f"CREATE TABLE {s}.later (x int)")
    assert as_role(postgres, role, f"SELECT count(*) FROM {s}.later") == [(0,)]


def test_app_role_refusals_and_rerun(mongo, dbname, postgres, migrate):
    mongo[dbname]["a"].insert_one({"n": 1})
    before = catalog(postgres)
    postgres.query("CREATE ROLE boss SUPERUSER; CREATE ROLE maker CREATEROLE")
    for role, why in [(postgres.user, "it is the role migrate connects as"),
                      ("boss", "it is a superuser"), ("maker", "it can create roles")]:
        r = migrate(*init_args(mongo_uri(mongo), postgres.uri, dbname, "--app-role", role))
        assert r.rc == EXIT_USAGE, r
        assert f'could not use application role "{role}": {why}' in r.stderr, r.stderr
        assert catalog(postgres) == before
    # a re-run on a target that matches its plan grants to a role named now
    assert migrate(*init_args(mongo_uri(mongo), postgres.uri, dbname)).rc == 0
    assert isinstance(as_role(postgres, "boss", "SELECT 1"), list)  # (superuser: sanity)
    postgres.query("CREATE ROLE late NOLOGIN")
    assert isinstance(as_role(postgres, "late", f'SELECT count(*) FROM "{dbname}".a'),
                      psycopg2.Error)
    r = migrate(*init_args(mongo_uri(mongo), postgres.uri, dbname, "--app-role", "late"))
    assert r.rc == 0, r
    assert as_role(postgres, "late", f'SELECT count(*) FROM "{dbname}".a') == [(0,)]


def test_help_is_true(migrate):
    r = migrate("init", "--help")
    assert r.rc == 0
    for flag in ("--source", "--target", "--include", "--exclude", "--target-schema",
                 "--type-fidelity", "--dry-run", "--reset", "--yes", "--census",
                 "--sample-size", "--state-schema", "--json", "--config"):
        assert flag in r.stdout.replace("--[no-]", "--"), flag
    top = migrate("--help")
    assert "init" in top.stdout


def test_init_names_the_privileges_the_migration_lacks(services, postgres, migrate):
    """issue 15 point 5: a user with readWrite on its database only may copy but not open the
    deployment-wide change stream; the old code passed init and the copy, then failed at
    sync --follow with Unauthorized (13). init refuses, naming what is missing."""
    sim = services.add(MongosimInstance(services.root, name="narrow", args=[
        "--auth", "root:rootpw", "--auth", "app@shop:pw:readWrite@shop",
        "--auth", "wide:pw:readAnyDatabase"]))
    root = pymongo.MongoClient(f"mongodb://root:rootpw@{sim.address}/?authSource=admin",
                               serverSelectionTimeoutMS=5000)
    root["shop"]["orders"].insert_many([{"_id": i} for i in range(5)])
    root.close()
    narrow = f"mongodb://app:pw@{sim.address}/shop?authSource=shop"
    r = migrate("init", "--source", narrow, "--target", postgres.uri, "--include", "shop.*")
    assert r.rc == EXIT_SOURCE, r
    assert "lacks privileges the migration needs" in r.stderr and \
        "changeStream on every database" in r.stderr and "readAnyDatabase" in r.stderr, r.stderr
    assert "shop.orders" not in r.stderr  # what it has is not listed
    assert postgres.query("SELECT count(*) FROM pg_namespace WHERE nspname = '_migrate'") == [
        (0,)]
    wide = f"mongodb://wide:pw@{sim.address}/?authSource=admin"
    r = migrate("init", "--source", wide, "--target", postgres.uri, "--include", "shop.*")
    assert r.rc == 0, r
    r = migrate("sync", "--source", wide, "--target", postgres.uri)
    assert r.rc == 0, r


def test_census_sums_collstats_over_the_shards(services, postgres, migrate):
    """issue 15: through mongos, $collStats returns one document per shard; the census kept
    the last one (about a third of the documents with three shards)."""
    from mgharness.mongosim import MongosimCluster
    sim = services.add(MongosimCluster(services.root, name="sharded", shards=3))
    client = sim.client()
    client.admin.command("shardCollection", "sh.c", key={"_id": "hashed"})
    client["sh"]["c"].insert_many([{"_id": i, "v": "x" * 100} for i in range(3000)])
    stats = list(client["sh"]["c"].aggregate([{"$collStats": {"storageStats": {}}}]))
    client.close()
    assert len(stats) == 3 and all(s["storageStats"]["count"] < 3000 for s in stats)
    r = migrate("init", "--source", sim.uri, "--target", postgres.uri, "--include", "sh.*")
    assert r.rc == 0, r
    assert postgres.query("SELECT doc_count, size_bytes >= 3000 * 100 FROM _migrate.collections "
                          "WHERE db = 'sh' AND coll = 'c'") == [(3000, True)]
