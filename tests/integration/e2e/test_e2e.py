"""End to end: a live migration that survives failures of the Postgres primary.

mongosim holds a sample shop (customers, orders, products, events: ~165k
documents of realistic shapes, every BSON type in products) and two datagen
workloads write to it (insert/update/replace/delete/transactions, each
acknowledged write logged). The target is a 3-node pgdaemon cluster
(synchronous mode) behind HAProxy; migrate only knows HAProxy's write port.

1. `migrate init`, then `migrate sync --follow` in the background.
2. During the bulk copy: kill -9 of the primary's postmaster (its daemon
   restarts Postgres; HAProxy marks it down and up again).
3. During follow: kill -9 of the primary's daemon and postmaster (a lost
   node: a replica is promoted, HAProxy routes to it), then the daemon is
   started again and the old primary rejoins as a replica.
4. The same sync process carries on through both (it never exits), logging
   target_lost/target_back; lag comes back under 2 s with writes flowing.
5. `migrate validate --full` with shadow reads and the HTML report (exit 0;
   under live writes a shadow read of a written collection may differ for a
   moment), then `--changed` runs until one is clean (writes keep coming).
6. `migrate cutover` with the follower running: freeze, drain, verify,
   flip. Nothing reaches the target after the cutover returned; every
   write the source acknowledged is in PostgreSQL, every
   collection has the source's document count, and a last full validation
   on the frozen source is clean with every shadow read matching.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

from mgharness.e2e import SAMPLE, MigrationStack, terminate, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "migrator"))
from test_cdc import assert_ack_log_reflected  # noqa: E402

SCALE = float(os.environ.get("MG_E2E_SCALE", "1.0"))
WORKLOAD_COLLS = ("orders", "customers")


def events_in(path):
    names = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                names.append(json.loads(line).get("event"))
            except ValueError:
                pass
    return names


def target_digest(stack):
    """target_digest is (rows, hash of all documents) per table of the migrated database."""
    return {coll: stack.query(f'SELECT count(*), coalesce(sum(hashtext(doc::text)), 0) '
                              f'FROM "{stack.db}"."{coll}"')[0]
            for coll, _, _ in SAMPLE}


@pytest.fixture
def stack(tmp_root):
    # against a real replica set (MIGRATE_TEST_MONGODB_URI) in a database of its own
    db = f"e2e_{uuid.uuid4().hex[:8]}" if os.environ.get("MIGRATE_TEST_MONGODB_URI") else "shop"
    s = MigrationStack(tmp_root, db=db, say=print)
    try:
        yield s
    finally:
        assert s.close() == []


def test_live_migration_survives_primary_failures(stack):
    stack.start_source()
    total = stack.load_sample(scale=SCALE)
    stack.start_cluster(nodes=3, synchronous=True)
    first = wait_until(stack.healthy_primary, 120, "a healthy cluster")
    for coll in WORKLOAD_COLLS:
        stack.start_workload(coll, rate=50, seconds=1800, scale=SCALE)
    src, tgt = stack.source_uri, stack.target_uri

    r = stack.migrate("init", "--source", src, "--target", tgt, "--include", f"{stack.db}.*")
    assert r.returncode == 0, r.stderr[-3000:]

    sync_log = os.path.join(stack.dir, "sync.log")
    with open(sync_log, "w") as err:
        sync = stack.start_migrate("--log-format=json", "sync", "--source", src, "--target", tgt,
                                   "--follow", "--workers", "2", "--partition-docs", "1500",
                                   "--batch-delay", "20ms", stderr=err,
                                   stdout=subprocess.DEVNULL)
    try:
        # 2. the primary's postmaster dies in the middle of the bulk copy
        done, planned = wait_until(lambda: (lambda p: p if p[0] >= 3 else None)(
            stack.partitions()), 300, "the copy to get going", interval=0.05)
        assert done < planned, "the copy finished before the crash"
        assert sync.poll() is None
        stack.kill_postmaster(first)
        wait_until(lambda: stack.phase() == "copied", 600, "the copy to finish after the crash")
        assert sync.poll() is None, open(sync_log, errors="replace").read()[-3000:]
        wait_until(lambda: (stack.lag_seconds() or 99) < 2, 300, "the change stream to catch up")

        # 3. during follow the primary's node is lost: a replica takes over
        leader = wait_until(stack.healthy_primary, 180, "the cluster to heal")
        acked = {c: stack.acknowledged(c) for c in WORKLOAD_COLLS}
        stack.kill_node(leader)
        new = wait_until(lambda: (lambda n: n if n not in (None, leader) else None)(
            stack.leader()), 120, "a new leader")
        assert new != leader
        wait_until(lambda: stack.psql("postgres", "SELECT NOT pg_is_in_recovery()") == [(True,)],
                   120, "writes through HAProxy")
        stack.restart_daemon(leader)
        wait_until(stack.healthy_primary, 240, "the old primary to rejoin")

        # 4. the same sync process carried on: writes keep flowing and applying
        wait_until(lambda: all(stack.acknowledged(c) > acked[c] + 50 for c in WORKLOAD_COLLS),
                   120, "the workload to go on")
        wait_until(lambda: (stack.lag_seconds() or 99) < 2, 300,
                   "the change stream to catch up after the failover")
        assert sync.poll() is None, open(sync_log, errors="replace").read()[-3000:]
        ev = events_in(sync_log)
        assert "copy.target_lost" in ev and "copy.target_back" in ev
        assert "cdc.target_lost" in ev and "cdc.target_back" in ev

        # 5. validation under live writes: full with shadow reads and the report
        shadow = stack.write_shadow_queries()
        report = os.path.join(stack.dir, "validation.html")
        r = stack.migrate("validate", "--source", src, "--target", tgt, "--full", "--shadow",
                          shadow, "--report-html", report, "--json")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        rep = json.loads(r.stdout)
        # under live writes a find can see a write one side has and the other
        # not yet; only the workload's collections may differ here
        bad = [{k: v for k, v in q.items() if k not in ("sql", "jsonpath")}
               for q in rep["shadow"] if q["status"] != "match" and not (
                   q["status"] == "mismatch" and q["ns"].split(".")[1] in WORKLOAD_COLLS)]
        assert not bad, json.dumps(bad)[:3000]
        assert os.path.getsize(report) > 0
        status = None
        for _ in range(20):
            r = stack.migrate("validate", "--source", src, "--target", tgt, "--changed",
                              "--json")
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            status = json.loads(r.stdout)["status"]
            if status == "clean":
                break
        assert status == "clean"

        # 6. cutover while sync --follow runs and the workload writes
        endpoint = os.path.join(stack.dir, "endpoint")
        # pgdaemon runs wal_level=replica: no way back (integration_reverse covers it)
        r = stack.migrate("cutover", "--source", src, "--target", tgt, "--max-lag", "5s",
                          "--endpoint-file", endpoint, "--json", "--no-fallback")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        after_flip = target_digest(stack)
        co = json.loads(r.stdout)
        assert co["outcome"] == "done"
        # the state (and so the report) keeps the endpoint without its password (issue 17.6)
        assert stack.password not in r.stdout and co["endpoint"].startswith("postgresql://postgres@")
        assert 0 < co["unavailable_s"] < 60
        with open(endpoint) as f:
            assert f":{stack.write_port}/" in f.read()  # HAProxy's write address
        assert os.stat(endpoint).st_mode & 0o777 == 0o600  # it holds the password
        # a re-run flips nothing and prints the endpoint without its password
        r = stack.migrate("cutover", "--source", src, "--target", tgt, "--endpoint-file",
                          endpoint)
        assert r.returncode == 0 and "already done" in r.stdout, r.stdout + r.stderr[-2000:]
        assert f":{stack.write_port}/" in r.stdout and stack.password not in r.stdout
    finally:
        stats = stack.stop_workloads()
        terminate(sync)
    # the follower stops by itself once the cutover flipped (exit 8), or on our SIGTERM (0)
    log_tail = open(sync_log, errors="replace").read()[-3000:]
    assert sync.returncode in (0, 8), log_tail
    if sync.returncode == 8:
        assert "the cutover is done" in log_tail and "no source write came after it" in log_tail
    # nothing reached the target after the cutover said drained: every write
    # the source let through was at or before the fence
    assert target_digest(stack) == after_flip
    for coll in WORKLOAD_COLLS:
        assert stats[coll].get("acknowledged_writes", 0) > 100, stats
        assert stats[coll].get("failures", 0) > 0, "no write failed: the freeze did not happen"
        ack = next(a for c, _, a in stack.workloads if c == coll)
        assert_ack_log_reflected(stack, stack.db, coll, ack)
    client = stack.source_client()
    try:
        source_total = 0
        for coll in client[stack.db].list_collection_names():
            n = client[stack.db][coll].count_documents({})
            source_total += n
            assert stack.query(f'SELECT count(*) FROM "{stack.db}"."{coll}"') == [(n,)], coll
        assert source_total >= total
    finally:
        client.close()
    # on the frozen source every checksum and every shadow read agrees
    r = stack.migrate("validate", "--source", src, "--target", tgt, "--full", "--shadow", shadow,
                      "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "clean"
    assert [q["name"] for q in rep["shadow"] if q["status"] != "match"] == []
    assert len(rep["shadow"]) == 6
