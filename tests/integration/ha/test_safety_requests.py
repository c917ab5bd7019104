"""tests/integration/ha/test_safety_requests.py - operator requests expire by themselves.

Issue 16, finding 17: `allow_data_loss` stayed on until someone turned it
off, and a switchover whose CLI had timed out stayed armed in the spec
key and fired later. Both are now keys under a lease of the CLI: a
switchover request lives as long as its CLI waits (and is withdrawn when
it gives up), an override for `--for` (default 10 min).

A 3-node cluster (`pgdaemon cluster up`). The primary's daemon is paused
while `pgdaemon switchover --timeout 3` waits: the CLI gives up, and once
the daemon runs again no switchover happens (same leader, same term, no
request left in etcd). `pgdaemon override --allow-data-loss on --for 2s`
writes the override, which is gone a few seconds later.
"""

import base64
import json
import os
import signal
import time

import pytest

import hacluster
from hatools import run_pgdaemon, wait_for
from test_failover import healthy

HEAL_TIMEOUT = 150


@pytest.fixture(scope="module")
def cluster(tmp_root):
    yield from hacluster.up(tmp_root, "requests")


def etcd_get(cluster, key):
    """etcd_get returns the value of key, or None."""
    import urllib.request
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    req = urllib.request.Request(cluster.state["etcd_endpoint"] + "/v3/kv/range", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        kvs = json.loads(r.read()).get("kvs", [])
    return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None


def test_switchover_request_expires_with_its_cli(cluster):
    leader, v = wait_for(lambda: healthy(cluster), HEAL_TIMEOUT, "a healthy cluster")
    term, sid = v["status"]["term"], v["status"]["switchover_id"]
    pid = cluster.daemon_pid(leader)
    os.kill(pid, signal.SIGSTOP)  # 10 s ttl: its watchdog would fence it after ~8 s
    try:
        out = run_pgdaemon(cluster.root, "switchover", "--timeout", 3, "--config",
                           cluster.node(leader)["config"], timeout=60)
        assert out.returncode != 0 and "not finished in time" in out.stderr, out.stderr
        assert etcd_get(cluster, "/pgdaemon/local/switchover") is None
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(6)  # many rounds of the primary: an armed request would have begun by now
    v = cluster.status()
    assert v["leader"] == leader and v["status"]["term"] == term, v["status"]
    assert v["status"]["switchover_id"] == sid and v["status"]["failover_state"] == "stable"


def test_allow_data_loss_expires(cluster):
    cfg = cluster.node("node1")["config"]
    out = run_pgdaemon(cluster.root, "override", "--allow-data-loss", "on", "--for", "2s",
                       "--config", cfg, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(etcd_get(cluster, "/pgdaemon/local/override"))["allow_data_loss"] is True
    wait_for(lambda: etcd_get(cluster, "/pgdaemon/local/override") is None, 20,
             "the override to expire")
    out = run_pgdaemon(cluster.root, "override", "--allow-data-loss", "on", "--config", cfg,
                       timeout=30)
    assert out.returncode == 0 and "for 600s" in out.stdout, out.stdout
    out = run_pgdaemon(cluster.root, "override", "--allow-data-loss", "off", "--config", cfg,
                       timeout=30)
    assert out.returncode == 0 and etcd_get(cluster, "/pgdaemon/local/override") is None
