"""tests/integration/mongosim/test_libmongoc.py - the same server through libmongoc:
build/bin/msim_client runs handshake, every-type CRUD, cursors, bulk errors, aggregate,
change streams with resume and a transaction, and exits 0 when all passed."""

import subprocess

import pytest

from mgharness import build_path


def run_client(uri):
    return subprocess.run([build_path("bin", "msim_client"), uri], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.replset_only  # msim_client checks a replica set's hello
def test_libmongoc_client_replica_set_discovery(mongosim_factory):
    server = mongosim_factory()
    r = run_client(f"mongodb://{server.address}/?replicaSet=mongosim&serverSelectionTimeoutMS=5000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["ok", "handshake", "ok", "crud_every_type", "ok", "cursor_and_bulk",
                                "ok", "aggregate", "ok", "change_stream", "ok", "transaction"]


@pytest.mark.replset_only  # msim_client checks a replica set's hello
def test_libmongoc_client_direct_connection_with_auth(mongosim_factory):
    server = mongosim_factory("--auth", "bob:pw")
    r = run_client(f"mongodb://bob:pw@{server.address}/?directConnection=true&authSource=admin")
    assert r.returncode == 0, r.stdout + r.stderr
    bad = run_client(f"mongodb://bob:nope@{server.address}/?directConnection=true"
                     "&authSource=admin&serverSelectionTimeoutMS=2000")
    assert bad.returncode != 0
    assert "Authentication failed" in bad.stderr
