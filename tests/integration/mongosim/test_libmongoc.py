"""tests/integration/mongosim/test_libmongoc.py - the same server through libmongoc:
build/bin/msim_client runs handshake, every-type CRUD, cursors, bulk errors, aggregate,
change streams with resume and a transaction, and exits 0 when all passed. Through a
sharded cluster's router (`msim_client URI mongos`) it shards its collection on a hashed
_id first, so the same checks run over documents spread across the shards."""

import subprocess

import pytest

from mgharness import build_path


ALL_OK = ["ok", "handshake", "ok", "crud_every_type", "ok", "cursor_and_bulk", "ok", "aggregate",
          "ok", "change_stream", "ok", "transaction"]


def run_client(uri, *extra):
    return subprocess.run([build_path("bin", "msim_client"), uri, *extra], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.replset_only  # msim_client checks a replica set's hello
def test_libmongoc_client_replica_set_discovery(mongosim_factory):
    server = mongosim_factory()
    r = run_client(f"mongodb://{server.address}/?replicaSet=mongosim&serverSelectionTimeoutMS=5000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ALL_OK


@pytest.mark.replset_only  # msim_client checks a replica set's hello
def test_libmongoc_client_direct_connection_with_auth(mongosim_factory):
    server = mongosim_factory("--auth", "bob:pw")
    r = run_client(f"mongodb://bob:pw@{server.address}/?directConnection=true&authSource=admin")
    assert r.returncode == 0, r.stdout + r.stderr
    bad = run_client(f"mongodb://bob:nope@{server.address}/?directConnection=true"
                     "&authSource=admin&serverSelectionTimeoutMS=2000")
    assert bad.returncode != 0
    assert "Authentication failed" in bad.stderr


@pytest.mark.sharded_only
def test_libmongoc_client_through_the_router(mongosim_factory):
    # libmongoc discovers a mongos from hello's msg and runs every check against a
    # collection sharded on a hashed _id (targeted, scatter-gather, merged streams)
    server = mongosim_factory()
    r = run_client(f"mongodb://{server.address}/?serverSelectionTimeoutMS=5000", "mongos")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ALL_OK


@pytest.mark.sharded_only
def test_libmongoc_client_through_the_router_with_auth(mongosim_factory):
    server = mongosim_factory("--auth", "bob:pw")
    r = run_client(f"mongodb://bob:pw@{server.address}/?serverSelectionTimeoutMS=5000", "mongos")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ALL_OK
    bad = run_client(f"mongodb://bob:nope@{server.address}/?serverSelectionTimeoutMS=2000",
                     "mongos")
    assert bad.returncode != 0
    assert "Authentication failed" in bad.stderr
