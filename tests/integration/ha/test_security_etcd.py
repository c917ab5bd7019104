"""tests/integration/ha/test_security_etcd.py - hostile values in etcd do not reach Postgres.

Issue 17, item 2: anyone who could write to etcd could write
postgresql.conf: a node's `host` went unquoted into
`primary_conninfo = 'host=%s ...'`, so the host value
`x'<newline>work_mem = '77MB'<newline>#` added a setting to every standby.

A 3-node cluster (`pgdaemon cluster up`). The primary's daemon is paused
(SIGSTOP), its node record in etcd is overwritten with that host, and a
replica's daemon is restarted, so it configures its standby from the
record. The record is refused (event ha.bad_key naming the key, view
field bad_keys) and the replica's pgdaemon.conf never holds the injected
setting. The daemon then runs again and the cluster heals.
"""

import base64
import json
import os
import signal
import time

import pytest

import hacluster
import hatools
from hatools import wait_for
from test_failover import healthy

HEAL_TIMEOUT = 150
INJECTED = "x'\nwork_mem = '77MB'\n#"


@pytest.fixture
def cluster(tmp_root):
    yield from hacluster.up(tmp_root, "hostile")


def etcd_put(endpoint, key, value):
    """etcd_put writes key = value through the v3 JSON gateway (no lease)."""
    import urllib.request
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(value.encode()).decode()}).encode()
    req = urllib.request.Request(endpoint + "/v3/kv/put", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_hostile_host_never_reaches_postgresql_conf(cluster):
    leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    replica = next(n for n in cluster.names() if n != leader)
    endpoint = cluster.state["etcd_endpoint"]
    record = next(n for n in v["nodes"] if n["name"] == leader)
    conf_path = os.path.join(cluster.node(replica)["data_dir"], "pgdaemon.conf")
    leader_pid = cluster.daemon_pid(leader)
    os.kill(leader_pid, signal.SIGSTOP)
    try:
        record["host"] = INJECTED
        etcd_put(endpoint, f"/pgdaemon/local/nodes/{leader}", json.dumps(record))
        os.kill(cluster.daemon_pid(replica), signal.SIGTERM)
        wait_for(lambda: not hatools.alive(cluster.daemon_pid(replica)), 60,
                 "the replica's daemon to stop")
        cluster.restart_daemon(replica)
        until = time.monotonic() + 6
        while time.monotonic() < until:
            if os.path.exists(conf_path):
                with open(conf_path) as f:
                    text = f.read()
                assert "work_mem" not in text, f"injected setting in {conf_path}:\n{text}"
            time.sleep(0.2)
        st = cluster.status()
        assert any(b["key"].endswith(f"/nodes/{leader}") for b in st.get("bad_keys", [])), st
    finally:
        os.kill(leader_pid, signal.SIGCONT)
    evs = hatools.events(cluster_etcd(cluster), "local")
    assert any(e["event"] == "ha.bad_key" and f"nodes/{leader}" in e["message"] for e in evs), \
        [e["event"] for e in evs]
    wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "the cluster to heal")
    with open(conf_path) as f:
        assert "work_mem" not in f.read()


def cluster_etcd(cluster):
    """cluster_etcd: a minimal client object for hatools.events (request(path, body) -> dict)."""
    import urllib.request

    class Client:
        def request(self, path, body):
            req = urllib.request.Request(cluster.state["etcd_endpoint"] + path,
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
    return Client()
