"""Integration: the change-stream phase of `migrate sync` against mongosim
(or a real replica set) and a throwaway PostgreSQL 15.

Proves: a live workload during and after the copy converges (document by
document, and every acknowledged write of datagen's log is in the target);
kill -9 at 10 seeded points with the checkpoint never moving backwards;
each operation type and the drop/rename policies; source transactions never
seen half applied; source faults injected with failCommand; history lost and
--resync; a target restart; the lag of an idle source.
"""

import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request

import bson
from bson import json_util
import pytest
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from mgharness import build_path, pick_free_port
from mgharness.mongosim import MongosimInstance

from test_sync import assert_same, datagen, init, mongo_uri, schema_tool

EXIT_SOURCE = 3
RAW = CodecOptions(document_class=RawBSONDocument)


def sync(migrate, mongo, pg, *extra, uri=None):
    return migrate("sync", "--source", uri or mongo_uri(mongo), "--target", pg.uri, *extra)


def workload(uri, db, coll, existing, seconds, ack_log, seed, rate=800):
    return subprocess.Popen([build_path("bin", "datagen"), "workload", "--uri", uri, "--db", db,
                             "--coll", coll, "--existing", str(existing), "--rate", str(rate),
                             "--duration", str(seconds), "--ack-log", ack_log, "--seed",
                             str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")  # its messages may quote raw bytes


def assert_ack_log_reflected(pg, db, coll, ack_log):
    """every acknowledged write's final state (last line per _id) is in the target.

    Both sides go through the canonical form (mg_schema_tool), so Extended
    JSON number wrappers and key order do not matter."""
    final = {}
    with open(ack_log) as f:
        for line in f:
            rec = json.loads(line)
            final[json.dumps(rec["id"], sort_keys=True)] = rec
    assert final, "the workload acknowledged nothing"
    # UUIDs (binary subtype 4) must stay subtype 4: pymongo 3 would encode
    # them as its legacy subtype 3 by default.
    jopts = json_util.JSONOptions(uuid_representation=UuidRepresentation.STANDARD)
    copts = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)

    def enc(doc):
        return bson.encode(json_util.loads(json.dumps(doc), json_options=jopts),
                           codec_options=copts).hex()

    kept = [enc(r["doc"]) for r in final.values() if r["doc"] is not None]
    gone = [enc({"_id": r["id"]}) for r in final.values() if r["doc"] is None]
    rows = [r[0] for r in pg.query(f'SELECT doc::text FROM "{db}"."{coll}"')]
    target = set(schema_tool("parse", rows))
    missing = set(schema_tool("canon", kept)) - target
    assert not missing, f"{len(missing)} acknowledged documents are not in the target"
    target_ids = set(schema_tool("canon", [
        bson.encode({"_id": bson.decode(bytes.fromhex(h))["_id"]}).hex() for h in target]))
    if gone:
        still = set(schema_tool("canon", gone)) & target_ids
        assert not still, f"{len(still)} deleted documents are still in the target"


def test_live_workload_during_and_after_the_copy(mongo, dbname, postgres, migrate, tmp_path):
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "docs", 8000, "--seed", "21", "--size-min", "200", "--size-max", "3000")
    init(migrate, mongo, postgres, dbname)
    ack = str(tmp_path / "ack.log")
    wl = workload(uri, dbname, "docs", 8000, 8, ack, seed=22)
    time.sleep(1)
    r = sync(migrate, mongo, postgres, "--partition-docs", "1000", "--batch-docs", "300")
    assert r.rc == 0, r
    out, err = wl.communicate(timeout=120)
    assert wl.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["txn"] > 0 and stats["delete"] > 0 and stats["update"] > 0
    r = sync(migrate, mongo, postgres)  # catch up with what came after
    assert r.rc == 0, r
    assert_same(mongo, postgres, dbname, "docs")
    assert_ack_log_reflected(postgres, dbname, "docs", ack)
    cp = postgres.query("SELECT applied_events, cluster_time_ts FROM _migrate.checkpoint")[0]
    assert cp[0] > 0 and cp[1] is not None


def checkpoint_time(pg):
    row = pg.query("SELECT cluster_time_ts, cluster_time_inc FROM _migrate.checkpoint")
    return tuple(x or 0 for x in row[0]) if row else (0, 0)


def test_kill_9_at_10_points_checkpoint_never_backwards(mongo, dbname, postgres, migrate,
                                                       tmp_path):
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "docs", 5000, "--seed", "31", "--size-min", "200", "--size-max", "2000")
    init(migrate, mongo, postgres, dbname)
    assert sync(migrate, mongo, postgres, "--copy-only").rc == 0
    ack = str(tmp_path / "ack.log")
    wl = workload(uri, dbname, "docs", 5000, 12, ack, seed=32, rate=600)
    rng = random.Random(1126)
    binary = build_path("bin", "migrate")
    seen = [checkpoint_time(postgres)]
    for _ in range(10):
        proc = subprocess.Popen([binary, "sync", "--source", uri, "--target", postgres.uri,
                                 "--follow", "--batch-events", "50", "--batch-delay", "20ms"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        seen.append(checkpoint_time(postgres))
    out, err = wl.communicate(timeout=120)
    assert wl.returncode == 0, err
    assert seen == sorted(seen), f"the checkpoint moved backwards: {seen}"
    assert seen[-1] > seen[0], "no kill point was reached after a commit"
    assert sync(migrate, mongo, postgres).rc == 0
    assert_same(mongo, postgres, dbname, "docs")
    assert_ack_log_reflected(postgres, dbname, "docs", ack)


def follow_in_background(mongo, pg, *extra):
    proc = subprocess.Popen([build_path("bin", "migrate"), "sync", "--source", mongo_uri(mongo),
                             "--target", pg.uri, "--follow", "--batch-delay", "20ms", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err


def test_each_operation_type(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    db["c"].insert_many([{"_id": i, "v": i, "tags": ["a"]} for i in range(10)])
    init(migrate, mongo, postgres, dbname)
    proc = follow_in_background(mongo, postgres)
    try:
        wait_for(lambda: postgres.query("SELECT count(*) FROM _migrate.checkpoint "
                                        "WHERE cluster_time_ts IS NOT NULL")[0][0] == 1,
                 what="the copy and the first checkpoint")
        db["c"].insert_one({"_id": 100, "v": "new"})
        db["c"].update_one({"_id": 1}, {"$set": {"v": "set", "n.x": 5}, "$push": {"tags": "b"}})
        db["c"].replace_one({"_id": 2}, {"replaced": True})
        db["c"].delete_one({"_id": 3})
        db["c"].update_one({"_id": 4}, {"$unset": {"v": ""}, "$inc": {"k": 2}})
        with mongo.start_session() as s:
            with s.start_transaction():
                db["c"].insert_one({"_id": 200, "in": "txn"}, session=s)
                db["c"].update_one({"_id": 5}, {"$set": {"in": "txn"}}, session=s)
        db["c"].insert_one({"_id": 300, "gone": True})
        db["c"].delete_one({"_id": 300})
        wait_for(lambda: postgres.query(f'SELECT count(*) FROM "{dbname}".c WHERE _id = 200'
                                        )[0][0] == 1, what="the transaction's insert")
        time.sleep(0.5)
    finally:
        stop(proc)
    assert_same(mongo, postgres, dbname, "c")
    row = postgres.query(f'SELECT doc FROM "{dbname}".c WHERE _id = 1')[0][0]
    assert row["v"] == "set" and row["n"] == {"x": 5} and row["tags"] == ["a", "b"]
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".c WHERE _id IN (3, 300)') == [(0,)]
    changed = {r[0] for r in postgres.query("SELECT doc_id FROM _migrate.changed_docs "
                                            "WHERE coll = 'c'")}
    assert {"1", "2", "3", "4", "5", "100", "200", "300"} <= changed


def test_transactions_are_never_half_applied(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    db["a"].insert_one({"_id": 0})
    db["b"].insert_one({"_id": 0})
    init(migrate, mongo, postgres, dbname)
    proc = follow_in_background(mongo, postgres, "--batch-events", "1")
    halves = []
    done = threading.Event()

    def reader():
        conn = postgres.connect()
        while not done.is_set():
            with conn.cursor() as cur:
                cur.execute(f'SELECT (SELECT count(*) FROM "{dbname}".a), '
                            f'(SELECT count(*) FROM "{dbname}".b)')
                a, b = cur.fetchone()
                if a != b:
                    halves.append((a, b))
        conn.close()

    try:
        wait_for(lambda: postgres.query("SELECT count(*) FROM _migrate.checkpoint "
                                        "WHERE cluster_time_ts IS NOT NULL")[0][0] == 1)
        t = threading.Thread(target=reader)
        t.start()
        for i in range(1, 60):
            with mongo.start_session() as s:
                with s.start_transaction():
                    for k in range(3):  # several documents per side, beyond --batch-events 1
                        db["a"].insert_one({"_id": i * 10 + k}, session=s)
                        db["b"].insert_one({"_id": i * 10 + k}, session=s)
        wait_for(lambda: postgres.query(f'SELECT count(*) FROM "{dbname}".b')[0][0] == 178)
    finally:
        done.set()
        stop(proc)
    assert halves == [], f"a reader saw half of a transaction: {halves[:5]}"


@pytest.mark.parametrize("policy", ["stop", "truncate", "keep"])
def test_drop_policies(mongo, dbname, postgres, migrate, policy):
    db = mongo[dbname]
    db["gone"].insert_many([{"_id": i} for i in range(5)])
    db["stays"].insert_many([{"_id": i} for i in range(5)])
    init(migrate, mongo, postgres, dbname)
    assert sync(migrate, mongo, postgres).rc == 0
    db["gone"].drop()
    db["stays"].insert_one({"_id": 99})
    r = sync(migrate, mongo, postgres, "--on-drop", policy)
    assert r.rc == 0, r
    st = {c["collection"]: c for c in migrate("status", "--target", postgres.uri,
                                               "--json").json()["collections"]}
    count = postgres.query(f'SELECT count(*) FROM "{dbname}".gone')[0][0]
    if policy == "stop":
        assert st["gone"]["status"] == "failed"
        assert "dropped on the source" in st["gone"]["error"]
        assert f"migrate sync --resync {dbname}.gone" in st["gone"]["error"]
        assert count == 5
        # running sync again does not revive it: following it from the
        # current checkpoint would skip what it missed; only --resync does
        assert sync(migrate, mongo, postgres).rc == 0
        st = {c["collection"]: c for c in migrate("status", "--target", postgres.uri,
                                                   "--json").json()["collections"]}
        assert st["gone"]["status"] == "failed"
    elif policy == "truncate":
        assert st["gone"]["status"] != "failed" and count == 0
    else:
        assert st["gone"]["status"] != "failed" and count == 5
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".stays') == [(6,)]


def test_rename_policies(mongo, dbname, postgres, migrate):
    db = mongo[dbname]
    db["old"].insert_many([{"_id": i} for i in range(3)])
    init(migrate, mongo, postgres, dbname)
    assert sync(migrate, mongo, postgres).rc == 0
    db["old"].rename("new")
    db["new"].insert_one({"_id": 7})
    r = sync(migrate, mongo, postgres)
    assert r.rc == 0, r
    st = {c["collection"]: c for c in migrate("status", "--target", postgres.uri,
                                               "--json").json()["collections"]}
    assert st["old"]["status"] == "failed" and f"renamed to {dbname}.new" in st["old"]["error"]
    # follow: the mapping moves to the new name and later writes arrive
    postgres.query("UPDATE _migrate.collections SET status = 'copied', error = NULL")
    postgres.query("UPDATE _migrate.checkpoint SET resume_token = NULL, cluster_time_ts = NULL, "
                   "cluster_time_inc = NULL")
    r = sync(migrate, mongo, postgres, "--on-rename", "follow")
    assert r.rc == 0, r
    db["new"].insert_one({"_id": 8})
    assert sync(migrate, mongo, postgres, "--on-rename", "follow").rc == 0
    assert postgres.query("SELECT coll FROM _migrate.collections") == [("new",)]
    ids = sorted(r[0] for r in postgres.query(f'SELECT _id FROM "{dbname}".old'))
    assert ids == [0, 1, 2, 7, 8]



def statuses(migrate, postgres):
    return {c["collection"]: c for c in migrate("status", "--target", postgres.uri,
                                                 "--json").json()["collections"]}


def test_rename_onto_a_planned_collection_follows_it(mongo, dbname, postgres, migrate):
    """the randomized test's rename-onto-planned: c0 renamed onto the planned c1 with
    dropTarget is one rename event on MongoDB (no drop of c1). Followed, the name c1 now
    maps to c0's table and c1's old table is no longer migrated; the old code exited 4 on
    every run (duplicate key on _migrate.collections_pkey)."""
    db = mongo[dbname]
    db["c0"].insert_many([{"_id": i, "from": "c0"} for i in range(3)])
    db["c1"].insert_many([{"_id": i, "from": "c1"} for i in range(10, 15)])
    init(migrate, mongo, postgres, dbname)
    assert sync(migrate, mongo, postgres).rc == 0
    db["c0"].rename("c1", dropTarget=True)
    db["c1"].insert_one({"_id": 7, "from": "after"})
    db["c1"].delete_one({"_id": 0})
    r = sync(migrate, mongo, postgres, "--on-rename", "follow")
    assert r.rc == 0, r
    assert '"event":"cdc.rename_replaced"' in r.stderr, r.stderr[-3000:]
    assert postgres.query("SELECT coll, table_name FROM _migrate.collections") == [("c1", "c0")]
    assert_same(mongo, postgres, dbname, "c1", table="c0")
    # the replaced collection's table is left as it was, no longer written
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".c1') == [(5,)]
    db["c1"].insert_one({"_id": 8})
    assert sync(migrate, mongo, postgres, "--on-rename", "follow").rc == 0
    assert_same(mongo, postgres, dbname, "c1", table="c0")
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".c1') == [(5,)]


def test_rename_onto_a_planned_collection_stops_both_by_default(mongo, dbname, postgres,
                                                                migrate):
    """without --on-rename follow both stop: the renamed one, and the replaced one, whose
    documents are gone on the source (the old code kept applying the renamed collection's
    writes over the replaced one's rows)."""
    db = mongo[dbname]
    db["c0"].insert_many([{"_id": i} for i in range(3)])
    db["c1"].insert_many([{"_id": i} for i in range(10, 15)])
    init(migrate, mongo, postgres, dbname)
    assert sync(migrate, mongo, postgres).rc == 0
    db["c0"].rename("c1", dropTarget=True)
    db["c1"].insert_one({"_id": 7})
    assert sync(migrate, mongo, postgres).rc == 0
    st = statuses(migrate, postgres)
    assert st["c0"]["status"] == "failed" and f"renamed to {dbname}.c1" in st["c0"]["error"]
    assert st["c1"]["status"] == "failed" and "replaced on the source" in st["c1"]["error"] \
        and f"migrate sync --resync {dbname}.c1" in st["c1"]["error"], st["c1"]
    assert postgres.query(f'SELECT count(*) FROM "{dbname}".c1 WHERE _id = 7') == [(0,)]

def fail_command(client, data, mode):
    client.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": data})


def test_source_faults_are_survived(services, postgres, migrate):
    sim = services.add(MongosimInstance(services.root, name="faulty"))
    client = sim.client()
    db = client["f"]
    db["c"].insert_many([{"_id": i} for i in range(100)])
    assert migrate("init", "--source", sim.uri, "--target", postgres.uri).rc == 0
    assert migrate("sync", "--source", sim.uri, "--target", postgres.uri).rc == 0
    proc = subprocess.Popen([build_path("bin", "migrate"), "sync", "--source", sim.uri,
                             "--target", postgres.uri, "--follow", "--batch-delay", "20ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        faults = [
            ({"failCommands": ["getMore"], "closeConnection": True}, {"times": 2}),
            ({"failCommands": ["aggregate", "getMore"], "errorCode": 6}, {"times": 3}),
            ({"failCommands": ["getMore"], "errorCode": 91,
              "errorLabels": ["ResumableChangeStreamError"]}, {"times": 2}),
        ]
        n = 100
        for data, mode in faults:
            fail_command(client, data, mode)
            for _ in range(20):
                db["c"].insert_one({"_id": n})
                n += 1
            time.sleep(1.0)
        fail_command(client, {"failCommands": ["getMore"]}, "off")
        wait_for(lambda: postgres.query('SELECT count(*) FROM "f".c')[0][0] == n, timeout=60,
                 what="every insert after the faults")
    finally:
        out, err = stop(proc)
    assert "resuming from the last event read" in err or "change stream error" in err
    assert sorted(r[0] for r in postgres.query('SELECT _id FROM "f".c')) == list(range(n))
    client.close()


def test_history_lost_then_resync(services, postgres, migrate):
    sim = services.add(MongosimInstance(services.root, name="tinyoplog",
                                        args=["--oplog-size-mb", "1"]))
    client = sim.client()
    db = client["h"]
    db["c"].insert_many([{"_id": i} for i in range(50)])
    assert migrate("init", "--source", sim.uri, "--target", postgres.uri).rc == 0
    assert migrate("sync", "--source", sim.uri, "--target", postgres.uri).rc == 0
    for i in range(50, 3050):  # ~3 MB of changes: the 1 MB oplog rolls over
        db["c"].insert_one({"_id": i, "pad": "x" * 1000})
    r = migrate("sync", "--source", sim.uri, "--target", postgres.uri)
    assert r.rc == EXIT_SOURCE, r
    assert "ChangeStreamHistoryLost" in r.stderr and "--resync '*'" in r.stderr
    partial = migrate("sync", "--source", sim.uri, "--target", postgres.uri, "--resync", "h.nope")
    assert partial.rc == 2, partial
    r = migrate("sync", "--source", sim.uri, "--target", postgres.uri, "--resync", "*")
    assert r.rc == 0, r
    assert postgres.query('SELECT count(*) FROM "h".c') == [(3050,)]
    client.close()


def test_target_restart_during_apply(mongo, dbname, postgres, migrate, tmp_path):
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "docs", 3000, "--seed", "41")
    init(migrate, mongo, postgres, dbname)
    assert sync(migrate, mongo, postgres).rc == 0
    ack = str(tmp_path / "ack.log")
    proc = follow_in_background(mongo, postgres)
    wl = workload(uri, dbname, "docs", 3000, 8, ack, seed=42, rate=500)
    try:
        time.sleep(2)
        postgres.kill9()  # like pg_ctl restart -m immediate: no shutdown checkpoint
        time.sleep(1)
        postgres.start()
        out, err = wl.communicate(timeout=120)
        assert wl.returncode == 0, err
        time.sleep(3)
    finally:
        out, err = stop(proc)
    assert "reconnecting" in err and "resuming from the committed checkpoint" in err
    assert sync(migrate, mongo, postgres).rc == 0
    assert_same(mongo, postgres, dbname, "docs")
    assert_ack_log_reflected(postgres, dbname, "docs", ack)


def test_read_only_target_waits_instead_of_spinning(mongo, dbname, postgres, migrate):
    # After a failover a connection can land on the old primary, now a
    # read-only standby: the apply fails with 25006. The follower must wait
    # for a writable primary (not reconnect to the same read-only node in a
    # loop) and carry on once there is one.
    db = mongo[dbname]
    db["c"].insert_many([{"_id": i} for i in range(10)])
    init(migrate, mongo, postgres, dbname)
    assert sync(migrate, mongo, postgres).rc == 0
    proc = follow_in_background(mongo, postgres)
    try:
        time.sleep(1)
        postgres.query("ALTER SYSTEM SET default_transaction_read_only = on")
        postgres.query("SELECT pg_reload_conf()")
        # a live connection does not see the reload until its next
        # statement; new ones are read-only at once
        postgres.query(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE datname = current_database() AND pid <> pg_backend_pid() "
                       f"AND application_name = 'migrate'")
        db["c"].insert_many([{"_id": 100 + i} for i in range(5)])
        time.sleep(8)
        assert proc.poll() is None, "the follower gave up on a read-only target"
        assert postgres.query(f'SELECT count(*) FROM "{dbname}".c') == [(10,)]
        postgres.query("ALTER SYSTEM RESET default_transaction_read_only")
        postgres.query("SELECT pg_reload_conf()")
        wait_for(lambda: postgres.query(f'SELECT count(*) FROM "{dbname}".c') == [(15,)],
                 timeout=30, what="the apply to go on once the target is writable")
    finally:
        out, err = stop(proc)
    lost = err.count("lost the target")
    assert 1 <= lost <= 2, f"{lost} reconnects: it spun on the read-only node"


def read_lag(postgres, migrate, port):
    """the lag as status (JSON and text), /progress and /metrics report it, and the
    checkpoint's age on the target's clock."""
    progress = json.loads(urllib.request.urlopen(
        f"http://127.0.0.1:{port}/progress", timeout=5).read())
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    status = migrate("status", "--target", postgres.uri, "--json").json()
    age = postgres.query("SELECT extract(epoch FROM now() - updated_at) FROM _migrate.checkpoint"
                         )[0][0]
    return progress, metrics, status, float(age)


def test_idle_source_lag_and_metrics(mongo, dbname, postgres, migrate):
    """Issue 15 point 1: on an idle source the oplog moves only with the periodic no-op
    (every 10 s, as on MongoDB), so "now minus the checkpoint's time" read 0-20 s. The lag
    is how far behind the source's latest write the follower is: a follower whose stream
    has seen everything is caught up, whatever the checkpoint's age, and it stays alive
    (heartbeat) while the checkpoint stands still."""
    mongo[dbname]["c"].insert_one({"_id": 1})
    init(migrate, mongo, postgres, dbname)
    port = pick_free_port()
    proc = follow_in_background(mongo, postgres, "--metrics-port", str(port))
    samples = []
    try:
        wait_for(lambda: (migrate("status", "--target", postgres.uri, "--json").json()
                          .get("change_stream") or {}).get("lag_s") is not None,
                 what="the copy and the follower's first measure of its lag")
        deadline = time.time() + 12  # longer than the source's no-op interval
        while time.time() < deadline:
            samples.append(read_lag(postgres, migrate, port))
            time.sleep(0.4)
        text = migrate("status", "--target", postgres.uri).stdout
    finally:
        stop(proc)
    lags = [float(st["change_stream"]["lag_s"]) for _, _, st, _ in samples]
    progress_lags = [p["lag_s"] for p, _, _, _ in samples]
    assert max(lags) <= 2.5, lags
    assert max(progress_lags) <= 2.0, progress_lags
    # the follower is alive all along, while the checkpoint stood still for seconds
    assert all(st["change_stream"]["follower"]["alive"] for _, _, st, _ in samples)
    assert max(age for _, _, _, age in samples) > 5, "the checkpoint moved on an idle source"
    stream = samples[-1][2]["change_stream"]
    assert "events_per_s" in stream and stream["history_lost"] is False
    assert "stream  checkpoint Timestamp(" in text and "events/s" in text
    assert "alive" in text and "behind the source's latest write" in text
    assert all(b"migrate_cdc_lag_seconds" in m for _, m, _, _ in samples)
    # once stopped, the follower says so (and the lag is no longer claimed)
    status = migrate("status", "--target", postgres.uri, "--json").json()["change_stream"]
    assert status["follower"]["alive"] is False and status["lag_s"] is None, status
