"""Integration: change events over 16 MB (issue 15 point 2; docs/cdc.md "Events over 16 MB").

An update whose event carries the looked-up document and its update description is larger
than MongoDB's 16 MB + 16 KB: MongoDB fails the stream with BSONObjectTooLarge (10334).
On a 7.0 source (and 6.0.9+) the follower reads such an event in fragments
($changeStreamSplitLargeEvent) and puts them together; on 6.0.8 it reopens the stream
after the last event it read with the document projected out and reads the document by
_id. Both must apply every such document; the old code exited on every rerun at the event
(the decoder refused an insert without fullDocument). Each test has its own mongosim with
the version it claims; kill -9 at seeded points while the large events are read checks
that a restart resumes correctly (never from inside a split event).
"""

import os
import random
import signal
import subprocess
import time

import pytest

from mgharness import build_path
from mgharness.mongosim import MongosimInstance

from test_cdc import stop, wait_for
from test_sync import assert_same, init, mongo_uri

MB = 1024 * 1024


@pytest.fixture(params=["7.0", "6.0"])
def source_uri(request, services):
    sim = services.add(MongosimInstance(
        services.root, name="big" + request.param.replace(".", ""),
        args=["--server-version", request.param, "--periodic-noop-interval-secs", "1"]))
    return sim.uri


def follow(mongo, pg):
    return subprocess.Popen([build_path("bin", "migrate"), "--log-format=json", "sync",
                             "--source", mongo_uri(mongo), "--target", pg.uri, "--follow",
                             "--batch-delay", "20ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")


def big_changes(client, db):
    """writes whose events are over 16 MB + 16 KB with the looked-up document, and small
    writes around them."""
    c = db["c"]
    # one transaction: its events come together, so the stream that fails at the large one
    # is read again from before the small insert, which then has no document either
    with client.start_session() as s:
        with s.start_transaction():
            c.insert_one({"_id": "0", "a": "p" * (8 * MB)}, session=s)
            c.insert_one({"_id": "txn-small", "v": 1}, session=s)
            c.update_one({"_id": "0"}, {"$set": {"b": "r" * (7 * MB + 900 * 1024)}}, session=s)
    c.insert_one({"_id": "1", "a": "x" * (8 * MB)})            # 8 MB: fits
    c.insert_one({"_id": "small-1", "v": 1})
    c.update_one({"_id": "1"}, {"$set": {"b": "y" * (7 * MB + 900 * 1024)}})  # ~24 MB event
    c.insert_one({"_id": "2", "a": "z" * (9 * MB)})
    c.update_one({"_id": "2"}, {"$set": {"b": "w" * (6 * MB)}})  # then gone: read by _id: null
    c.delete_one({"_id": "2"})
    c.replace_one({"_id": "small-1"}, {"v": 2})
    c.insert_one({"_id": "3", "a": "q" * (16 * MB - 200)})      # a full 16 MB document: fits


def test_events_over_16_mb_are_applied(mongo, dbname, postgres, migrate, source_uri):
    version = mongo.server_info()["version"]
    db = mongo[dbname]
    db["c"].insert_many([{"_id": f"seed-{i}"} for i in range(5)])
    init(migrate, mongo, postgres, dbname)
    assert migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri).rc == 0
    proc = follow(mongo, postgres)
    try:
        time.sleep(1)
        big_changes(mongo, db)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and postgres.query(
                f'SELECT count(*) FROM "{dbname}".c WHERE _id = \'3\'')[0][0] == 0:
            time.sleep(0.1)
        time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert_same(mongo, postgres, dbname, "c")
    row = postgres.query(f'SELECT length(doc->>\'b\') FROM "{dbname}".c WHERE _id = \'1\'')
    assert row == [(7 * MB + 900 * 1024,)]
    if version.startswith("7."):
        # the split route: fragments put together, no stream reopened without documents
        assert '"event":"cdc.too_large"' not in err, err[-3000:]
    else:
        assert '"event":"cdc.too_large"' in err and "cannot split it" in err, err[-3000:]


def test_kill_9_while_reading_large_events(mongo, dbname, postgres, migrate, source_uri):
    db = mongo[dbname]
    db["c"].insert_many([{"_id": i, "v": 0} for i in range(3)])
    init(migrate, mongo, postgres, dbname)
    assert migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri).rc == 0
    for k in range(3):  # three ~24 MB update events, each in two fragments on 7.0
        db["c"].update_one({"_id": k}, {"$set": {"a": chr(97 + k) * (8 * MB)}})
        db["c"].update_one({"_id": k}, {"$set": {"b": chr(65 + k) * (7 * MB + 900 * 1024)}})
    rng = random.Random(1502)
    binary = build_path("bin", "migrate")
    for _ in range(6):
        p = subprocess.Popen([binary, "sync", "--source", mongo_uri(mongo), "--target",
                              postgres.uri, "--follow", "--batch-events", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.0))
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    r = migrate("sync", "--source", mongo_uri(mongo), "--target", postgres.uri, timeout=600)
    assert r.rc == 0, r
    assert_same(mongo, postgres, dbname, "c")
