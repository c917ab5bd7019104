"""tests/integration/ha/test_refusals.py - what pgdaemon refuses, and bad input.

* a node whose data dir has a foreign system identifier is refused: an
  event naming it, a non-zero exit, and its data dir left as it was;
* max_nodes and join_timeout are enforced, each refusal an event naming the node;
* each invalid config option, etcd unreachable at start, Postgres binaries
  missing: a clear error, a non-zero exit and no data dir left behind.
"""

import json
import os
import time

import pytest

import hatools
from hatools import (http_get, run_pgdaemon, start_daemon, wait_for, write_node_config)


@pytest.fixture(scope="module")
def primary(tmp_root, session_etcd):
    """primary is a one-node cluster "m" (its daemon stays up for the module)."""
    d = hatools.shared_dir(tmp_root, "refusals")
    cfg, conf = write_node_config(d, "p1", session_etcd.endpoint, "m", slot_ttl="2s")
    proc = start_daemon(tmp_root, cfg, os.path.join(d, "p1.log"))
    try:
        wait_for(lambda: http_get(conf["http_port"], "/primary")[0] == 200, 60,
                 "p1 to become primary")
        yield {"dir": d, "conf": conf, "proc": proc}
    finally:
        proc.stop()


def refusal_events(etcd, cluster, node):
    return [e for e in hatools.events(etcd, cluster)
            if e["event"] == "ha.refused" and e["node"] == node]


def test_foreign_system_identifier_refused(tmp_root, session_etcd, primary):
    # a second cluster "f" bootstraps its own data dir, then stops
    cfg_f, conf_f = write_node_config(primary["dir"], "f1", session_etcd.endpoint, "f")
    proc = start_daemon(tmp_root, cfg_f, os.path.join(primary["dir"], "f1.log"))
    try:
        wait_for(lambda: http_get(conf_f["http_port"], "/primary")[0] == 200, 60, "f1 primary")
    finally:
        proc.stop()
    data = conf_f["data_dir"]
    foreign = json.loads(session_etcd.get("/pgdaemon/f/initialize"))["system_identifier"]
    ours = json.loads(session_etcd.get("/pgdaemon/m/initialize"))["system_identifier"]
    assert foreign and ours and foreign != ours
    before = sorted(os.listdir(data))
    # that data dir tries to join cluster "m"
    cfg, _ = write_node_config(primary["dir"], "intruder", session_etcd.endpoint, "m",
                               data_dir=data)
    t0 = time.monotonic()
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, timeout=60)
    assert out.returncode == 1, out.stderr
    assert time.monotonic() - t0 < 30
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    refused = [ln for ln in lines if ln.get("event") == "ha.refused"]
    assert refused and foreign in refused[0]["message"] and ours in refused[0]["message"]
    evs = refusal_events(session_etcd, "m", "intruder")
    assert len(evs) == 1 and "system identifier" in evs[0]["message"]
    # the foreign data dir is untouched and Postgres was never started on it
    assert sorted(os.listdir(data)) == before
    assert hatools.postmaster_pid(data) is None
    # the real primary is unaffected
    assert http_get(primary["conf"]["http_port"], "/primary")[0] == 200


def test_max_nodes_refused(tmp_root, session_etcd, primary):
    cfg, conf = write_node_config(primary["dir"], "extra", session_etcd.endpoint, "m",
                                  max_nodes=1)
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, timeout=60)
    assert out.returncode == 1, out.stderr
    evs = refusal_events(session_etcd, "m", "extra")
    assert len(evs) == 1 and "max_nodes is 1" in evs[0]["message"]
    assert not os.path.exists(conf["data_dir"])
    out = run_pgdaemon(tmp_root, "events", "--config", cfg, timeout=30)
    assert "ha.refused" in out.stdout and "node extra refused" in out.stdout


def test_join_timeout_refused(tmp_root, session_etcd):
    d = hatools.shared_dir(tmp_root, "jointimeout")
    # a cluster that was initialized but whose primary never shows up
    session_etcd.put("/pgdaemon/j/initialize",
                     json.dumps({"node": "gone", "system_identifier": "7000000000000000001"}))
    cfg, conf = write_node_config(d, "late", session_etcd.endpoint, "j", join_timeout="2s")
    t0 = time.monotonic()
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, timeout=60)
    assert out.returncode == 1, out.stderr
    assert 2 <= time.monotonic() - t0 < 30
    evs = refusal_events(session_etcd, "j", "late")
    assert len(evs) == 1 and "join_timeout" in evs[0]["message"]
    assert not os.path.exists(conf["data_dir"])


BAD_OPTIONS = [
    ("ttl shorter than loop + 2 x retry", {"ttl": "4s"}, 2, "loop_wait"),
    ("pg port out of range", {"pg_port": 70000}, 2, "pg_port"),
    ("invalid node name", {"name": "Bad Name"}, 2, "\"name\""),
    ("relative data dir", {"data_dir": "data"}, 2, "data_dir"),
    ("etcd endpoint without scheme", {"etcd": {"endpoints": ["127.0.0.1:2379"]}}, 2,
     "127.0.0.1:2379"),
    ("no etcd endpoint", {"etcd": {"endpoints": []}}, 2, "etcd.endpoints"),
    ("unknown on_stop", {"on_stop": "maybe"}, 2, "on_stop"),
    ("no replication password", {"postgres": {"superuser_password": "x"}}, 2,
     "replication_password"),
    ("Postgres binaries missing", {"bin_dir": "/nonexistent/bin"}, 1, "/nonexistent/bin"),
    ("unknown OS user for Postgres", {"pg_user": "no_such_user_xyz"}, 2, "pg_user"),
]


@pytest.mark.parametrize("what,overrides,code,needle", BAD_OPTIONS,
                         ids=[b[0] for b in BAD_OPTIONS])
def test_bad_config(tmp_root, session_etcd, what, overrides, code, needle):
    d = hatools.shared_dir(tmp_root, "bad")
    cfg, conf = write_node_config(d, "bad1", session_etcd.endpoint, "bad")
    with open(cfg) as f:
        doc = json.load(f)
    doc.update(overrides)  # replaces whole sub-objects, e.g. "postgres"
    with open(cfg, "w") as f:
        json.dump(doc, f)
    conf = doc
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, timeout=30)
    assert out.returncode == code, out.stderr
    assert needle in out.stderr
    data_dir = conf["data_dir"] if os.path.isabs(conf["data_dir"]) else None
    assert data_dir is None or not os.path.exists(data_dir)


def test_password_on_command_line_refused(tmp_root, session_etcd):
    d = hatools.shared_dir(tmp_root, "bad")
    cfg, _ = write_node_config(d, "bad2", session_etcd.endpoint, "bad")
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, "--postgres-superuser-password",
                       "visible-in-ps", timeout=30)
    assert out.returncode == 2
    assert "command line" in out.stderr and "visible-in-ps" not in out.stderr


def test_etcd_unreachable_at_start(tmp_root):
    d = hatools.shared_dir(tmp_root, "noetcd")
    port = hatools.pick_free_port()
    cfg, conf = write_node_config(d, "lonely", f"http://127.0.0.1:{port}", "x")
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, timeout=60)
    assert out.returncode == 1
    assert "etcd is unreachable at start" in out.stderr and str(port) in out.stderr
    assert not os.path.exists(conf["data_dir"])


def test_slot_of_departed_node_dropped(tmp_root, session_etcd, primary):
    port = primary["conf"]["pg_port"]
    hatools.query(port, "SELECT pg_create_physical_replication_slot('pgdaemon_ghost')")
    hatools.query(port, "SELECT pg_create_physical_replication_slot('not_ours')")
    wait_for(lambda: hatools.query(port, "SELECT count(*) FROM pg_replication_slots "
                                         "WHERE slot_name = 'pgdaemon_ghost'") == [(0,)],
             30, "the ghost's slot to be dropped")
    evs = [e for e in hatools.events(session_etcd, "m") if e["event"] == "ha.slot_dropped"]
    assert len(evs) == 1 and "pgdaemon_ghost" in evs[0]["message"]
    # slots pgdaemon does not own are left alone
    assert hatools.query(port, "SELECT slot_name FROM pg_replication_slots") == [("not_ours",)]


def test_failing_initdb_releases_initialize(tmp_root, session_etcd):
    d = hatools.shared_dir(tmp_root, "badinitdb")
    bindir = os.path.join(d, "bin")
    os.mkdir(bindir)
    os.chmod(bindir, 0o755)
    real = "/usr/lib/postgresql/15/bin"
    for tool in ("postgres", "pg_basebackup", "pg_controldata"):
        os.symlink(os.path.join(real, tool), os.path.join(bindir, tool))
    with open(os.path.join(bindir, "initdb"), "w") as f:
        f.write("#!/bin/sh\necho 'initdb: simulated failure' >&2\nexit 1\n")
    os.chmod(os.path.join(bindir, "initdb"), 0o755)
    cfg, conf = write_node_config(d, "unlucky", session_etcd.endpoint, "b", bin_dir=bindir)
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, timeout=60)
    assert out.returncode == 1, out.stderr
    evs = [e for e in hatools.events(session_etcd, "b") if e["event"] == "ha.bootstrap_failed"]
    assert len(evs) == 1 and "unlucky" in evs[0]["message"]
    # another node may bootstrap now, and nothing half-initialised is left
    assert session_etcd.get("/pgdaemon/b/initialize") is None
    assert not os.path.exists(conf["data_dir"])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: Postgres runs as another user")
def test_data_dir_unreachable_for_postgres_user(tmp_root, session_etcd):
    d = tmp_root.mkdtemp("private")  # mode 0700, owned by root
    cfg, conf = write_node_config(d, "hidden", session_etcd.endpoint, "h")
    out = run_pgdaemon(tmp_root, "run", "--config", cfg, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "cannot reach" in out.stderr and "data_dir" in out.stderr
    assert not os.path.exists(conf["data_dir"])


def test_failed_cluster_up_is_cleaned_by_down(tmp_root):
    d = os.path.join(hatools.shared_dir(tmp_root, "failedup"), "c")
    out = run_pgdaemon(tmp_root, "cluster", "up", "--nodes", 2, "--dir", d,
                       "--bin-dir", "/nonexistent/bin", "--timeout", 30, timeout=90)
    assert out.returncode != 0
    assert "exited" in out.stderr and "cluster down" in out.stderr
    with open(os.path.join(d, "cluster.json")) as f:
        pids = [p["pid"] for p in json.load(f)["processes"]]
    assert pids  # etcd and the daemons had been started
    down = run_pgdaemon(tmp_root, "cluster", "down", "--dir", d, timeout=90)
    assert down.returncode == 0, down.stderr
    assert [p for p in pids if hatools.alive(p)] == []


@pytest.mark.parametrize("args", [["run"], ["status"], ["events"], ["switchover"], ["override"],
                                  ["cluster"], ["cluster", "up"], ["cluster", "down"]])
def test_every_command_answers_help(tmp_root, args):
    # --help: the usage on stdout and exit 0, for every command and subcommand
    r = run_pgdaemon(tmp_root, *args, "--help", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: pgdaemon " + args[0]), r.stdout
    if args[0] == "run":
        assert "--config FILE" in r.stdout and "--start-timeout" in r.stdout
    if args == ["cluster"]:  # a group: its subcommands
        assert "\n  up " in r.stdout and "\n  down " in r.stdout
    if args == ["cluster", "up"]:
        for opt in ("--nodes", "--dir", "--ttl", "--loop-wait-ms", "--retry-timeout-ms",
                    "synchronous-mode", "--pg-parameter"):
            assert opt in r.stdout
    if args == ["cluster", "down"]:
        assert "--dir" in r.stdout
    if args[0] in ("status", "events", "switchover", "override"):
        assert "--config FILE" in r.stdout and "--etcd-endpoints" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["override"], 'missing required option "allow_data_loss"'),
    (["cluster"], 'missing command; run "pgdaemon cluster --help"'),
    (["cluster", "up"], 'missing required option "dir"'),
    (["cluster", "down"], 'missing required option "dir"'),
])
def test_missing_arguments_are_a_usage_error(tmp_root, args, needle):
    # one line naming what is missing, exit 2 (the command framework's final error)
    r = run_pgdaemon(tmp_root, *args, timeout=30)
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"pgdaemon {' '.join(args)}: ") and needle in r.stderr, r.stderr
