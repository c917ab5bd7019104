"""tests/integration/ha/test_etcd_client.py - core's etcd v3 client against a real etcd 3.4.

The C client is driven through tests/bin/mg_etcd_probe; results are cross-checked
with the harness's own gateway client (EtcdInstance.put/get/request), which was
written independently in Python.
"""

import http.server
import json
import os
import threading
import subprocess
import time

import pytest

from mgharness import build_path, pick_free_port

PROBE = build_path("tests", "bin", "mg_etcd_probe")


def probe(etcd_or_endpoint, *args, timeout=30, check=True, env=None):
    """probe runs mg_etcd_probe and returns its stdout lines."""
    endpoint = getattr(etcd_or_endpoint, "endpoint", etcd_or_endpoint)
    out = subprocess.run([PROBE, endpoint, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=None if env is None else {**os.environ, **env})
    if check and out.returncode != 0:
        raise AssertionError(f"probe {args} failed: {out.stdout} {out.stderr}")
    return out.stdout.splitlines()


def test_version_probe(etcd):
    assert probe(etcd, "version") == [etcd.version()["etcdserver"]]


def test_version_probe_unreachable():
    port = pick_free_port()
    lines = probe(f"http://127.0.0.1:{port}", "version", check=False)
    assert lines[0].startswith("error etcd 1 "), lines  # MG_ETCD_ERR_UNAVAILABLE
    assert f"127.0.0.1:{port}" in lines[0]


def test_put_get_delete_cross_checked(etcd):
    rev = int(probe(etcd, "put", "/t/a", "hello")[0])
    assert etcd.get("/t/a") == "hello"
    etcd.put("/t/b", "")  # an empty value is omitted by the gateway
    etcd.put("/t/c", "from python")
    lines = probe(etcd, "get", "/t/", "prefix")
    kvs = [json.loads(line) for line in lines[:-1]]
    assert [kv["key"] for kv in kvs] == ["/t/a", "/t/b", "/t/c"]
    assert kvs[0]["value"] == "hello" and kvs[0]["create_revision"] == rev
    assert kvs[0]["version"] == 1 and kvs[0]["lease"] == 0
    assert kvs[1]["value"] == ""
    assert kvs[2]["value"] == "from python"
    assert lines[-1].startswith("count 3 more 0")
    limited = probe(etcd, "get", "/t/", "prefix", 2)
    assert len(limited) == 3 and limited[-1].startswith("count 3 more 1")
    assert probe(etcd, "get", "/nothing")[-1].startswith("count 0 more 0")
    assert probe(etcd, "delete", "/t/a") == ["1"]
    assert etcd.get("/t/a") is None
    assert probe(etcd, "delete", "/t/a") == ["0"]  # "deleted" omitted when 0
    assert probe(etcd, "delete", "/t/", "prefix") == ["2"]
    assert etcd.get("/t/c") is None


def test_txn_compares(etcd):
    # create-only: the first wins, the second fails and has no "succeeded" field
    assert probe(etcd, "create", "/x/init", "one") == ["succeeded true"]
    assert probe(etcd, "create", "/x/init", "two") == ["succeeded false current one"]
    assert etcd.get("/x/init") == "one"
    # compare-and-swap on mod_revision
    mod = json.loads(probe(etcd, "get", "/x/init")[0])["mod_revision"]
    assert probe(etcd, "cas-mod", "/x/init", mod + 1, "stale") == ["succeeded false current one"]
    assert probe(etcd, "cas-mod", "/x/init", mod, "three") == ["succeeded true"]
    assert probe(etcd, "cas-mod", "/x/init", mod, "again")[0] == "succeeded false current three"
    # compare on value
    assert probe(etcd, "cas-value", "/x/init", "nope", "four") == [
        "succeeded false current three"]
    assert probe(etcd, "cas-value", "/x/init", "three", "four") == ["succeeded true"]
    assert etcd.get("/x/init") == "four"


def test_lease_grant_keepalive_expiry_revoke(etcd):
    lease, ttl = map(int, probe(etcd, "lease-grant", 2)[0].split())
    assert ttl == 2 and lease != 0
    probe(etcd, "put", "/l/held", "v", lease)
    assert json.loads(probe(etcd, "get", "/l/held")[0])["lease"] == lease
    assert 1 <= int(probe(etcd, "lease-keepalive", lease)[0]) <= 2
    # without keepalives the lease expires and takes its key along
    deadline = time.monotonic() + 15
    while etcd.get("/l/held") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert etcd.get("/l/held") is None
    lines = probe(etcd, "lease-keepalive", lease, check=False)
    assert lines[0].startswith("error etcd 6 "), lines  # MG_ETCD_ERR_LEASE_NOT_FOUND
    # revoke deletes at once
    lease2, _ = map(int, probe(etcd, "lease-grant", 30)[0].split())
    probe(etcd, "put", "/l/revoked", "v", lease2)
    assert probe(etcd, "lease-revoke", lease2) == ["ok"]
    assert etcd.get("/l/revoked") is None
    assert probe(etcd, "lease-revoke", lease2, check=False)[0].startswith("error etcd 6 ")


def start_watch(etcd, key, mode, start, timeout_ms, max_events):
    proc = subprocess.Popen([PROBE, etcd.endpoint, "watch", key, mode, str(start),
                             str(timeout_ms), str(max_events)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "watching"
    return proc


def test_watch_events(etcd):
    rev = int(probe(etcd, "put", "/w/a", "0")[0])
    proc = start_watch(etcd, "/w/", "prefix", rev + 1, 20000, 3)
    try:
        time.sleep(0.5)
        etcd.put("/w/a", "1")
        etcd.put("/w/b", "2")
        etcd.delete("/w/a")
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    lines = out.splitlines()
    assert lines[0].startswith("PUT /w/a 1 ")
    assert lines[1].startswith("PUT /w/b 2 ")
    assert lines[2].startswith("DELETE /w/a ")
    assert lines[-1] == "done 3"
    assert proc.returncode == 0


def test_watch_reconnects_after_compaction(etcd):
    first = int(probe(etcd, "put", "/c/k", "old1")[0])
    probe(etcd, "put", "/c/k", "old2")
    last = int(probe(etcd, "put", "/c/k", "old3")[0])
    etcd.request("/v3/kv/compaction", {"revision": str(last)})
    # watching from a compacted revision: told so, then resumes at the compaction point
    proc = start_watch(etcd, "/c/k", "single", first, 20000, 3)
    try:
        time.sleep(0.5)
        etcd.put("/c/k", "new1")
        etcd.put("/c/k", "new2")
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    lines = out.splitlines()
    assert lines[0] == f"COMPACTED {last}"
    puts = [line.split()[2] for line in lines if line.startswith("PUT ")]
    # revision `last` itself survives the compaction, so old3 is seen again
    assert puts == ["old3", "new1", "new2"]
    assert lines[-1] == "done 3"


def test_watch_reconnects_after_stream_breaks(etcd):
    rev = int(probe(etcd, "put", "/r/k", "before")[0])
    proc = start_watch(etcd, "/r/k", "single", rev + 1, 40000, 2)
    try:
        etcd.put("/r/k", "one")
        # the server goes away and comes back on the same ports: the watch resumes
        time.sleep(0.5)
        etcd.stop()
        etcd.start()
        etcd.put("/r/k", "two")
        out, _ = proc.communicate(timeout=45)
    finally:
        proc.kill()
    puts = [line.split()[2] for line in out.splitlines() if line.startswith("PUT ")]
    assert puts == ["one", "two"], out


def test_watch_times_out_quietly(etcd):
    t0 = time.monotonic()
    proc = start_watch(etcd, "/quiet", "single", 0, 1000, 1)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert out.splitlines()[-1] == "done 0"
    assert time.monotonic() - t0 < 15


def test_username_password_authentication(etcd):
    etcd.request("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    etcd.request("/v3/auth/user/grant", {"user": "root", "role": "root"})
    etcd.request("/v3/auth/enable", {})
    creds = {"ETCD_PROBE_USERNAME": "root", "ETCD_PROBE_PASSWORD": "rootpw"}
    # without credentials: refused, and said so
    lines = probe(etcd, "put", "/a/k", "v", check=False)
    assert lines[0].startswith("error etcd 8 "), lines  # MG_ETCD_ERR_AUTH
    # with them: token fetched once, then sent with every call
    assert int(probe(etcd, "put", "/a/k", "v", env=creds)[0]) > 0
    got = json.loads(probe(etcd, "get", "/a/k", env=creds)[0])
    assert got["value"] == "v"
    assert probe(etcd, "create", "/a/k", "w", env=creds) == ["succeeded false current v"]
    bad = probe(etcd, "get", "/a/k", check=False,
                env={"ETCD_PROBE_USERNAME": "root", "ETCD_PROBE_PASSWORD": "wrong"})
    assert bad[0].startswith("error etcd 8 ") and "wrong" not in bad[0]


class FakeMember:
    """FakeMember is a tiny HTTP server answering every POST with canned gateway answers."""

    def __init__(self, answers):
        self.answers = list(answers)  # (status, body) served in order; the last repeats
        self.calls = 0
        member = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, body = member.answers[min(member.calls, len(member.answers) - 1)]
                member.calls += 1
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def header(term):
    return {"cluster_id": "1", "member_id": "2", "revision": "9", "raft_term": str(term)}


def test_stale_member_skipped_by_raft_term():
    ok = json.dumps({"header": header(5), "count": "1",
                     "kvs": [{"key": "L2s=", "value": "dg==", "mod_revision": "9"}]})
    a = FakeMember([(200, ok), (503, "member is restarting")])
    b = FakeMember([(200, json.dumps({"header": header(3)}))])  # an older term: stale
    try:
        lines = probe(f"{a.endpoint},{b.endpoint}", "get-twice", "/k", check=False)
    finally:
        a.close()
        b.close()
    assert lines[0] == "count 1 raft_term 5"
    assert lines[1].startswith("error etcd 7 "), lines  # MG_ETCD_ERR_STALE_MEMBER
    assert "raft term 3" in lines[1] and b.calls >= 1


def test_nospace_alarm_reported():
    body = json.dumps({"error": "etcdserver: mvcc: database space exceeded",
                       "message": "etcdserver: mvcc: database space exceeded", "code": 8})
    m = FakeMember([(500, body)])
    try:
        lines = probe(m.endpoint, "put", "/k", "v", check=False)
    finally:
        m.close()
    assert lines[0].startswith("error etcd 4 "), lines  # MG_ETCD_ERR_NOSPACE


def make_tls_material(d):
    """make_tls_material writes a CA, a server cert for 127.0.0.1 and a client cert into d."""
    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=mgtest-ca")
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    for name in ("server", "client"):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.cnf")


def test_tls_with_client_certificate(tmp_root):
    from mgharness import ManagedProcess
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
         "--cert-file", os.path.join(d, "server.crt"), "--key-file", os.path.join(d, "server.key"),
         "--client-cert-auth", "--trusted-ca-file", os.path.join(d, "ca.crt")],
        log_path=os.path.join(d, "etcd.log"), cwd=d, tag=tmp_root.path,
        on_spawn=tmp_root.record_process)
    tls = {"ETCD_PROBE_CA_FILE": os.path.join(d, "ca.crt"),
           "ETCD_PROBE_CERT_FILE": os.path.join(d, "client.crt"),
           "ETCD_PROBE_KEY_FILE": os.path.join(d, "client.key")}
    try:
        deadline = time.monotonic() + 30
        while probe(endpoint, "version", check=False, env=tls)[0].startswith("error"):
            assert time.monotonic() < deadline, open(os.path.join(d, "etcd.log")).read()[-2000:]
            time.sleep(0.2)
        assert int(probe(endpoint, "put", "/tls/k", "secure", env=tls)[0]) > 0
        assert json.loads(probe(endpoint, "get", "/tls/k", env=tls)[0])["value"] == "secure"
        # without the client certificate the server refuses the handshake
        no_cert = {"ETCD_PROBE_CA_FILE": tls["ETCD_PROBE_CA_FILE"]}
        assert probe(endpoint, "get", "/tls/k", check=False, env=no_cert)[0].startswith(
            "error etcd 1 ")
        # and without the CA the server's certificate is not trusted
        assert probe(endpoint, "get", "/tls/k", check=False)[0].startswith("error etcd 1 ")
    finally:
        proc.stop()
