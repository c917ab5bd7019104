"""Integration: a sharded source through mongos (issue 22, the migrator's side; a 3-shard
mongosim cluster, docs/mongosim.md "The sharded cluster").

Proves: init takes the census through the router (one $collStats document per shard,
summed: test_init.py), sync copies a hashed-sharded collection, and sync --follow applies
inserts, updates and deletes on every shard through the router's merged change stream
until the target equals the source. Idle shards hold the merged stream back until their
no-op writer moves them (every second here, MongoDB's periodicNoopIntervalSecs is 10).
"""

import signal
import subprocess
import time

from mgharness import build_path
from mgharness.mongosim import MongosimCluster

from test_sync import assert_same


def same(client, pg, db, coll):
    try:
        assert_same(client, pg, db, coll)
        return True
    except AssertionError:
        return False


def test_sync_and_follow_a_sharded_collection_through_mongos(services, postgres, migrate):
    sim = services.add(MongosimCluster(services.root, name="sharded", shards=3,
                                       args=["--periodic-noop-interval-secs", "1"]))
    client = sim.client()
    try:
        client.admin.command("shardCollection", "sh.c", key={"_id": "hashed"})
        client["sh"]["c"].insert_many([{"_id": i, "v": i} for i in range(2000)])
        assert migrate("init", "--source", sim.uri, "--target", postgres.uri, "--include",
                       "sh.*").rc == 0
        r = migrate("sync", "--source", sim.uri, "--target", postgres.uri)
        assert r.rc == 0, r
        assert_same(client, postgres, "sh", "c")
        proc = subprocess.Popen([build_path("bin", "migrate"), "sync", "--source", sim.uri,
                                 "--target", postgres.uri, "--follow", "--batch-delay",
                                 "20ms"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace")
        try:
            c = client["sh"]["c"]
            c.insert_many([{"_id": 5000 + i, "v": "new"} for i in range(300)])
            c.update_many({"_id": {"$lt": 100}}, {"$set": {"v": "updated"}})
            c.delete_many({"_id": {"$gte": 1900, "$lt": 2000}})
            deadline = time.time() + 90
            while time.time() < deadline and proc.poll() is None and \
                    not same(client, postgres, "sh", "c"):
                time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert_same(client, postgres, "sh", "c")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    finally:
        client.close()
