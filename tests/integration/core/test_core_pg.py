"""Integration: core's libpq boundary against a real PostgreSQL 15.

mg_pg_probe (pg_probe.c) connects with libpq, runs one statement and prints
the mg_error_t it got as JSON; its notices go through the logger as JSON
lines on stderr. These tests prove that the SQLSTATE survives translation,
that libpq's notice receiver routes into the logger with its SQLSTATE, and
that a password in a connection string never reaches any output.
"""

import json
import os
import subprocess

import pytest

from mgharness.ports import pick_free_port

PROBE = os.path.join(os.environ.get("MG_BUILD_DIR", "../../build"), "tests", "bin", "mg_pg_probe")


def run_probe(conninfo, sql):
    """run_probe returns (exit code, error dict, stderr JSON lines, raw output)."""
    proc = subprocess.run([PROBE, conninfo, sql], capture_output=True, text=True, timeout=60)
    error = json.loads(proc.stdout)
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    return proc.returncode, error, lines, proc.stdout + proc.stderr


@pytest.fixture
def table(postgres):
    postgres.query("CREATE TABLE IF NOT EXISTS probe_t (id int PRIMARY KEY)")
    postgres.query("TRUNCATE probe_t")
    postgres.query("INSERT INTO probe_t VALUES (1)")
    return postgres


def test_sqlstate_kept_for_a_failed_statement(postgres):
    rc, err, lines, _ = run_probe(postgres.dsn, "SELECT 1/0")
    assert rc == 4  # MG_EXIT_TARGET
    assert err["domain"] == "pg"
    assert err["sqlstate"] == "22012"
    assert err["message"] == "could not run statement: division by zero"
    logged = [l for l in lines if l["level"] == "error"]
    assert logged and logged[0]["sqlstate"] == "22012"


def test_unique_violation_keeps_detail(table):
    rc, err, _, _ = run_probe(table.dsn, "INSERT INTO probe_t VALUES (1)")
    assert rc == 4
    assert err["sqlstate"] == "23505"
    assert "duplicate key value violates unique constraint" in err["message"]
    assert "Key (id)=(1) already exists." in err["message"]


def test_success_is_no_error(postgres):
    rc, err, _, _ = run_probe(postgres.dsn, "SELECT 1")
    assert rc == 0
    assert err["domain"] == "none"


def test_notices_route_into_the_logger(postgres):
    sql = ("DO $$ BEGIN RAISE WARNING 'careful now' USING ERRCODE = '01007'; "
           "RAISE NOTICE 'just so you know'; END $$")
    rc, _, lines, _ = run_probe(postgres.dsn, sql)
    assert rc == 0
    libpq = [l for l in lines if l.get("module") == "libpq"]
    warning = [l for l in libpq if l["message"] == "careful now"]
    notice = [l for l in libpq if l["message"] == "just so you know"]
    assert warning and warning[0]["level"] == "warning" and warning[0]["sqlstate"] == "01007"
    assert notice and notice[0]["level"] == "notice" and notice[0]["sqlstate"] == "00000"


def test_password_never_printed_on_connection_failure():
    closed_port = pick_free_port()  # nothing listens there
    secret = "Sup3rSecretPw"
    for conninfo in (f"postgresql://app:{secret}@127.0.0.1:{closed_port}/db",
                     f"host=127.0.0.1 port={closed_port} user=app password={secret} dbname=db"):
        rc, err, lines, raw = run_probe(conninfo, "SELECT 1")
        assert rc == 4
        assert err["sqlstate"] == "08006"
        assert "could not connect to" in err["message"]
        assert "Connection refused" in err["message"] or "connection refused" in err["message"]
        assert secret not in raw
        assert "********" in err["message"]


def test_wrong_password_is_a_clean_error_without_the_password(request):
    """A real authentication failure (scram) names the user, never the password."""
    from mgharness.postgres import PostgresInstance

    pg = PostgresInstance(password="right-password")
    request.addfinalizer(pg.close)
    pg.start()
    wrong = "WrongPw12345"
    rc, err, _, raw = run_probe(
        f"postgresql://{pg.user}:{wrong}@127.0.0.1:{pg.port}/postgres", "SELECT 1")
    assert rc == 4
    assert "password authentication failed" in err["message"]
    assert wrong not in raw
