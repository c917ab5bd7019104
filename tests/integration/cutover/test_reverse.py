"""Integration: the way back (issue 21) against a per-test mongosim and a
throwaway PostgreSQL 15 (wal_level=logical): the cutover's reverse
capture, `migrate sync --reverse` and `migrate fallback`
(docs/cdc.md "The way back", docs/cutover.md "Fallback").

Proves: the cutover makes the slot and publication before the flip (and
--no-fallback makes none); writes the application makes on PostgreSQL
after the flip (inserts, updates, deletes, a multi-statement transaction,
a changed key) reach MongoDB through the frozen source's write block; a
second run applies nothing again; kill -9 of `sync --reverse --follow`
under a stream of PostgreSQL writes loses nothing and duplicates nothing
(every acknowledged write is in MongoDB, MongoDB equals PostgreSQL);
`migrate fallback` freezes PostgreSQL's writers, drains to its fence,
unfreezes MongoDB and flips the endpoint back, and the source has every
write.
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

import psycopg2
import pymongo
import pytest

from mgharness import build_path
from mgharness.mongosim import MongosimInstance

from test_cdc import wait_for
from test_cutover import ENDPOINT, write_error_code
from test_sync import datagen

# the migration's user holds bypassWriteBlockingMode (root, as restore does on MongoDB 6.0+);
# the application's does not
MIG, APP = "mig:pw", "app:pw"


@pytest.fixture
def sim(services):
    return services.add(MongosimInstance(services.root, name="source-rev", args=[
        "--auth", MIG + ":root", "--auth", APP + ":readWriteAnyDatabase"]))


@pytest.fixture
def source_uri(sim):
    return f"mongodb://{MIG}@{sim.address}/?authSource=admin"


@pytest.fixture
def app(sim):
    client = pymongo.MongoClient(f"mongodb://{APP}@{sim.address}/?authSource=admin",
                                 serverSelectionTimeoutMS=5000)
    yield client
    client.close()


def src(migrate, uri, pg, *args):
    return migrate(*args, "--source", uri, "--target", pg.uri)


def prepare(uri, pg, migrate, db, count=300):
    """a copied, caught-up and validated migration of db.docs."""
    datagen(uri, db, "docs", count, "--seed", "7", "--size-min", "100", "--size-max", "800")
    for args in (["init", "--include", f"{db}.*"], ["sync"], ["validate", "--full"]):
        r = src(migrate, uri, pg, *args)
        assert r.rc == 0, r


def cutover_args(uri, pg, *extra):
    # the migration's own user writes the way back through the freeze: named, as the
    # preflight asks of every user that may bypass it (docs/cutover.md, "Preflight")
    return ["cutover", "--source", uri, "--target", pg.uri, "--max-lag", "10s", "--endpoint",
            ENDPOINT, "--allow-bypass-users", "mig@admin", *extra]


def table_of(pg, db, coll="docs"):
    rows = pg.query("SELECT schema_name, table_name FROM _migrate.collections "
                    "WHERE db = %s AND coll = %s", (db, coll))
    assert rows, "no such migrated collection"
    return '"%s"."%s"' % rows[0]


def cut_over(uri, app, pg, migrate, db, tmp_path, *extra):
    prepare(uri, pg, migrate, db, count=300)
    r = migrate(*cutover_args(uri, pg, "--endpoint-file", str(tmp_path / "ep"), *extra))
    assert r.rc == 0, r
    assert write_error_code(app, db) == 371  # the source stays frozen for the application


def pg_docs(pg, table):
    """pg_docs maps _id (as MongoDB gives it back) -> the document, read through MongoDB's
    JSON form: the reverse mapping is what the test checks, so compare plain fields."""
    return {r[0]: r[1] for r in pg.query(f"SELECT _id::text, doc FROM {table}")}


def test_cutover_makes_the_capture_and_no_fallback_makes_none(source_uri, app, mongo, dbname,
                                                              postgres, migrate, tmp_path):
    cut_over(source_uri, app, postgres, migrate, dbname, tmp_path)
    slots = postgres.query("SELECT slot_name, plugin, slot_type FROM pg_replication_slots")
    assert len(slots) == 1 and slots[0][1:] == ("pgoutput", "logical"), slots
    cap = postgres.query("SELECT slot_name, publication, generation, status FROM "
                         "_migrate.reverse")
    assert cap == [(slots[0][0], slots[0][0], 1, "ready")], cap
    pub = postgres.query("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                         "WHERE pubname = %s", (cap[0][1],))
    assert [p[0] for p in pub] == [table_of(postgres, dbname).replace('"', "")], pub

    # a second migration of the same target with --no-fallback: no slot is made again
    postgres.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
    postgres.query("DELETE FROM _migrate.reverse RETURNING 1")
    postgres.query("DELETE FROM _migrate.cutover RETURNING 1")
    os.unlink(tmp_path / "ep")
    mongo.admin.command({"setUserWriteBlockMode": 1, "global": False})
    assert write_error_code(app, dbname) is None
    r = migrate(*cutover_args(source_uri, postgres, "--endpoint-file", str(tmp_path / "ep"),
                              "--validation-age", "0", "--no-fallback"))
    assert r.rc == 0, r
    assert postgres.query("SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert postgres.query("SELECT count(*) FROM _migrate.reverse") == [(0,)]
    r = migrate("sync", "--reverse", "--source", source_uri, "--target", postgres.uri)
    assert r.rc == 8, r  # the state forbids it: no capture
    assert "no reverse capture" in r.stderr, r


def test_reverse_sync_applies_postgres_writes_once(source_uri, app, mongo, dbname, postgres,
                                                   migrate, tmp_path):
    cut_over(source_uri, app, postgres, migrate, dbname, tmp_path)
    t = table_of(postgres, dbname)
    before = mongo[dbname]["docs"].count_documents({})
    some = [r[0] for r in postgres.query(f"SELECT _id FROM {t} ORDER BY _id LIMIT 3")]
    with postgres.connect(autocommit=False) as conn, conn.cursor() as cur:
        # one transaction: inserts (one with a field a replacement could not hold), an update,
        # a delete, a changed key
        cur.execute(f"INSERT INTO {t} (_id, doc) VALUES ('pg-1', "
                    "'{\"_id\": \"pg-1\", \"n\": 1, \"$top\": true}'), ('pg-2', "
                    "'{\"_id\": \"pg-2\", \"n\": 2, \"when\": {\"$date\": \"2026-01-02T03:04:05Z\"}}')")
        cur.execute(f"UPDATE {t} SET doc = jsonb_set(doc, '{{edited}}', 'true') WHERE _id = %s",
                    (some[0],))
        cur.execute(f"DELETE FROM {t} WHERE _id = %s", (some[1],))
        conn.commit()
    postgres.query(f"UPDATE {t} SET _id = 'pg-3', doc = '{{\"_id\": \"pg-3\", \"moved\": 1}}' "
                   "WHERE _id = 'pg-2' RETURNING 1")
    r = migrate("sync", "--reverse", "--source", source_uri, "--target", postgres.uri)
    assert r.rc == 0, r
    assert "2 transactions" in r.stdout, r
    c = mongo[dbname]["docs"]
    assert c.find_one({"_id": "pg-1"}) == {"_id": "pg-1", "n": 1, "$top": True}
    assert c.find_one({"_id": "pg-2"}) is None
    assert c.find_one({"_id": "pg-3"}) == {"_id": "pg-3", "moved": 1}
    assert c.find_one({"_id": some[1]}) is None
    assert c.find_one({"_id": _oid(some[0])})["edited"] is True
    assert c.count_documents({}) == before + 1  # + pg-1, + pg-3, - some[1]
    pos = mongo["_migrate"]["reverse_position"].find_one({})
    assert pos["txns"] == 2 and pos["part_lsn"] == 0, pos
    # a second run finds nothing new and applies nothing again
    r = migrate("sync", "--reverse", "--source", source_uri, "--target", postgres.uri)
    assert r.rc == 0 and "0 transactions" in r.stdout, r
    assert mongo["_migrate"]["reverse_position"].find_one({})["txns"] == 2
    # the slot was told: it no longer holds what MongoDB has
    conf = postgres.query("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots",
                          (_lsn(pos["lsn"]),))
    assert conf == [(True,)], conf
    # migrate status shows the way back: what MongoDB has, the WAL the slot keeps, the warning
    r = migrate("status", "--target", postgres.uri, "--json")
    assert r.rc == 0, r
    rev = r.json()["reverse"]
    assert rev["applied_txns"] == 2 and rev["slot_exists"] and not rev["slot_active"], rev
    pos = mongo["_migrate"]["reverse_position"].find_one({})
    assert rev["applied_lsn"] == _lsn(pos["lsn"]) and rev["retained_bytes"] >= 0, rev
    assert rev["max_slot_wal_keep_size"] == -1, rev
    r = migrate("status", "--target", postgres.uri)
    assert "2 transactions applied" in r.stdout and "max_slot_wal_keep_size unbounded" in r.stdout
    assert "keeps WAL until the disk fills" in r.stdout, r


def _oid(text):
    import bson
    return bson.ObjectId(text) if len(text) == 24 else text


def _lsn(v):
    return "%X/%X" % (v >> 32, v & 0xFFFFFFFF)


def test_reverse_sync_refuses_a_doc_with_no_bson_form(source_uri, app, mongo, dbname, postgres,
                                                      migrate, tmp_path):
    cut_over(source_uri, app, postgres, migrate, dbname, tmp_path)
    t = table_of(postgres, dbname)
    postgres.query(f"INSERT INTO {t} (_id, doc) VALUES ('bad', '{{\"_id\": \"other\"}}') "
                   "RETURNING 1")
    r = migrate("sync", "--reverse", "--source", source_uri, "--target", postgres.uri)
    assert r.rc != 0, r
    assert '"bad"' in r.stderr and t in r.stderr and "not the row's" in r.stderr, r
    assert mongo[dbname]["docs"].find_one({"_id": "other"}) is None
    assert mongo[dbname]["docs"].find_one({"_id": "bad"}) is None


def writer(pg, table, n, ack_path, stop, seed):
    """writer commits n transactions on PostgreSQL: mostly one insert, update or delete of its
    own keys, every fifth one 15 upserts (more than the follower's --batch-events: applied in
    parts). Each acknowledged transaction is logged with its number of row changes; returns
    {key: v} as PostgreSQL acknowledged it."""
    rnd = random.Random(seed)
    live = {}
    conn = psycopg2.connect(pg.dsn)
    conn.autocommit = False
    with open(ack_path, "w") as ack, conn.cursor() as cur:
        for i in range(n):
            if stop.is_set():
                break
            staged = {}
            if i % 5 == 4:
                for k in rnd.sample(range(200), 15):
                    staged[f"w{k}"] = i
            else:
                k = f"w{rnd.randrange(200)}"
                staged[k] = None if k in live and rnd.random() < 0.3 else i
            for k, v in staged.items():
                if v is None:
                    cur.execute(f"DELETE FROM {table} WHERE _id = %s", (k,))
                else:
                    doc = {"_id": k, "v": v, "pad": "x" * rnd.randrange(2000)}
                    cur.execute(f"INSERT INTO {table} (_id, doc) VALUES (%s, %s) ON CONFLICT "
                                "(_id) DO UPDATE SET doc = EXCLUDED.doc", (k, json.dumps(doc)))
            conn.commit()
            for k, v in staged.items():
                if v is None:
                    live.pop(k, None)
                else:
                    live[k] = v
            ack.write(json.dumps([i, len(staged)]) + "\n")
            ack.flush()
    conn.close()
    return live


def test_kill_9_of_the_reverse_follower_loses_and_repeats_nothing(source_uri, app, mongo, dbname,
                                                                  postgres, migrate, tmp_path):
    cut_over(source_uri, app, postgres, migrate, dbname, tmp_path)
    t = table_of(postgres, dbname)
    seed = int(os.environ.get("MG_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    binary = build_path("bin", "migrate")
    args = [binary, "sync", "--reverse", "--follow", "--source", source_uri, "--target",
            postgres.uri, "--batch-events", "7"]
    stop = threading.Event()
    result = {}
    th = threading.Thread(target=lambda: result.update(
        live=writer(postgres, t, 1500, str(tmp_path / "ack"), stop, seed)))
    th.start()
    try:
        for _ in range(3):
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(random.Random(seed).uniform(0.8, 2.0))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        th.join(timeout=300)
    finally:
        stop.set()
        th.join()
    r = migrate("sync", "--reverse", "--source", source_uri, "--target", postgres.uri)
    assert r.rc == 0, r
    live = result["live"]
    c = mongo[dbname]["docs"]
    got = {d["_id"]: d["v"] for d in c.find({"_id": {"$regex": "^w"}})}
    assert got == live, (seed, sorted(set(got.items()) ^ set(live.items()))[:10])
    pg = {k: v["v"] for k, v in pg_docs(postgres, t).items() if k.startswith("w")}
    assert got == pg
    # every committed PostgreSQL transaction, and each of its row changes, is applied once:
    # MongoDB's position counts them in the same transactions as the writes
    acked = [json.loads(line) for line in open(tmp_path / "ack")]
    pos = mongo["_migrate"]["reverse_position"].find_one({})
    assert (pos["txns"], pos["changes"]) == (len(acked), sum(n for _, n in acked)), seed


def app_role(pg, table):
    """app_role makes the application's PostgreSQL role: it may read and write the table."""
    schema = table.split(".")[0]
    pg.query("CREATE ROLE appw LOGIN")
    pg.query(f"GRANT USAGE ON SCHEMA {schema} TO appw")
    pg.query(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO appw")


def app_writer(pg, table, ack_path, stop, seed):
    """app_writer writes as appw until stop or until PostgreSQL refuses it (the freeze), logging
    every acknowledged transaction; returns {key: v} as PostgreSQL acknowledged it."""
    rnd = random.Random(seed)
    live, i = {}, 0
    conn = psycopg2.connect(host=pg.host, port=pg.port, user="appw", dbname=pg.dbname)
    try:
        with open(ack_path, "w") as ack:
            while not stop.is_set():
                k = f"w{rnd.randrange(100)}"
                i += 1
                with conn.cursor() as cur:
                    if k in live and rnd.random() < 0.25:
                        cur.execute(f"DELETE FROM {table} WHERE _id = %s", (k,))
                    else:
                        cur.execute(f"INSERT INTO {table} (_id, doc) VALUES (%s, %s) ON CONFLICT "
                                    "(_id) DO UPDATE SET doc = EXCLUDED.doc",
                                    (k, json.dumps({"_id": k, "v": i})))
                conn.commit()
                if k in live and "DELETE" in cur.query.decode():
                    del live[k]
                else:
                    live[k] = i
                ack.write(f"{k} {i}\n")
                ack.flush()
    except psycopg2.Error:
        pass  # the freeze: privileges revoked, the session ended
    finally:
        try:
            conn.close()
        except psycopg2.Error:
            pass
    return live


def test_fallback_brings_every_postgres_write_back(source_uri, app, mongo, dbname, postgres,
                                                  migrate, tmp_path, sim):
    cut_over(source_uri, app, postgres, migrate, dbname, tmp_path)
    t = table_of(postgres, dbname)
    app_role(postgres, t)
    seed = int(os.environ.get("MG_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    follower = subprocess.Popen([build_path("bin", "migrate"), "sync", "--reverse", "--follow",
                                 "--source", source_uri, "--target", postgres.uri],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop, result = threading.Event(), {}
    th = threading.Thread(target=lambda: result.update(
        live=app_writer(postgres, t, str(tmp_path / "ack"), stop, seed)))
    th.start()
    ep = tmp_path / "ep-back"
    back = f"mongodb://{APP}@{sim.address}/?authSource=admin"
    try:
        time.sleep(2)
        assert th.is_alive(), "the application's writer stopped before the fallback"
        r = migrate("fallback", "--source", source_uri, "--target", postgres.uri,
                    "--freeze-role", "appw", "--endpoint", back, "--endpoint-file", str(ep))
        assert r.rc == 0, r
        th.join(timeout=30)
        assert not th.is_alive(), "the freeze did not stop the application's writes"
    finally:
        stop.set()
        th.join()
        follower.kill()
        follower.wait()
    assert "fallback done" in r.stdout and "write-unavailability window" in r.stdout, r
    assert ep.read_text() == back + "\n"
    live = result["live"]
    assert len(live) > 5, live
    # every write PostgreSQL acknowledged is in MongoDB, and nothing else
    got = {d["_id"]: d["v"] for d in mongo[dbname]["docs"].find({"_id": {"$regex": "^w"}})}
    assert got == live, (seed, sorted(set(got.items()) ^ set(live.items()))[:10])
    # the application writes to MongoDB again; PostgreSQL refuses it
    assert write_error_code(app, dbname) is None
    with pytest.raises(psycopg2.Error):
        conn = psycopg2.connect(host=postgres.host, port=postgres.port, user="appw",
                                dbname=postgres.dbname)
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} (_id, doc) VALUES ('late', '{{\"_id\": \"late\"}}')")
    # the capture is gone (its slot would hold WAL forever); a second run does nothing
    assert postgres.query("SELECT count(*) FROM pg_replication_slots") == [(0,)]
    st = postgres.query("SELECT outcome, unavailable_s IS NOT NULL FROM _migrate.fallback")
    assert st == [("done", True)], st
    r = migrate("fallback", "--source", source_uri, "--target", postgres.uri,
                "--freeze-role", "appw")
    assert r.rc == 0 and "already done" in r.stdout, r


def test_fallback_refusals_and_abort_gives_privileges_back(source_uri, app, mongo, dbname,
                                                           postgres, migrate, tmp_path):
    # before any cutover: refused, nothing frozen
    prepare(source_uri, postgres, migrate, dbname)
    r = migrate("fallback", "--source", source_uri, "--target", postgres.uri,
                "--freeze-role", "x")
    assert r.rc == 8 and "no cutover has flipped" in r.stderr, r
    r = migrate(*cutover_args(source_uri, postgres, "--endpoint-file", str(tmp_path / "ep"),
                              "--validation-age", "0"))
    assert r.rc == 0, r
    t = table_of(postgres, dbname)
    app_role(postgres, t)
    # a role that may write through PUBLIC is not frozen by revoking its own grants: abort,
    # and appw gets back what it had
    postgres.query(f"GRANT INSERT ON {t} TO PUBLIC")
    r = migrate("fallback", "--source", source_uri, "--target", postgres.uri,
                "--freeze-role", "appw", "--endpoint-file", str(tmp_path / "back"))
    assert r.rc == 7, r
    assert '"appw" may still write' in r.stderr, r
    privs = postgres.query("SELECT privilege_type FROM information_schema.role_table_grants "
                           "WHERE grantee = 'appw' ORDER BY 1")
    assert [p[0] for p in privs] == ["DELETE", "INSERT", "SELECT", "UPDATE"], privs
    assert write_error_code(app, dbname) == 371  # MongoDB still frozen
    assert not (tmp_path / "back").exists()
    assert postgres.query("SELECT outcome FROM _migrate.fallback") == [("aborted",)]


def test_cutover_refuses_without_logical_wal_unless_no_fallback(source_uri, app, mongo, dbname,
                                                               services, migrate, tmp_path):
    pg = services.postgres(extra_conf={"wal_level": "replica"})
    prepare(source_uri, pg, migrate, dbname)
    r = migrate(*cutover_args(source_uri, pg, "--endpoint-file", str(tmp_path / "ep")))
    assert r.rc == 8, r  # refused by the preflight: nothing frozen
    assert "wal_level is replica" in r.stderr and "--no-fallback" in r.stderr, r
    assert write_error_code(app, dbname) is None
    r = migrate(*cutover_args(source_uri, pg, "--endpoint-file", str(tmp_path / "ep"),
                              "--no-fallback"))
    assert r.rc == 0, r
    assert pg.query("SELECT count(*) FROM pg_replication_slots") == [(0,)]


def test_kill_9_of_the_fallback_in_the_drain_resumes(source_uri, app, mongo, dbname, postgres,
                                                    migrate, tmp_path):
    cut_over(source_uri, app, postgres, migrate, dbname, tmp_path)
    t = table_of(postgres, dbname)
    app_role(postgres, t)
    binary = build_path("bin", "migrate")
    follower = subprocess.Popen([binary, "sync", "--reverse", "--follow", "--source", source_uri,
                                 "--target", postgres.uri],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fb = None
    try:
        wait_for(lambda: postgres.query("SELECT active FROM pg_replication_slots") == [(True,)],
                 what="the reverse follower on the slot")
        # the follower stops reading: the application's writes wait in the slot
        follower.send_signal(signal.SIGSTOP)
        conn = psycopg2.connect(host=postgres.host, port=postgres.port, user="appw",
                                dbname=postgres.dbname)
        with conn.cursor() as cur:
            for k in range(5):
                cur.execute(f"INSERT INTO {t} (_id, doc) VALUES (%s, %s)",
                            (f"d{k}", json.dumps({"_id": f"d{k}", "k": k})))
                conn.commit()
        conn.close()
        fb = subprocess.Popen([binary, "fallback", "--source", source_uri, "--target",
                               postgres.uri, "--freeze-role", "appw", "--timeout", "120s",
                               "--endpoint-file", str(tmp_path / "back")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: postgres.query("SELECT step FROM _migrate.fallback") == [("drain",)],
                 what="the fallback's drain")
        os.kill(fb.pid, signal.SIGKILL)
        fb.wait()
    finally:
        if fb is not None and fb.poll() is None:
            fb.kill()
            fb.wait()
        follower.kill()
        follower.wait()
    # after the crash: PostgreSQL frozen for the application, MongoDB still frozen, no flip
    assert postgres.query(f"SELECT has_table_privilege('appw', '{t}', 'INSERT')") == [(False,)]
    assert write_error_code(app, dbname) == 371
    assert not (tmp_path / "back").exists()
    assert mongo[dbname]["docs"].count_documents({"_id": {"$regex": "^d"}}) == 0
    r = migrate("fallback", "--source", source_uri, "--target", postgres.uri,
                "--freeze-role", "appw", "--timeout", "120s",
                "--endpoint-file", str(tmp_path / "back"))
    assert r.rc == 0, r
    assert "resuming the fallback at freeze" in r.stderr, r
    assert sorted(d["k"] for d in mongo[dbname]["docs"].find({"_id": {"$regex": "^d"}})) == \
        list(range(5))
    assert write_error_code(app, dbname) is None
    row = postgres.query("SELECT outcome, attempt, steps ? 'resume' FROM _migrate.fallback")
    assert row == [("done", 1, True)], row
    # the privileges the first attempt recorded are the ones a fallback would give back
    rec = postgres.query("SELECT jsonb_array_length(revoked) FROM _migrate.fallback")
    assert rec == [(3,)], rec  # INSERT, UPDATE, DELETE of appw (SELECT is not revoked)
