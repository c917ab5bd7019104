"""tests/integration/ha/test_node.py - one pgdaemon node and its safety rule.

A primary that cannot renew its lease stops answering /primary with 200
within ttl - retry_timeout (before any other node could take the leader
key) and, having no peer to vouch for it over UDP, fences: Postgres stops
(issue 10). Once etcd is back it retakes the key and serves /primary again.
Every state change is one JSON log line with "event":"ha.transition".
"""

import json
import os
import time

import hatools
from hatools import http_get, start_daemon, wait_for, write_node_config


def test_primary_503_when_lease_cannot_be_renewed(tmp_root, etcd):
    d = hatools.shared_dir(tmp_root, "safety")
    cfg, conf = write_node_config(d, "solo", etcd.endpoint, "s", ttl="4s", retry_timeout="1s")
    log = os.path.join(d, "solo.log")
    proc = start_daemon(tmp_root, cfg, log)
    try:
        port = conf["http_port"]
        wait_for(lambda: http_get(port, "/primary")[0] == 200, 60, "solo to become primary")
        assert etcd.get("/pgdaemon/s/leader") == "solo"
        etcd.stop()
        t0 = time.monotonic()
        wait_for(lambda: http_get(port, "/primary")[0] == 503, 15, "/primary to turn 503")
        # the lease was renewed at most one loop before etcd went away: 503 comes
        # no later than ttl - retry_timeout (3 s) after that; the bound is generous
        assert time.monotonic() - t0 < 8
        code, body = http_get(port, "/primary")
        reason = json.loads(body)["reason"]
        # the deadline, or already the fence it triggers (the second GET can
        # land after the daemon began stopping Postgres)
        assert any(k in reason for k in ("write deadline passed", "demoted", "fencing")), reason
        # issue 10: fenced - a lone node has no peer to vouch for it, so Postgres stops
        pid = hatools.postmaster_pid(conf["data_dir"])
        wait_for(lambda: not hatools.alive(pid), 15, "the primary's Postgres to be fenced")
        etcd.start()
        wait_for(lambda: http_get(port, "/primary")[0] == 200, 30, "/primary back to 200")
        assert etcd.get("/pgdaemon/s/leader") == "solo"
    finally:
        status = proc.stop()
    assert status == 0  # a clean stop (also: no leak report under ASan)
    assert not hatools.alive(hatools.postmaster_pid(conf["data_dir"]))
    with open(log) as f:
        lines = [json.loads(line) for line in f if line.startswith("{")]
    trans = [(ln["from"], ln["to"]) for ln in lines if ln.get("event") == "ha.transition"]
    assert trans == [("init", "bootstrap"), ("bootstrap", "primary"), ("demoted", "primary")]
    fenced = [ln for ln in lines if ln.get("event") == "ha.fenced"]
    assert fenced and fenced[0]["from"] == "primary" and fenced[0]["to"] == "demoted"
    assert all(ln["module"] == "ha" and "timestamp" in ln for ln in lines)
    text = open(log).read()
    assert hatools.SUPERUSER_PASSWORD not in text
    assert "Sanitizer" not in text and "runtime error" not in text


def test_init_script_runs_once_and_events_are_bounded(tmp_root, etcd):
    d = hatools.shared_dir(tmp_root, "initscript")
    script = os.path.join(d, "init.sh")
    with open(script, "w") as f:
        f.write("psql -v ON_ERROR_STOP=1 -c 'CREATE TABLE seeded (n int)' "
                "-c 'INSERT INTO seeded VALUES (1)'\n")
    os.chmod(script, 0o755)
    # older events already in etcd: the node's own must push the oldest out
    for i in range(15):
        etcd.put(f"/pgdaemon/e/events/0000000000{i:03d}-old-0000",
                 json.dumps({"time_ms": i, "node": "old", "event": "ha.test", "message": "old"}))
    cfg, conf = write_node_config(d, "seed", etcd.endpoint, "e", max_events=10,
                                  postgres={"superuser_password": hatools.SUPERUSER_PASSWORD,
                                            "replication_password": hatools.REPLICATION_PASSWORD,
                                            "primary_init_script": script,
                                            "parameters": ["fsync=off", "dynamic_shared_memory_type=mmap"]})
    log = os.path.join(d, "seed.log")
    proc = start_daemon(tmp_root, cfg, log)
    try:
        wait_for(lambda: http_get(conf["http_port"], "/primary")[0] == 200, 60, "seed primary")
        assert hatools.query(conf["pg_port"], "SELECT n FROM seeded") == [(1,)]
        evs = hatools.events(etcd, "e")
        assert len(evs) == 10
        assert any(e["node"] == "seed" and e["event"] == "ha.transition" for e in evs)
        assert evs[0]["node"] == "old" and evs[0]["time_ms"] >= 15 - 10 + 1
    finally:
        proc.stop()
    # a restart does not run the script again (it would fail: the table exists)
    proc = start_daemon(tmp_root, cfg, log)
    try:
        wait_for(lambda: http_get(conf["http_port"], "/primary")[0] == 200, 60, "seed again")
        assert hatools.query(conf["pg_port"], "SELECT count(*) FROM seeded") == [(1,)]
    finally:
        proc.stop()
