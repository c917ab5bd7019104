"""tests/integration/mongosim/test_idle.py - an idle primary, as MongoDB's: operationTime,
$clusterTime and the change-stream high-water mark move only when the oplog does; the
periodic no-op writer (periodicNoopIntervalSecs, 10 s by default) moves it; hello's
lastWrite reports the newest oplog entry."""

import subprocess
import threading
import time

import bson
import pytest
from bson.son import SON

from msim_service import mongosim_binary


def empty_get_more(db, coll, cid, max_time_ms=200):
    """empty_get_more runs one getMore on a change stream and returns its cursor document."""
    return db.command(SON([("getMore", bson.Int64(cid)), ("collection", coll),
                           ("maxTimeMS", max_time_ms)]))["cursor"]


@pytest.mark.replset_only
def test_idle_primary_keeps_its_times_until_the_no_op(mongosim_factory):
    # MongoDB's default interval: nothing moves for several seconds of idleness
    server = mongosim_factory()
    client = server.client()
    try:
        db = client.idle
        db.c.insert_one({"_id": 1})
        t_write = db.command("ping")["operationTime"]
        first = db.command("aggregate", "c", pipeline=[{"$changeStream": {}}], cursor={})
        cid = first["cursor"]["id"]
        pbrt0 = first["cursor"]["postBatchResumeToken"]
        time.sleep(3.0)
        cur = empty_get_more(db, "c", cid)
        assert cur["nextBatch"] == []
        assert cur["postBatchResumeToken"] == pbrt0, "the high-water mark moved without a write"
        reply = db.command("ping")
        assert reply["operationTime"] == t_write
        assert reply["$clusterTime"]["clusterTime"] == t_write
        hello = client.admin.command("hello")
        assert hello["lastWrite"]["opTime"]["ts"] == t_write
        # a write elsewhere moves the high-water mark of this stream, not its events
        client.other.d.insert_one({"_id": 2})
        t_other = client.other.command("ping")["operationTime"]
        assert t_other > t_write
        cur = empty_get_more(db, "c", cid)
        assert cur["nextBatch"] == []
        assert cur["postBatchResumeToken"]["_data"] > pbrt0["_data"]
        db.command("killCursors", "c", cursors=[bson.Int64(cid)])
    finally:
        client.close()


@pytest.mark.replset_only
def test_periodic_no_op_moves_an_idle_primary(mongosim_factory):
    server = mongosim_factory("--periodic-noop-interval-secs", "1")
    client = server.client()
    try:
        db = client.noop
        db.c.insert_one({"_id": 1})
        t0 = db.command("ping")["operationTime"]
        first = db.command("aggregate", "c", pipeline=[{"$changeStream": {}}], cursor={})
        cid = first["cursor"]["id"]
        pbrt0 = first["cursor"]["postBatchResumeToken"]["_data"]
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(seen) < 3:
            cur = empty_get_more(db, "c", cid, 500)
            assert cur["nextBatch"] == [], "a no-op must never be an event"
            tok = cur["postBatchResumeToken"]["_data"]
            if tok > (seen[-1] if seen else pbrt0):
                seen.append(tok)
        assert len(seen) >= 3, f"the no-op writer did not move the high-water mark: {seen}"
        t1 = db.command("ping")["operationTime"]
        assert t1 > t0
        hello = client.admin.command("hello")
        lw = hello["lastWrite"]
        assert lw["opTime"]["ts"] >= t1 and lw["majorityOpTime"]["ts"] == lw["opTime"]["ts"]
        # lastWriteDate has the second granularity of the oplog timestamp
        assert int(lw["lastWriteDate"].timestamp()) == lw["opTime"]["ts"].time
        assert lw["majorityWriteDate"] == lw["lastWriteDate"]
        db.command("killCursors", "c", cursors=[bson.Int64(cid)])
    finally:
        client.close()


@pytest.mark.replset_only
def test_no_op_waits_for_a_quiet_interval(mongosim_factory):
    # as MongoDB's writer: a no-op only when the oplog did not move since the
    # last check, so a primary written to every 0.4 s writes none; once the
    # writes stop, one follows within two intervals (the positive control
    # that shows the check below can see a no-op at all)
    server = mongosim_factory("--periodic-noop-interval-secs", "1")
    client = server.client()
    writer = server.client()
    try:
        db = client.admin
        first = db.command("aggregate", 1, pipeline=[{"$changeStream": {"allChangesForCluster": True}}],
                           cursor={})
        cid = first["cursor"]["id"]
        start = db.command("ping")["operationTime"]
        event_times, seen_times = {start}, set()
        stop = threading.Event()

        def write():
            for i in range(10):
                writer.busy.c.insert_one({"_id": i})
                time.sleep(0.4)
            stop.set()

        t = threading.Thread(target=write)
        t.start()
        while not stop.is_set():
            reply = db.command(SON([("getMore", bson.Int64(cid)), ("collection", "$cmd.aggregate"),
                                    ("maxTimeMS", 50)]))
            event_times.update(e["clusterTime"] for e in reply["cursor"]["nextBatch"])
            seen_times.add(reply["operationTime"])
        t.join()
        reply = db.command(SON([("getMore", bson.Int64(cid)), ("collection", "$cmd.aggregate"),
                                ("maxTimeMS", 50)]))
        event_times.update(e["clusterTime"] for e in reply["cursor"]["nextBatch"])
        assert len(event_times) == 11
        assert seen_times <= event_times, f"a no-op was written while busy: {seen_times - event_times}"
        deadline = time.monotonic() + 5
        idle_time = None
        while time.monotonic() < deadline and idle_time is None:
            reply = db.command(SON([("getMore", bson.Int64(cid)), ("collection", "$cmd.aggregate"),
                                    ("maxTimeMS", 200)]))
            assert reply["cursor"]["nextBatch"] == []
            if reply["operationTime"] not in event_times:
                idle_time = reply["operationTime"]
        assert idle_time is not None, "no no-op within 5 s of idleness"
        db.command("killCursors", "$cmd.aggregate", cursors=[bson.Int64(cid)])
    finally:
        client.close()
        writer.close()


@pytest.mark.replset_only
def test_hello_last_write_follows_writes(mongosim_factory):
    server = mongosim_factory()
    client = server.client()
    try:
        before = client.admin.command("hello")["lastWrite"]
        client.lw.c.insert_one({"_id": 1})
        op = client.lw.command("ping")["operationTime"]
        after = client.admin.command("hello")["lastWrite"]
        assert after["opTime"]["ts"] == op > before["opTime"]["ts"]
        assert after["opTime"]["t"] == 1
        # and does not move while idle
        time.sleep(1.2)
        assert client.admin.command("hello")["lastWrite"] == after
    finally:
        client.close()


@pytest.mark.parametrize("value", ["0", "11", "x"])
def test_no_op_interval_bounds_as_mongodb(value):
    proc = subprocess.run([mongosim_binary(), "--port", "0", "--periodic-noop-interval-secs",
                           value], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert "periodic-noop-interval-secs" in proc.stderr


@pytest.mark.replset_only
def test_get_parameter_reports_the_interval(mongosim_factory):
    server = mongosim_factory("--periodic-noop-interval-secs", "3")
    client = server.client()
    try:
        reply = client.admin.command("getParameter", 1, periodicNoopIntervalSecs=1)
        assert reply["periodicNoopIntervalSecs"] == 3
    finally:
        client.close()
    default = mongosim_factory(name="m2").client()
    try:
        assert default.admin.command("getParameter", 1,
                                     periodicNoopIntervalSecs=1)["periodicNoopIntervalSecs"] == 10
    finally:
        default.close()
