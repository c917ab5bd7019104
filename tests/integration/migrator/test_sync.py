"""Integration: `migrate sync` (the bulk copy) against mongosim (or a real
replica set) and a throwaway PostgreSQL 15.

Proves: every document of several collections (every BSON type, 100 B to
5 MB, mixed _id types) arrives equal through the reverse mapping; kill -9
at 5 seeded random moments and a resume give exactly the source; two
worker processes finish one plan with no partition committed twice;
documents that cannot be written fail their partition naming the _id, or
are recorded with --skip-invalid; SIGTERM stops at a partition boundary;
a kill -9 of the target's postmaster mid-copy is survived by reconnecting.
"""

import os
import random
import signal
import subprocess
import time

import bson
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from mgharness import build_path

EXIT_FAILURE, EXIT_TARGET, EXIT_INTERRUPTED = 1, 4, 6
RAW = CodecOptions(document_class=RawBSONDocument)


def mongo_uri(client):
    host, port = client.address
    return f"mongodb://{host}:{port}/"


def datagen(uri, db, coll, count, *args):
    subprocess.run([build_path("bin", "datagen"), "generate", "--uri", uri, "--db", db, "--coll",
                    coll, "--count", str(count), *args], check=True, capture_output=True,
                   timeout=600)


def schema_tool(mode, lines):
    """schema_tool runs mg_schema_tool MODE relaxed over lines; returns its output lines."""
    proc = subprocess.run([build_path("tests", "bin", "mg_schema_tool"), mode, "relaxed"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          check=True, timeout=600)
    out = proc.stdout.splitlines()
    assert len(out) == len(lines)
    assert not [o for o in out if o.startswith("ERR")], out[:3]
    return out


def assert_same(mongo, pg, db, coll, table=None):
    """assert_same compares every document of db.coll with the target table."""
    source = [d.raw.hex() for d in mongo[db].get_collection(coll, codec_options=RAW).find()]
    rows = [r[0] for r in pg.query(f'SELECT doc::text FROM "{db}"."{table or coll}"')]
    assert len(rows) == len(source), f"{db}.{coll}: {len(rows)} rows, {len(source)} documents"
    assert sorted(schema_tool("parse", rows)) == sorted(schema_tool("canon", source))


def init(migrate, mongo, pg, db, *extra):
    r = migrate("init", "--source", mongo_uri(mongo), "--target", pg.uri, "--include",
                f"{db}.*", *extra)
    assert r.rc == 0, r


def sync_args(mongo, pg, *extra):
    return ["sync", "--source", mongo_uri(mongo), "--target", pg.uri, *extra]


def all_types_docs():
    """Documents holding every BSON type and its edge values, with mixed _id types."""
    big_date = bson.Int64(253402300800000 + 86400000)  # after 9999-12-31
    return [
        {"_id": 1, "double": 1.5, "nan": float("nan"), "inf": float("-inf"), "negzero": -0.0,
         "int32": 7, "int64": bson.Int64(2 ** 40), "dec": bson.Decimal128("1.10E-400"),
         "decnan": bson.Decimal128("NaN")},
        {"_id": "str-id", "s": "caf\u00e9 \u2603", "nul": "a\x00b", "empty": "", "doc": {"$x": 1,
                                                                                     "a.b": 2},
         "arr": [1, "two", [3], {"four": 4}], "oidlike": {"$oid": "not really"}},
        {"_id": bson.ObjectId(), "bin": bson.Binary(b"\x00\x01\xff", 0),
         "uuid": bson.Binary(b"0123456789abcdef", 4), "user": bson.Binary(b"x", 0x80),
         "regex": bson.Regex("^a.*b$", "imsx"), "ts": bson.Timestamp(1700000000, 7),
         "min": bson.MinKey(), "max": bson.MaxKey(), "code": bson.Code("function(){}"),
         "scope": bson.Code("x", {"y": 1}), "null": None, "bool": True,
         "date": bson.datetime.datetime(1969, 7, 20, 20, 17)},
        {"_id": {"compound": 1, "k": "v"}, "far_future": bson.DatetimeMS(big_date)
         if hasattr(bson, "DatetimeMS") else bson.datetime.datetime(9999, 12, 31)},
        {"_id": 2.5, "x": 1},
        {"_id": bson.Int64(3), "x": 2},
    ]


def test_copy_every_type_size_and_id_kind(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    # raw BSON: pymongo 3.11 refuses '$' keys in dicts, MongoDB 5.0+ stores them
    db["alltypes"].insert_many([RawBSONDocument(bson.encode(d)) for d in all_types_docs()])
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "mixed", 3000, "--seed", "7", "--id-type", "mixed",
            "--all-types-every", "10")
    datagen(uri, dbname, "sized", 60, "--seed", "8", "--size-min", "100", "--size-max", "20000",
            "--big-every", "20", "--big-size", str(5 * 1024 * 1024))
    datagen(uri, dbname, "ints", 5000, "--seed", "9", "--id-type", "int")
    init(migrate, mongo, postgres, dbname)
    r = migrate(*sync_args(mongo, postgres, "--partition-docs", "700", "--workers", "2", "--json"))
    assert r.rc == 0, r
    report = r.json()
    assert report["partitions_failed"] == 0
    for coll in ("alltypes", "mixed", "sized", "ints"):
        assert_same(mongo, postgres, dbname, coll)
    # several partitions per collection, all committed exactly once
    parts = postgres.query("SELECT coll, count(*), sum(commits), bool_and(status = 'done') "
                           "FROM _migrate.partitions GROUP BY coll")
    by_coll = {p[0]: p[1:] for p in parts}
    assert by_coll["ints"][0] >= 7 and by_coll["mixed"][0] >= 4  # mixed: split by type class
    assert all(n == c and ok for n, c, ok in by_coll.values())
    # the report says where the time went, per worker
    assert len(report["workers"]) == 2
    for w in report["workers"]:
        assert w["mongo_s"] >= 0 and w["render_s"] > 0 and w["postgres_s"] > 0
    assert report["docs"] == 3000 + 60 + 5000 + len(all_types_docs())
    # status agrees
    st = migrate("status", "--target", postgres.uri, "--json")
    assert st.rc == 0, st
    status = st.json()
    assert status["phase"] == "copied"
    assert {c["collection"]: c["docs_copied"] for c in status["collections"]}["ints"] == 5000


def test_kill_9_at_random_points_then_resume(mongo, dbname, postgres, migrate):
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "events", 60000, "--seed", "11", "--size-min", "300", "--size-max",
            "1200")
    init(migrate, mongo, postgres, dbname)
    rng = random.Random(20261126)
    binary = build_path("bin", "migrate")
    # 60000 documents in partitions of 2500: 24 partitions. Kill at 5 seeded
    # points of progress (partitions done), each plus a seeded delay so the
    # kill lands inside a COPY as well as between partitions.
    points = sorted(rng.sample(range(0, 20), 5))
    killed = 0
    for point in points:
        proc = subprocess.Popen([binary, *sync_args(mongo, postgres, "--partition-docs", "2500",
                                                    "--workers", "2", "--batch-docs", "300")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            done = postgres.query("SELECT count(*) FROM _migrate.partitions "
                                  "WHERE status = 'done'")[0][0]
            if done >= point:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
    done = postgres.query("SELECT count(*) FILTER (WHERE status = 'done'), count(*) "
                          "FROM _migrate.partitions")[0]
    assert killed == 5, "a run finished the copy before its kill point"
    assert done[0] < done[1], "every partition was done before the last kill"
    r = migrate(*sync_args(mongo, postgres, "--partition-docs", "2500", "--workers", "2"))
    assert r.rc == 0, r
    assert_same(mongo, postgres, dbname, "events")
    assert postgres.query("SELECT max(commits), min(commits) FROM _migrate.partitions") == [(1, 1)]


def test_copy_carries_on_through_a_target_crash(mongo, dbname, postgres, migrate, tmp_path):
    # kill -9 of the target's postmaster in the middle of the copy, started
    # again 1 s later on the same port: the workers and the index build
    # reconnect, the partitions in flight are copied again, nothing doubles.
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "events", 60000, "--seed", "12", "--size-min", "300", "--size-max",
            "1200")
    init(migrate, mongo, postgres, dbname)
    log = tmp_path / "sync.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([build_path("bin", "migrate"), "--log-format=json",
                                 *sync_args(mongo, postgres, "--copy-only", "--partition-docs",
                                            "2500", "--workers", "2", "--batch-docs", "300")],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 120
        done = 0
        while proc.poll() is None and time.time() < deadline and done < 4:
            done = postgres.query("SELECT count(*) FROM _migrate.partitions "
                                  "WHERE status = 'done'")[0][0]
            time.sleep(0.01)
        assert proc.poll() is None, "the copy finished before the crash"
        postgres.kill9()
        time.sleep(1.0)
        postgres.start()
        assert proc.wait(timeout=300) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = log.read_text(errors="replace")
    assert '"event":"copy.target_lost"' in events and '"event":"copy.target_back"' in events
    assert_same(mongo, postgres, dbname, "events")
    assert postgres.query("SELECT count(*) FROM _migrate.partitions WHERE status <> 'done'") == \
        [(0,)]
    assert postgres.query("SELECT max(commits) FROM _migrate.partitions") == [(1,)]


def test_a_partition_lost_after_the_workers_finished_is_copied_again(mongo, dbname, postgres,
                                                                       migrate, tmp_path):
    # Emulates a commit a failover lost after every worker had finished: when
    # sync clears its progress row (right after the workers end), a trigger
    # empties one collection and sets its partition pending again. sync must
    # copy it again before calling the collection copied.
    db = mongo[dbname]
    db["small"].insert_many([{"_id": i, "v": "x" * 50} for i in range(300)])
    datagen(mongo_uri(mongo), dbname, "big", 5000, "--seed", "13")
    init(migrate, mongo, postgres, dbname)
    postgres.query(f"""
        CREATE TABLE _migrate.test_lost (done boolean);
        CREATE FUNCTION _migrate.test_lose() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM _migrate.test_lost) THEN
                INSERT INTO _migrate.test_lost VALUES (true);
                DELETE FROM "{dbname}"."small";
                UPDATE _migrate.partitions SET status = 'pending'
                    WHERE db = '{dbname}' AND coll = 'small';
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER test_lose AFTER DELETE ON _migrate.copy_progress
            FOR EACH STATEMENT EXECUTE FUNCTION _migrate.test_lose();""")
    r = migrate(*sync_args(mongo, postgres, "--copy-only", "--partition-docs", "1000",
                           "--workers", "2"))
    assert r.rc == 0, r
    assert postgres.query("SELECT count(*) FROM _migrate.test_lost") == [(1,)]
    assert '"event":"sync.recopy"' in r.stderr
    assert_same(mongo, postgres, dbname, "small")
    assert_same(mongo, postgres, dbname, "big")
    assert postgres.query("SELECT count(*) FROM _migrate.partitions WHERE status <> 'done'") == \
        [(0,)]
    assert postgres.query("SELECT phase FROM _migrate.migration") == [("copied",)]


def test_two_worker_processes_share_one_plan(mongo, dbname, postgres, migrate):
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "shared", 40000, "--seed", "12", "--size-min", "300", "--size-max",
            "900")
    init(migrate, mongo, postgres, dbname)
    binary = build_path("bin", "migrate")
    main = subprocess.Popen([binary, *sync_args(mongo, postgres, "--partition-docs", "1000",
                                                "--workers", "1", "--batch-docs", "200")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not postgres.query("SELECT count(*) FROM _migrate.partitions")[0][0]:
        assert time.time() < deadline and main.poll() is None
        time.sleep(0.05)
    other = migrate(*sync_args(mongo, postgres, "--worker", "--workers", "1", "--batch-docs",
                               "200"))
    out, err = main.communicate(timeout=300)
    assert main.returncode == 0, err
    assert other.rc == 0, other
    rows = postgres.query("SELECT split_part(worker, '/', 1), count(*), sum(commits) "
                          "FROM _migrate.partitions GROUP BY 1")
    assert len(rows) == 2, rows  # both processes copied partitions
    assert all(n == c for _, n, c in rows)  # and none was committed twice
    assert_same(mongo, postgres, dbname, "shared")


def test_invalid_documents_fail_their_partition_or_are_skipped(mongo, dbname, postgres,
                                                                 migrate):
    db = mongo[dbname]
    db["docs"].insert_many([{"_id": i, "v": i} for i in range(100)])
    db["docs"].insert_one({"_id": 1000, "blob": "x" * (2 * 1024 * 1024)})
    db["docs"].insert_one({"_id": 1001, "poison": True})
    init(migrate, mongo, postgres, dbname)
    # PostgreSQL refuses a row: a CHECK constraint stands for any server-side refusal
    postgres.query(f'ALTER TABLE "{dbname}".docs ADD CHECK (doc->>\'poison\' IS NULL)')
    r = migrate(*sync_args(mongo, postgres, "--doc-cap", "1MB"))
    assert r.rc == EXIT_FAILURE, r
    st = migrate("status", "--target", postgres.uri, "--json").json()
    (failed,) = st["failed_partitions"]
    assert "_id 1000" in failed["error"] and "buffer limit" in failed["error"]
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".docs') == [(0,)]

    r = migrate(*sync_args(mongo, postgres, "--doc-cap", "1MB", "--skip-invalid"))
    assert r.rc == 0, r
    st = migrate("status", "--target", postgres.uri, "--json").json()
    invalid = {d["_id"]: d["reason"] for d in st["invalid_docs"]}
    assert set(invalid) == {"1000", "1001"}
    assert "check constraint" in invalid["1001"]
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".docs') == [(100,)]
    text = migrate("status", "--target", postgres.uri)
    assert "invalid documents (2" in text.stdout


def test_id_that_does_not_fit_the_key_names_it(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    db["c"].insert_many([{"v": i} for i in range(10)])  # ObjectIds: key text_objectid
    init(migrate, mongo, postgres, dbname)
    db["c"].insert_one({"_id": 42, "late": True})  # arrives after init's census
    r = migrate(*sync_args(mongo, postgres))
    assert r.rc == EXIT_FAILURE, r
    st = migrate("status", "--target", postgres.uri, "--json").json()
    (failed,) = st["failed_partitions"]
    assert "_id 42: _id does not fit key type text_objectid" in failed["error"], failed
    assert f"--key-type {dbname}.c=canonical" in failed["error"], failed
    coll = {c["collection"]: c for c in st["collections"]}["c"]
    assert coll["status"] == "failed"


def test_sigterm_stops_at_a_partition_boundary(mongo, dbname, postgres, migrate):
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "slow", 50000, "--seed", "13", "--size-min", "300", "--size-max",
            "1200")
    init(migrate, mongo, postgres, dbname)
    binary = build_path("bin", "migrate")
    args = sync_args(mongo, postgres, "--partition-docs", "2000", "--workers", "2",
                     "--batch-docs", "200")
    proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 60
    while not postgres.query("SELECT count(*) FROM _migrate.partitions WHERE status = 'done'")[
            0][0]:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "run the same command again to resume" in out
    statuses = dict(postgres.query("SELECT status, count(*) FROM _migrate.partitions GROUP BY 1"))
    assert set(statuses) <= {"done", "pending"} and statuses.get("pending")
    r = migrate(*args)
    assert r.rc == 0, r
    assert_same(mongo, postgres, dbname, "slow")


def test_sync_before_init_and_help(postgres, mongo, migrate):
    r = migrate(*sync_args(mongo, postgres))
    assert r.rc == 8 and "run migrate init first" in r.stderr
    h = migrate("sync", "--help")
    assert h.rc == 0
    for flag in ("--workers", "--partition-docs", "--partition-size", "--skip-invalid",
                 "--worker", "--doc-cap", "--batch-docs"):
        assert flag in h.stdout.replace("--[no-]", "--"), flag



def symbol_id_doc(text):
    """a raw document {_id: Symbol(text), poison: true} (pymongo writes no Symbol)."""
    value = text.encode() + b"\x00"
    body = (b"\x0e_id\x00" + len(value).to_bytes(4, "little") + value +
            b"\x08poison\x00\x01")
    return RawBSONDocument((len(body) + 5).to_bytes(4, "little") + body + b"\x00")


def poisoned_partition(mongo, postgres, migrate, dbname):
    """the randomized test's two documents, {_id: {a: 1}} and {_id: Symbol('éz' x 1500)};
    PostgreSQL refuses the second (a CHECK constraint stands for any refusal), so the
    partition fails with a reason naming a long non-ASCII _id."""
    db = mongo[dbname]
    db["c"].insert_one({"_id": {"a": 1}})
    db["c"].insert_one(symbol_id_doc("\u00e9z" * 1500))
    init(migrate, mongo, postgres, dbname)
    postgres.query(f'ALTER TABLE "{dbname}".c ADD CHECK (doc->>\'poison\' IS NULL)')


def test_a_failing_partition_is_marked_failed_with_a_utf8_reason(mongo, dbname, postgres,
                                                                 migrate):
    """the reason names the _id cut to the message size: the old code cut it
    mid-character, PostgreSQL refused it, mark_failed ignored that and the partition was
    claimed again ~88,000 times (the test times out on it)."""
    poisoned_partition(mongo, postgres, migrate, dbname)
    r = migrate(*sync_args(mongo, postgres), timeout=120)
    assert r.rc == EXIT_FAILURE, r
    assert r.stderr.count('"event":"sync.partition_failed"') == 1, r.stderr[-3000:]
    (failed,) = migrate("status", "--target", postgres.uri, "--json").json()["failed_partitions"]
    assert "check constraint" in failed["error"] and "\u00e9z\u00e9z" in failed["error"], failed
    assert postgres.query("SELECT count(*) FROM _migrate.partitions WHERE status = 'failed'") \
        == [(1,)]


def test_a_partition_that_cannot_be_marked_failed_stops_the_run(mongo, dbname, postgres,
                                                                migrate):
    """recording the failure fails too (a trigger refuses it): the run stops with both
    reasons instead of claiming the partition again in a tight loop (the old code)."""
    poisoned_partition(mongo, postgres, migrate, dbname)
    postgres.query("CREATE FUNCTION _migrate.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN IF NEW.status = 'failed' THEN RAISE EXCEPTION 'no failures here'; "
                   "END IF; RETURN NEW; END$$")
    postgres.query("CREATE TRIGGER refuse BEFORE UPDATE ON _migrate.partitions FOR EACH ROW "
                   "EXECUTE FUNCTION _migrate.refuse()")
    r = migrate(*sync_args(mongo, postgres, "--workers", "1"), timeout=120)
    assert r.rc == EXIT_TARGET, r
    assert "could not mark partition 0 of" in r.stderr and "no failures here" in r.stderr and \
        "check constraint" in r.stderr, r.stderr[-3000:]
    assert r.stderr.count('"event":"sync.partition_failed"') == 1, r.stderr[-3000:]


def test_t0_is_where_a_change_stream_starts(mongo, dbname, postgres, migrate):
    """issue 15: T0 is taken from a change stream opened before the copy (its post-batch
    resume token), as the change-streams specification takes a stream's starting point,
    not from ping's operationTime (the old code); the stream replays from it."""
    db = mongo[dbname]
    db["c"].insert_many([{"_id": i} for i in range(10)])
    init(migrate, mongo, postgres, dbname)
    with mongo.watch() as probe:
        probe.try_next()
        data = probe.resume_token["_data"]  # the stream's start now: 0x82, then the seconds
    r = migrate(*sync_args(mongo, postgres))
    assert r.rc == 0, r
    t0 = [line for line in r.stderr.splitlines() if '"event":"sync.t0"' in line]
    assert len(t0) == 1 and '"from":"stream"' in t0[0], r.stderr[-3000:]
    (ts, inc), = postgres.query("SELECT t0_ts, t0_inc FROM _migrate.migration")
    assert data[:2] == "82" and ts >= int(data[2:10], 16), (data, ts, inc)
    assert_same(mongo, postgres, dbname, "c")
