"""Integration: the follower after a cutover (issue 14 hole 4, the follower's side;
docs/cdc.md "After the cutover").

Proves: once a cutover flipped, `migrate sync --follow` stops applying by itself and exits
8 with a clear message; a source write after the cutover (the source unfrozen by hand, as a
misconfigured application would still write) is reported — an event, a line in `migrate
status` — and never applied over the rows the application now owns; `sync --resync` is
refused after the cutover. Each test has its own mongosim: the freeze is global.
"""

import signal
import subprocess
import time

import pytest

from mgharness import build_path
from mgharness.mongosim import MongosimInstance

from test_sync import init, mongo_uri

EXIT_STATE = 8
ENDPOINT = "postgresql://app@127.0.0.1:5000/app"


@pytest.fixture
def source_uri(services):
    return services.add(MongosimInstance(services.root, name="fenced",
                                         args=["--periodic-noop-interval-secs", "1"])).uri


def follow(mongo, pg):
    return subprocess.Popen([build_path("bin", "migrate"), "--log-format=json", "sync",
                             "--source", mongo_uri(mongo), "--target", pg.uri, "--follow",
                             "--batch-delay", "20ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")


def test_the_follower_stops_at_the_cutover_and_reports_later_writes(mongo, dbname, postgres,
                                                                  migrate):
    db = mongo[dbname]
    db["c"].insert_many([{"_id": i, "v": "before"} for i in range(20)])
    init(migrate, mongo, postgres, dbname)
    uri = mongo_uri(mongo)
    assert migrate("sync", "--source", uri, "--target", postgres.uri).rc == 0
    follower = follow(mongo, postgres)
    try:
        time.sleep(1.5)
        db["c"].insert_one({"_id": 100, "v": "during follow"})
        r = migrate("cutover", "--source", uri, "--target", postgres.uri, "--max-lag", "10s",
                    "--endpoint", ENDPOINT, "--validation-age", "0")
        assert r.rc == 0, r
        # the follower stops by itself: it read the cutover's state
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.send_signal(signal.SIGKILL)
            follower.wait()
    assert follower.returncode == EXIT_STATE, err[-3000:]
    assert "the cutover is done" in err and "no source write came after it" in err, err[-3000:]
    assert postgres.query(f'SELECT doc->>\'v\' FROM "{dbname}".c WHERE _id = 100') == [
        ("during follow",)]
    # the application writes to PostgreSQL now; someone unfreezes the source and an old
    # client still writes there
    postgres.query(f'UPDATE "{dbname}".c SET doc = jsonb_set(doc, \'{{v}}\', \'"app"\') '
                   f'WHERE _id = 1 RETURNING 1')
    mongo.admin.command({"setUserWriteBlockMode": 1, "global": False})
    db["c"].update_one({"_id": 1}, {"$set": {"v": "late"}})
    db["c"].insert_one({"_id": 200, "v": "late"})
    db["c"].delete_one({"_id": 2})
    r = migrate("sync", "--source", uri, "--target", postgres.uri, "--follow", timeout=60)
    assert r.rc == EXIT_STATE, r
    assert "3 source writes came after the cutover and were NOT applied" in r.stderr, r.stderr
    # nothing applied over the application's rows
    rows = dict(postgres.query(f'SELECT _id, doc->>\'v\' FROM "{dbname}".c'))
    assert rows[1] == "app" and 200 not in rows and rows[2] == "before", rows
    st = migrate("status", "--target", postgres.uri, "--json").json()
    late = {(w["_id"], w["op"]) for w in st["after_cutover"]}
    assert late == {("1", "update"), ("200", "insert"), ("2", "delete")}, st["after_cutover"]
    assert st["after_cutover_total"] == 3
    text = migrate("status", "--target", postgres.uri).stdout
    assert "source writes after the cutover, NOT applied (3" in text, text
    assert postgres.query("SELECT data->>'writes' FROM _migrate.events WHERE kind = "
                          "'cdc.after_cutover' ORDER BY id DESC LIMIT 1") == [("3",)]
    # a re-copy would overwrite the application's rows
    r = migrate("sync", "--source", uri, "--target", postgres.uri, "--resync", f"{dbname}.c")
    assert r.rc == EXIT_STATE and "--resync would write them" in r.stderr, r
    assert dict(postgres.query(f'SELECT _id, doc->>\'v\' FROM "{dbname}".c'))[1] == "app"
