"""Integration: `migrate validate` checksums against mongosim (or a real
replica set) and a throwaway PostgreSQL 15.

Proves: after a clean sync every collection (every BSON type, mixed _id
kinds) validates with zero mismatches; differences made on purpose - a
nested field changed in the target, a row deleted, a row added, a
number's type changed double<->int, a source document updated while no
change stream runs - are each found and named with _id and field path;
results land in _migrate with first-seen time; a mismatch seen by two
runs in a row is "persisted" and exits 5; a fixed one is resolved;
`--changed` re-checks exactly the changed_docs rows up to the checkpoint
(written by the change-stream apply of `migrate sync`) for every key type
and deletes them; `--every` repeats it until SIGTERM.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from mgharness import build_path

EXIT_OK, EXIT_MISMATCH = 0, 5


def mongo_uri(client):
    host, port = client.address
    return f"mongodb://{host}:{port}/"


def datagen(uri, db, coll, count, *args):
    subprocess.run([build_path("bin", "datagen"), "generate", "--uri", uri, "--db", db, "--coll",
                    coll, "--count", str(count), *args], check=True, capture_output=True,
                   timeout=600)


def people(n):
    return [{"_id": f"p{i}", "name": f"person {i}", "score": float(i) + 0.5 if i % 2 else 2.0,
             "visits": i, "profile": {"address": {"city": "Lyon", "zip": f"{69000 + i}"},
                                      "tags": ["a", "b", {"deep": i}]}}
            for i in range(n)]


@pytest.fixture
def synced(mongo, dbname, postgres, migrate):
    """synced loads the source, runs init and sync, and returns a validate runner."""
    db = mongo[dbname]
    db["people"].insert_many(people(300))
    uri = mongo_uri(mongo)
    datagen(uri, dbname, "mixed", 2000, "--seed", "11", "--id-type", "mixed",
            "--all-types-every", "7")
    datagen(uri, dbname, "oids", 3000, "--seed", "12")
    r = migrate("init", "--source", uri, "--target", postgres.uri, "--include", f"{dbname}.*")
    assert r.rc == 0, r
    r = migrate("sync", "--source", uri, "--target", postgres.uri, "--workers", "2")
    assert r.rc == 0, r

    def validate(*extra):
        return migrate("validate", "--source", uri, "--target", postgres.uri, "--json",
                       "--segments", "64", *extra)

    return validate


def by_coll(report):
    return {c["coll"]: c for c in report["collections"]}


def named(coll_report):
    return {m["_id"]: m for m in coll_report["mismatches"]}


def test_clean_sync_validates_with_zero_mismatches(synced, postgres):
    r = synced()
    assert r.rc == EXIT_OK, r
    rep = r.json()
    assert rep["status"] == "clean" and rep["mode"] == "full"
    colls = by_coll(rep)
    assert set(colls) == {"people", "mixed", "oids"}
    for name, n in (("people", 300), ("mixed", 2000), ("oids", 3000)):
        c = colls[name]
        assert c["source_docs"] == n and c["target_docs"] == n, c
        assert c["missing"] == c["extra"] == c["different"] == 0
        assert c["segments"] == 64 and c["segments_mismatched"] == 0
        assert c["mismatches"] == []
    runs = postgres.query("SELECT status, documents, mismatches FROM _migrate.validation_runs")
    assert runs == [("clean", 5300, 0)]
    res = postgres.query("SELECT coll, status FROM _migrate.validation_results ORDER BY coll")
    assert res == [("mixed", "clean"), ("oids", "clean"), ("people", "clean")]


def test_differences_are_named_with_id_and_path(synced, mongo, dbname, postgres, migrate):
    t = f'"{dbname}".people'
    # a nested field changed in the target
    postgres.query(f"UPDATE {t} SET doc = jsonb_set(doc, '{{profile,address,city}}', "
                   "'\"Paris\"') WHERE _id = 'p1'")
    # an array element deep inside changed
    postgres.query(f"UPDATE {t} SET doc = jsonb_set(doc, '{{profile,tags,2,deep}}', '99') "
                   "WHERE _id = 'p3'")
    # a row deleted
    postgres.query(f"DELETE FROM {t} WHERE _id = 'p2'")
    # a row added
    postgres.query(f"INSERT INTO {t} (_id, doc) VALUES ('zz', "
                   "'{\"_id\": \"zz\", \"name\": \"intruder\"}')")
    # a number's type changed: double 2.0 -> int 2, and int 5 -> double 5.0
    postgres.query(f"UPDATE {t} SET doc = jsonb_set(doc, '{{score}}', '2') WHERE _id = 'p4'")
    postgres.query(f"UPDATE {t} SET doc = jsonb_set(doc, '{{visits}}', '5.0') WHERE _id = 'p5'")
    # a source document updated while no change stream runs
    mongo[dbname]["people"].update_one({"_id": "p6"}, {"$set": {"name": "renamed"}})
    # a row of a jsonb-keyed, every-type collection deleted
    gone = postgres.query(f'SELECT _id::text FROM "{dbname}".mixed ORDER BY _id::text LIMIT 1')[0][0]
    postgres.query(f'DELETE FROM "{dbname}".mixed WHERE _id::text = %s', (gone,))

    r = synced()
    # first sighting: named, recorded, not yet persistent -> exit 0
    assert r.rc == EXIT_OK, r
    rep = r.json()
    assert rep["status"] == "mismatch" and rep["persistent"] == 0
    people_rep = by_coll(rep)["people"]
    m = named(people_rep)
    assert set(m) == {'"p1"', '"p2"', '"p3"', '"p4"', '"p5"', '"p6"', '"zz"'}, m.keys()
    assert people_rep["missing"] == 1 and people_rep["extra"] == 1
    assert people_rep["different"] == 5

    def fields(i):
        return {f["path"]: f for f in m[f'"{i}"']["fields"]}

    assert m['"p1"']["kind"] == "different"
    assert fields("p1") == {"profile.address.city": {
        "path": "profile.address.city", "source": '"Lyon"', "source_type": "string",
        "target": '"Paris"', "target_type": "string"}}
    f3 = fields("p3")
    assert list(f3) == ["profile.tags.2.deep"]
    assert f3["profile.tags.2.deep"]["source"] == "3"
    assert f3["profile.tags.2.deep"]["target"] == "99"
    assert m['"p2"']["kind"] == "missing" and m['"p2"']["fields"] == []
    assert m['"zz"']["kind"] == "extra"
    f4 = fields("p4")["score"]
    assert (f4["source_type"], f4["target_type"]) == ("double", "int")
    assert (f4["source"], f4["target"]) == ("2.0", "2")
    f5 = fields("p5")["visits"]
    assert (f5["source_type"], f5["target_type"]) == ("int", "double")
    f6 = fields("p6")["name"]
    assert (f6["source"], f6["target"]) == ('"renamed"', '"person 6"')
    for mm in m.values():
        assert mm["persisted"] is False and mm["first_seen_at"]

    mixed = by_coll(rep)["mixed"]
    assert mixed["missing"] == 1 and mixed["extra"] == 0 and mixed["different"] == 0
    assert mixed["mismatches"][0]["kind"] == "missing"
    assert by_coll(rep)["oids"]["status"] == "clean"

    rows = postgres.query("SELECT id_json, kind, persisted, seen_runs FROM "
                          "_migrate.validation_mismatches WHERE coll = 'people' ORDER BY id_json")
    assert [(i, k) for i, k, _, _ in rows] == [
        ('"p1"', "different"), ('"p2"', "missing"), ('"p3"', "different"),
        ('"p4"', "different"), ('"p5"', "different"), ('"p6"', "different"), ('"zz"', "extra")]
    assert all(not p and n == 1 for _, _, p, n in rows)

    # fix p1 in the target; the rest persists into the second run -> exit 5
    postgres.query(f"UPDATE {t} SET doc = jsonb_set(doc, '{{profile,address,city}}', "
                   "'\"Lyon\"') WHERE _id = 'p1'")
    r2 = synced()
    assert r2.rc == EXIT_MISMATCH, r2
    rep2 = r2.json()
    assert rep2["status"] == "persistent_mismatch"
    m2 = named(by_coll(rep2)["people"])
    assert '"p1"' not in m2 and len(m2) == 6
    assert all(mm["persisted"] for mm in m2.values())
    assert rep2["persistent"] == 7  # 6 in people, 1 in mixed
    rows = postgres.query("SELECT id_json, persisted, seen_runs, resolved_run IS NOT NULL, "
                          "first_seen_run FROM _migrate.validation_mismatches "
                          "WHERE coll = 'people' ORDER BY id_json")
    runs = [r[0] for r in postgres.query("SELECT id FROM _migrate.validation_runs ORDER BY id")]
    assert rows[0] == ('"p1"', False, 1, True, runs[0])
    assert all(p and n == 2 and not res and fr == runs[0] for _, p, n, res, fr in rows[1:])

    # --fail-on any: a brand-new difference alone fails the run
    r3 = synced("--collections", f"{dbname}.oids", "--fail-on", "any")
    assert r3.rc == EXIT_OK, r3  # oids is clean
    postgres.query(f'DELETE FROM "{dbname}".oids WHERE _id = '
                   f'(SELECT _id FROM "{dbname}".oids ORDER BY _id LIMIT 1)')
    r4 = synced("--collections", f"{dbname}.oids", "--fail-on", "any")
    assert r4.rc == EXIT_MISMATCH, r4
    assert by_coll(r4.json())["oids"]["missing"] == 1


def test_reports_written_to_files(synced, postgres, tmp_path):
    js, html = tmp_path / "r.json", tmp_path / "r.html"
    r = synced("--report-json", str(js), "--report-html", str(html))
    assert r.rc == EXIT_OK, r
    rep = json.loads(js.read_text())
    assert rep["status"] == "clean" and len(rep["collections"]) == 3
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "src=" not in page and "href=" not in page  # self-contained


def test_changed_rechecks_changed_docs_up_to_the_checkpoint(synced, mongo, dbname, postgres):
    t = f'"{dbname}".people'
    # p7 and p8 differ in the target; only p7 is in changed_docs at or before the checkpoint
    postgres.query(f"UPDATE {t} SET doc = jsonb_set(doc, '{{name}}', '\"x\"') "
                   "WHERE _id IN ('p7', 'p8')")
    postgres.query("INSERT INTO _migrate.checkpoint (id, cluster_time_ts, cluster_time_inc) "
                   "VALUES (1, 1000, 5) ON CONFLICT (id) DO UPDATE SET cluster_time_ts = 1000, "
                   "cluster_time_inc = 5")
    postgres.query("INSERT INTO _migrate.changed_docs VALUES "
                   "(%(db)s, 'people', 'p7', 1000, 4), (%(db)s, 'people', 'p9', 999, 1), "
                   "(%(db)s, 'people', 'p10', 1000, 6)", {"db": dbname})
    r = synced("--changed")
    assert r.rc == EXIT_OK, r
    rep = r.json()
    assert rep["mode"] == "changed"
    people_rep = by_coll(rep)["people"]
    # exactly p7 and p9 were read on both sides; p8 (not changed) and p10 (after) were not
    assert people_rep["source_docs"] == 2 and people_rep["target_docs"] == 2
    assert set(named(people_rep)) == {'"p7"'}
    assert named(people_rep)['"p7"']["fields"][0]["path"] == "name"
    left = postgres.query("SELECT doc_id FROM _migrate.changed_docs WHERE coll = 'people' "
                          "ORDER BY doc_id")
    assert left == [("p10",)]
    # the open mismatch is re-checked by the next --changed run even without a new change
    postgres.query(f"UPDATE {t} SET doc = jsonb_set(doc, '{{name}}', '\"person 7\"') "
                   "WHERE _id = 'p7'")
    r2 = synced("--changed")
    assert r2.rc == EXIT_OK, r2
    assert by_coll(r2.json())["people"]["mismatches"] == []
    assert postgres.query("SELECT resolved_run IS NOT NULL FROM _migrate.validation_mismatches "
                          "WHERE id_json = '\"p7\"'") == [(True,)]
    # a full run finds p8, which --changed never looked at
    r3 = synced()
    assert set(named(by_coll(r3.json())["people"])) == {'"p8"'}


def test_changed_reads_every_key_type(synced, dbname, postgres):
    """--changed finds documents by the key column text of ObjectId (text) and jsonb keys."""
    rows = {}
    for coll in ("oids", "mixed"):
        keys = [r[0] for r in postgres.query(
            f'SELECT _id::text FROM "{dbname}".{coll} ORDER BY _id::text LIMIT 30')]
        # one differs in the target, one is deleted there, the rest are equal
        postgres.query(f'UPDATE "{dbname}".{coll} SET doc = doc || \'{{"zz": 1}}\' '
                       "WHERE _id::text = %s", (keys[0],))
        postgres.query(f'DELETE FROM "{dbname}".{coll} WHERE _id::text = %s', (keys[1],))
        for k in keys:
            postgres.query("INSERT INTO _migrate.changed_docs VALUES (%s, %s, %s, 5, 1)",
                           (dbname, coll, k))
        rows[coll] = keys
    postgres.query("INSERT INTO _migrate.checkpoint (id, cluster_time_ts, cluster_time_inc) "
                   "VALUES (1, 10, 0) ON CONFLICT (id) DO UPDATE SET cluster_time_ts = 10, "
                   "cluster_time_inc = 0")
    r = synced("--changed", "--collections", f"{dbname}.oids", "--collections",
               f"{dbname}.mixed")
    assert r.rc == EXIT_OK, r
    for coll in ("oids", "mixed"):
        c = by_coll(r.json())[coll]
        assert c["source_docs"] == 30 and c["target_docs"] == 29, c
        kinds = sorted((m["kind"], m["doc_id"]) for m in c["mismatches"])
        assert [k for k, _ in kinds] == ["different", "missing"], c
        diff = [m for m in c["mismatches"] if m["kind"] == "different"][0]
        assert [f["path"] for f in diff["fields"]] == ["zz"]
    # the rows up to the checkpoint are gone (a row the sync itself left, later than the
    # checkpoint, stays)
    assert postgres.query("SELECT count(*) FROM _migrate.changed_docs WHERE coll IN "
                          "('oids', 'mixed') AND cluster_time_ts <= 10") == [(0,)]


def test_changed_follows_the_change_stream_apply(synced, mongo, dbname, postgres, migrate):
    """Documents written on the source and applied by `migrate sync`'s change stream are
    exactly what the next --changed run re-checks; they validate equal."""
    people = mongo[dbname]["people"]
    people.update_one({"_id": "p1"}, {"$set": {"name": "changed"}})
    people.update_one({"_id": "p3"}, {"$set": {"profile.address.city": "Nantes"}})
    people.insert_one({"_id": "new", "name": "inserted", "score": 1.25})
    people.delete_one({"_id": "p2"})
    uri = mongo_uri(mongo)
    r = migrate("sync", "--source", uri, "--target", postgres.uri)
    assert r.rc == 0, r
    changed = {row[0] for row in postgres.query(
        "SELECT doc_id FROM _migrate.changed_docs WHERE db = %s AND coll = 'people'", (dbname,))}
    assert {"p1", "p3", "new", "p2"} <= changed, changed
    r = synced("--changed")
    assert r.rc == EXIT_OK, r
    c = by_coll(r.json())["people"]
    # p2 is gone on both sides; the three others were read on both sides and are equal
    assert c["mismatches"] == [] and c["source_docs"] == c["target_docs"] == len(changed) - 1
    assert postgres.query("SELECT count(*) FROM _migrate.changed_docs c, _migrate.checkpoint k "
                          "WHERE c.coll = 'people' AND (c.cluster_time_ts, c.cluster_time_inc) "
                          "<= (k.cluster_time_ts, k.cluster_time_inc)") == [(0,)]
    assert synced().json()["status"] == "clean"


def test_changed_every_repeats_until_stopped(synced, mongo, postgres):
    r = synced("--changed", "--every", "100ms", "--max-runs", "3")
    assert r.rc == EXIT_OK, r
    assert postgres.query("SELECT count(*), bool_and(mode = 'changed') FROM "
                          "_migrate.validation_runs") == [(3, True)]
    # without --max-runs it runs until SIGTERM, and stops cleanly between runs
    proc = subprocess.Popen([build_path("bin", "migrate"), "--log-format=json", "validate",
                             "--source", mongo_uri(mongo), "--target", postgres.uri,
                             "--changed", "--every", "200ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("MIGRATE_")})
    deadline = time.time() + 30
    while time.time() < deadline and postgres.query(
            "SELECT count(*) FROM _migrate.validation_runs")[0][0] < 5:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_OK, err
    runs = postgres.query("SELECT status FROM _migrate.validation_runs")
    assert len(runs) >= 5 and all(s == "clean" for (s,) in runs), runs


def test_failures_are_recorded_and_mapped_to_exit_codes(synced, dbname, postgres):
    # a table the target lost: that collection fails (exit 4), the others are still checked
    postgres.query(f'ALTER TABLE "{dbname}".oids RENAME TO oids_gone')
    r = synced()
    assert r.rc == 4, r
    rep = r.json()
    assert rep["status"] == "failed"
    colls = by_coll(rep)
    assert colls["oids"]["status"] == "failed" and "oids" in colls["oids"]["error"]
    assert colls["people"]["status"] == "clean" and colls["mixed"]["status"] == "clean"
    assert postgres.query("SELECT coll, status FROM _migrate.validation_results "
                          "ORDER BY coll") == [("mixed", "clean"), ("oids", "failed"),
                                               ("people", "clean")]
    # a failure after the run started (an unreadable query file) marks the run failed
    r = synced("--shadow", "/nonexistent/queries.jsonl")
    assert r.rc == 2, r
    assert "could not open shadow query file" in r.stderr
    last = postgres.query("SELECT status, options->>'error' FROM _migrate.validation_runs "
                          "ORDER BY id DESC LIMIT 1")[0]
    assert last[0] == "failed" and "could not open" in last[1]
    # no state schema at all: exit 8
    postgres.query("ALTER SCHEMA _migrate RENAME TO _migrate_old")
    r = synced()
    assert r.rc == 8 and "run migrate init" in r.stderr, r
