"""tests/integration/ha/test_safety_keeper.py - the lease is renewed while an action runs.

Issue 16, finding 10: long actions (a Postgres start, pg_promote, the
CHECKPOINT after it, pg_rewind, an init script) blocked the loop, so the
lease was not renewed and the node's own watchdog killed the Postgres it
was starting or promoting.

A single node (ttl 4 s, loop 500 ms, retry 1 s) bootstraps with a
primary init script that sleeps 10 s, more than twice the ttl, and then
creates a table: the table is there once /primary answers 200 (Postgres
ran through the whole script), nothing was fenced, and the leader key
never changed hands.

Issue 16, finding 16 (last part): after a kill -9 of the daemon its
watchdog outlives it and enforces the last deadline; a daemon started
again at once took the primary back, and then that orphaned watchdog
killed its Postgres. Now the new daemon adopts the orphan's deadline and
ends it: the postmaster started before the kill still runs two ttl later.
"""

import json
import os
import signal
import time

import hatools
from hatools import http_get, start_daemon, wait_for, write_node_config


def test_primary_survives_an_init_script_longer_than_the_ttl(tmp_root, etcd):
    d = hatools.shared_dir(tmp_root, "keeper")
    script = os.path.join(d, "init.sh")
    with open(script, "w") as f:
        f.write("sleep 10\npsql -v ON_ERROR_STOP=1 -c 'CREATE TABLE after_sleep (n int)'\n")
    os.chmod(script, 0o755)
    cfg, conf = write_node_config(d, "slow", etcd.endpoint, "k", ttl="4s", loop_wait="500ms",
                                  retry_timeout="1s",
                                  postgres={"superuser_password": hatools.SUPERUSER_PASSWORD,
                                            "replication_password": hatools.REPLICATION_PASSWORD,
                                            "primary_init_script": script,
                                            "parameters": ["fsync=off",
                                                           "dynamic_shared_memory_type=mmap"]})
    log = os.path.join(d, "slow.log")
    proc = start_daemon(tmp_root, cfg, log)
    try:
        wait_for(lambda: http_get(conf["http_port"], "/primary")[0] == 200, 90, "slow primary")
        assert hatools.query(conf["pg_port"], "SELECT count(*) FROM after_sleep") == [(0,)]
        assert etcd.get("/pgdaemon/k/leader") == "slow"
    finally:
        proc.stop()
    with open(log) as f:
        lines = [json.loads(line) for line in f if line.startswith("{")]
    fenced = [ln for ln in lines if ln.get("event") == "ha.fenced"]
    assert fenced == [], fenced
    failed = [ln["message"] for ln in lines if ln.get("event") == "ha.action_failed"]
    assert failed == [], failed


def test_orphaned_watchdog_does_not_kill_a_restarted_primary(tmp_root, etcd):
    d = hatools.shared_dir(tmp_root, "orphan")
    cfg, conf = write_node_config(d, "solo", etcd.endpoint, "o", ttl="6s", loop_wait="500ms",
                                  retry_timeout="1500ms")
    log = os.path.join(d, "solo.log")
    proc = start_daemon(tmp_root, cfg, log)
    again = None
    try:
        wait_for(lambda: http_get(conf["http_port"], "/primary")[0] == 200, 90, "solo primary")
        pm = hatools.postmaster_pid(conf["data_dir"])
        os.kill(proc.pid, signal.SIGKILL)  # the watchdog, a child, outlives it
        wait_for(lambda: not hatools.alive(proc.pid), 30, "the daemon to die")
        again = start_daemon(tmp_root, cfg, os.path.join(d, "solo-again.log"))
        wait_for(lambda: http_get(conf["http_port"], "/primary")[0] == 200, 60, "primary again")
        time.sleep(2 * 6)  # two ttl: the orphan's deadline is long past
        assert hatools.alive(pm) and hatools.postmaster_pid(conf["data_dir"]) == pm, \
            "the postmaster was killed after the daemon took the primary back"
        assert http_get(conf["http_port"], "/primary")[0] == 200
    finally:
        if again is not None:
            again.stop()
        proc.stop()
    with open(log) as f:
        assert "watchdog: write deadline passed" not in f.read()
