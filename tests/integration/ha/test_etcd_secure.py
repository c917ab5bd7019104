"""tests/integration/ha/test_etcd_secure.py - pgdaemon on an etcd with TLS and auth on.

Issue 17, item 11: etcd as deployed must not be open to anyone who can
reach it. Here etcd serves HTTPS only with client certificates
(--client-cert-auth), has authentication enabled, and the daemon's etcd
user holds one role: read-write on its cluster's prefix
(/pgdaemon/<cluster>/) and nothing else — the setup docs/deploy-aws.md
describes.

test_node_runs_on_tls_and_auth_limited_to_its_prefix: a node configured
with etcd.ca_file/cert_file/key_file, etcd.username and
etcd.password_file bootstraps and serves /primary 200; its keys are in
etcd; `pgdaemon status` and `pgdaemon events` work through the same
settings; the daemon's user is refused outside its prefix, and a client
without a certificate or without credentials is refused; no log holds
the password.
"""

import base64
import json
import os
import ssl
import subprocess
import urllib.request

import hatools
from hatools import http_get, run_pgdaemon, start_daemon, wait_for, write_node_config
from mgharness import ManagedProcess, pick_free_port
from test_etcd_client import make_tls_material

CLUSTER = "sec"
PGD_PASSWORD = "pgd-Secret-4711"
ROOT_PASSWORD = "root-Secret-0815"


def b64(s):
    return base64.b64encode(s.encode()).decode()


class SecureEtcd:
    """SecureEtcd: one etcd member, HTTPS with client certificates, auth on."""

    def __init__(self, root):
        self.dir = root.mkdtemp("etcd-secure")
        make_tls_material(self.dir)
        # etcd 3.4's gateway refuses a client certificate with a CommonName when auth is
        # on (it would be taken as the user name): the daemon's certificate has none
        ssl_cmd = ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
                   "-out", "client.csr", "-subj", "/O=pgdaemon"]
        subprocess.run(ssl_cmd, cwd=self.dir, check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.crt",
                        "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.crt", "-days", "2",
                        "-extfile", "san.cnf"], cwd=self.dir, check=True, capture_output=True,
                       timeout=60)
        client, peer = pick_free_port(), pick_free_port()
        self.endpoint = f"https://127.0.0.1:{client}"
        self.proc = ManagedProcess(
            ["etcd", "--name", "sec", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"sec=http://127.0.0.1:{peer}",
             "--cert-file", self.path("server.crt"), "--key-file", self.path("server.key"),
             "--client-cert-auth", "--trusted-ca-file", self.path("ca.crt")],
            log_path=self.path("etcd.log"), cwd=self.dir, tag=root.path,
            on_spawn=root.record_process)
        self.token = None
        wait_for(self._up, 30, "the TLS etcd to answer")

    def path(self, name):
        return os.path.join(self.dir, name)

    def context(self, cert=True):
        ctx = ssl.create_default_context(cafile=self.path("ca.crt"))
        if cert:
            ctx.load_cert_chain(self.path("client.crt"), self.path("client.key"))
        return ctx

    def request(self, path, body, token=None, cert=True):
        """request POSTs body to the gateway; returns (HTTP status, JSON answer)."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5, context=self.context(cert)) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def _up(self):
        try:
            return self.request("/v3/maintenance/status", {})[0] == 200
        except OSError:
            return False

    def login(self, name, password):
        status, out = self.request("/v3/auth/authenticate", {"name": name, "password": password})
        assert status == 200, out
        return out["token"]

    def secure(self):
        """secure adds root and pgd (read-write on /pgdaemon/<cluster>/ only), then auth on."""
        prefix = f"/pgdaemon/{CLUSTER}/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        for path, body in (
                ("/v3/auth/user/add", {"name": "root", "password": ROOT_PASSWORD}),
                ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                ("/v3/auth/role/add", {"name": "pgdaemon-sec"}),
                ("/v3/auth/role/grant", {"name": "pgdaemon-sec", "perm": {
                    "permType": "READWRITE", "key": b64(prefix), "range_end": b64(end)}}),
                ("/v3/auth/user/add", {"name": "pgd", "password": PGD_PASSWORD}),
                ("/v3/auth/user/grant", {"user": "pgd", "role": "pgdaemon-sec"}),
                ("/v3/auth/enable", {})):
            status, out = self.request(path, body)
            assert status == 200, (path, out)

    def get(self, key, token, cert=True):
        """get returns (HTTP status, value or None, answer)."""
        status, out = self.request("/v3/kv/range", {"key": b64(key)}, token, cert)
        kvs = out.get("kvs") or []
        value = base64.b64decode(kvs[0]["value"]).decode() if kvs else None
        return status, value, out


def test_node_runs_on_tls_and_auth_limited_to_its_prefix(tmp_root):
    etcd = SecureEtcd(tmp_root)
    etcd.secure()
    root_token = etcd.login("root", ROOT_PASSWORD)
    assert etcd.request("/v3/kv/put", {"key": b64("/other/k"), "value": b64("x")},
                        root_token)[0] == 200
    d = hatools.shared_dir(tmp_root, "secure")
    pwfile = os.path.join(d, "etcd.password")
    with open(pwfile, "w") as f:
        f.write(PGD_PASSWORD + "\n")
    os.chmod(pwfile, 0o600)
    cfg, conf = write_node_config(
        d, "solo", etcd.endpoint, CLUSTER,
        etcd={"endpoints": [etcd.endpoint], "ca_file": etcd.path("ca.crt"),
              "cert_file": etcd.path("client.crt"), "key_file": etcd.path("client.key"),
              "username": "pgd", "password_file": pwfile})
    log = os.path.join(d, "solo.log")
    proc = start_daemon(tmp_root, cfg, log)
    try:
        wait_for(lambda: http_get(conf["http_port"], "/primary")[0] == 200, 90,
                 "the node to become primary on the secured etcd")
        assert etcd.get(f"/pgdaemon/{CLUSTER}/leader", root_token)[1] == "solo"
        out = run_pgdaemon(tmp_root, "status", "--json", "--config", cfg)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "solo" in out.stdout, out.stdout
        out = run_pgdaemon(tmp_root, "events", "--config", cfg)
        assert out.returncode == 0, out.stdout + out.stderr
        # the daemon's user reads and writes its prefix only
        pgd = etcd.login("pgd", PGD_PASSWORD)
        assert etcd.get(f"/pgdaemon/{CLUSTER}/leader", pgd)[1] == "solo"
        status, value, answer = etcd.get("/other/k", pgd)
        assert value is None and "permission denied" in json.dumps(answer), answer
        status, value, answer = etcd.get("/pgdaemon/main/leader", pgd)
        assert value is None and "permission denied" in json.dumps(answer), answer
        # no credentials: refused; no client certificate: the handshake fails
        status, value, answer = etcd.get(f"/pgdaemon/{CLUSTER}/leader", None)
        assert value is None and status != 200, answer
        try:
            etcd.get(f"/pgdaemon/{CLUSTER}/leader", root_token, cert=False)
            raise AssertionError("etcd answered a client without a certificate")
        except (ssl.SSLError, ConnectionError, urllib.error.URLError):
            pass
        assert http_get(conf["http_port"], "/primary")[0] == 200
    finally:
        status = proc.stop()
        etcd.proc.stop()
    assert status == 0
    text = open(log).read()
    assert PGD_PASSWORD not in text and hatools.SUPERUSER_PASSWORD not in text
