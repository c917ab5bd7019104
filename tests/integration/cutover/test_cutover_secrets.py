"""Integration: `migrate cutover` keeps its secrets: none on any process's command
line (issue 17, point 4), none in the state tables (point 6), and the endpoint
goes to etcd over TLS with authentication, its password never a flag (point 7).

The verify step used to run `migrate validate --source URI --target URI` as
a child process, so both connection strings, passwords included, could be
read in /proc/<pid>/cmdline by any local user while the source was frozen
(issue 17, point 4). The cutover now runs the validate engine in-process.

The test gives the target a password (trust authentication ignores it), passes
the connection string through the environment, and uses a freeze hook to
start a watcher (one Python process, no fork per look) that records every
process whose command line holds the password, looking at all of /proc every
few milliseconds until the cutover ends. The watcher reads the password from
a file, so its own command line does not hold it.
"""

import base64
import json
import os
import ssl
import sys
import time
import urllib.request
import uuid

import pymongo

from mgharness import ManagedProcess, pick_free_port
from mgharness.mongosim import MongosimInstance

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ha"))
from test_etcd_client import make_tls_material  # noqa: E402 - after its folder is on the path

WATCHER = """
import os, sys, time
pattern = open(sys.argv[1], "rb").read().strip()
seen, done = sys.argv[2], sys.argv[3]
me = str(os.getpid())
while not os.path.exists(done):
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read()
            if pattern in argv:
                shown = argv.replace(pattern, b"<password>").replace(b"\\0", b" ")
                with open(seen, "ab") as out:
                    out.write(pid.encode() + b": " + shown[:300] + b"\\n")
        except OSError:
            pass
    time.sleep(0.002)
"""

from test_cutover import ENDPOINT, cutover_args, prepare, state  # noqa: E402


def test_no_secret_on_any_command_line(mongo, dbname, postgres, migrate, tmp_path):
    prepare(mongo, postgres, migrate, dbname, count=500)
    secret = "Pw" + uuid.uuid4().hex
    sep = "&" if "?" in postgres.uri else "?"
    target = f"{postgres.uri}{sep}password={secret}"
    pattern = tmp_path / "pattern"
    pattern.write_text(secret + "\n")
    seen = tmp_path / "seen"
    done = tmp_path / "done"
    script = tmp_path / "watcher.py"
    script.write_text(WATCHER)
    watcher = f"/usr/bin/python3 {script} {pattern} {seen} {done} >/dev/null 2>&1 & sleep 0.3"
    args = [a for a in cutover_args(mongo, postgres, "--freeze", f"hook:{watcher}",
                                    "--verify", "changed")]
    # the target comes from the environment, not from the command line
    i = args.index("--target")
    del args[i:i + 2]
    try:
        r = migrate(*args, env={"MIGRATE_TARGET": target})
    finally:
        done.write_text("")
    assert r.rc == 0, r
    assert state(postgres)[1] == "done"
    assert secret not in r.stdout + r.stderr
    assert not seen.exists(), f"processes showed the password: {seen.read_text()}"


# ---- issue 17, point 6: no secret in the state tables ------------------------------------------

def state_text(pg):
    """every row of every table of _migrate, as JSON text, one string."""
    tables = [r[0] for r in pg.query("SELECT tablename FROM pg_tables WHERE schemaname = "
                                     "'_migrate' ORDER BY 1")]
    assert "migration" in tables and "cutover" in tables, tables
    return "\n".join(r[0] for t in tables
                     for r in pg.query(f'SELECT row_to_json(t)::text FROM _migrate."{t}" t'))


def test_no_secret_in_the_state_tables(services, postgres, migrate, dbname, tmp_path):
    """the source's, the target's and the endpoint's passwords appear in no row of
    _migrate after init, sync, validate and a cutover; the state records where the
    endpoint's password came from, and the flip still gets it whole."""
    src_pw, tgt_pw, ep_pw = ("S" + uuid.uuid4().hex, "T" + uuid.uuid4().hex,
                             "E" + uuid.uuid4().hex)
    # the migration's user may freeze, read and list users, and nobody may bypass the freeze
    sim = services.add(MongosimInstance(services.root, name="secrets", args=[
        "--auth", f"admin:{src_pw}:backup,readAnyDatabase,userAdminAnyDatabase",
        "--auth", "app:apppw:readWriteAnyDatabase"]))
    source = f"mongodb://admin:{src_pw}@{sim.address}/?authSource=admin"
    client = pymongo.MongoClient(f"mongodb://app:apppw@{sim.address}/?authSource=admin",
                                 serverSelectionTimeoutMS=5000)
    client[dbname]["docs"].insert_many([{"_id": i, "v": "x"} for i in range(200)])
    client.close()
    sep = "&" if "?" in postgres.uri else "?"
    env = {"MIGRATE_SOURCE": source, "MIGRATE_TARGET": f"{postgres.uri}{sep}password={tgt_pw}",
           "MIGRATE_ENDPOINT": f"postgresql://app:{ep_pw}@127.0.0.1:5000/app"}
    for args in (["init", "--include", f"{dbname}.*"], ["sync"], ["validate", "--full"]):
        r = migrate(*args, env=env)
        assert r.rc == 0, r
    ep = tmp_path / "ep"
    r = migrate("cutover", "--max-lag", "1h", "--endpoint-file", str(ep), env=env)
    assert r.rc == 0, r
    assert ep.read_text() == env["MIGRATE_ENDPOINT"] + "\n"  # the flip gets it whole
    text = state_text(postgres)
    for name, pw in (("source", src_pw), ("target", tgt_pw), ("endpoint", ep_pw)):
        assert pw not in text, f"the {name}'s password is in _migrate"
        assert pw not in r.stdout + r.stderr
    row = postgres.query("SELECT endpoint, endpoint_secret FROM _migrate.cutover")[0]
    assert row[0] == "postgresql://app@127.0.0.1:5000/app", row  # the URI keeps its form
    assert "MIGRATE_ENDPOINT" in row[1], row
    src = postgres.query("SELECT source_uri FROM _migrate.migration")[0][0]
    assert src == f"mongodb://admin@{sim.address}/?authSource=admin", src


# ---- issue 17, point 7: etcd with TLS and authentication ---------------------------------------

def etcd_call(endpoint, tls_dir, path, body, token=None):
    """etcd_call POSTs to etcd's v3 JSON gateway over TLS (the test's CA)."""
    ctx = ssl.create_default_context(cafile=os.path.join(tls_dir, "ca.crt"))
    req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(),
                                 headers={"Authorization": token} if token else {})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return json.loads(resp.read())


def test_endpoint_flips_to_etcd_over_tls_with_authentication(mongo, dbname, postgres, migrate,
                                                             tmp_root, tmp_path):
    """--endpoint-etcd over https with the CA that signed the server's certificate and an
    etcd user whose password comes from a file; a password flag on the command line is
    refused. (etcd 3.4's JSON gateway refuses user authentication from a client that
    presents a certificate, so client certificates are tested apart, in
    ha/test_etcd_client.py, through the same client.)"""
    d = tmp_root.mkdtemp("etcd-tls")
    make_tls_material(d)
    client, peer = pick_free_port(), pick_free_port()
    endpoint = f"https://127.0.0.1:{client}"
    proc = ManagedProcess(
        ["etcd", "--name", "tls", "--data-dir", os.path.join(d, "data"),
         "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"tls=http://127.0.0.1:{peer}",
         "--cert-file", os.path.join(d, "server.crt"), "--key-file", os.path.join(d, "server.key")],
        log_path=os.path.join(d, "etcd.log"), cwd=d, tag=tmp_root.path,
        on_spawn=tmp_root.record_process)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                etcd_call(endpoint, d, "/v3/maintenance/status", {})
                break
            except OSError:
                assert time.monotonic() < deadline, open(os.path.join(d, "etcd.log")).read()[-2000:]
                time.sleep(0.2)
        etcd_pw = "Etcd" + uuid.uuid4().hex
        etcd_call(endpoint, d, "/v3/auth/user/add", {"name": "root", "password": etcd_pw})
        etcd_call(endpoint, d, "/v3/auth/user/grant", {"user": "root", "role": "root"})
        etcd_call(endpoint, d, "/v3/auth/enable", {})
        prepare(mongo, postgres, migrate, dbname, count=200)
        pwfile = tmp_path / "etcd-pw"
        pwfile.write_text(etcd_pw + "\n")
        tls = ["--endpoint-etcd", endpoint, "--endpoint-etcd-key", "/app/db",
               "--endpoint-etcd-ca", os.path.join(d, "ca.crt"), "--endpoint-etcd-user", "root"]
        r = migrate(*cutover_args(mongo, postgres, *tls, "--endpoint-etcd-password", etcd_pw))
        assert r.rc == 2, r
        assert "may not be given on the command line" in r.stderr and etcd_pw not in r.stderr
        r = migrate(*cutover_args(mongo, postgres, *tls, "--endpoint-etcd-password-file",
                                  str(pwfile)))
        assert r.rc == 0, r
        assert etcd_pw not in r.stdout + r.stderr
        token = etcd_call(endpoint, d, "/v3/auth/authenticate",
                          {"name": "root", "password": etcd_pw})["token"]
        got = etcd_call(endpoint, d, "/v3/kv/range",
                        {"key": base64.b64encode(b"/app/db").decode()}, token=token)
        assert base64.b64decode(got["kvs"][0]["value"]).decode() == ENDPOINT
        assert state(postgres)[1] == "done"
    finally:
        proc.stop()
