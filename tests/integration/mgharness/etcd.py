"""tests/integration/mgharness/etcd.py - a single-node etcd 3.4 on free loopback ports.

The node listens for clients on http://127.0.0.1:<client_port> and for
peers on 127.0.0.1:<peer_port>; its data directory lives in the instance
directory. It is ready once GET /health answers {"health": "true"}.

The helpers talk to etcd's v3 JSON gateway (the same interface the C code
uses, no gRPC): POST /v3/kv/put, /v3/kv/range, /v3/kv/deleterange with keys
and values base64-encoded, over urllib with proxies disabled.
"""

import base64
import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
import uuid

from .errors import HarnessError
from .ports import LOOPBACK
from .service import Service

ETCD_BINARY = os.environ.get("MG_ETCD_BINARY", "etcd")
HTTP_TIMEOUT = 5.0

# Never send loopback requests through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EtcdError(HarnessError):
    """EtcdError is an HTTP or gateway error answer from etcd."""


def b64(value):
    """b64 returns value (str or bytes) base64-encoded as str, as the gateway wants."""
    if isinstance(value, str):
        value = value.encode()
    return base64.b64encode(value).decode("ascii")


def unb64(text):
    """unb64 decodes a base64 field of a gateway answer to bytes."""
    return base64.b64decode(text or "")


class EtcdInstance(Service):
    """EtcdInstance is one single-node etcd cluster for a test.

    Attributes: host, client_port, peer_port, data_dir, dir, log_path, pid.
    Properties: endpoint (http://127.0.0.1:<client_port>), peer_url.
    Methods: start, stop, kill9, close, http_get, request, version, health,
    put, get, get_bytes, delete.
    """

    kind = "etcd"
    start_timeout = 30.0

    def __init__(self, root=None, *, name=None, extra_args=(), binary=None, port_picker=None):
        """__init__ prepares the instance directory; extra_args are appended to etcd's flags."""
        super().__init__(root, name=name, port_picker=port_picker)
        self.host = LOOPBACK
        self.client_port = None
        self.peer_port = None
        self.data_dir = os.path.join(self.dir, "data")
        self.binary = binary or ETCD_BINARY
        self.extra_args = list(extra_args)
        self.cluster_token = "mgtest-" + uuid.uuid4().hex[:12]
        self._started_once = False

    @property
    def endpoint(self):
        """endpoint is the client URL, e.g. http://127.0.0.1:23790."""
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self):
        """peer_url is the peer URL of the single member."""
        return f"http://{self.host}:{self.peer_port}"

    # ---- HTTP / v3 gateway --------------------------------------------------
    def http_get(self, path, timeout=HTTP_TIMEOUT):
        """http_get returns the decoded JSON answer of GET <endpoint><path>."""
        return self._http(urllib.request.Request(self.endpoint + path), timeout)

    def request(self, path, body, timeout=HTTP_TIMEOUT):
        """request POSTs body as JSON to <endpoint><path>; returns the decoded answer.

        Raises EtcdError on an HTTP error or a gateway error object.
        """
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
        answer = self._http(req, timeout)
        if isinstance(answer, dict) and "error" in answer:
            raise EtcdError(f"POST {path}: {answer}")
        return answer

    def _http(self, req, timeout):
        try:
            with _opener.open(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise EtcdError(f"{req.get_method()} {req.full_url}: HTTP {e.code}: "
                            f"{e.read()[:500]!r}") from e

    def version(self):
        """version returns GET /version, e.g. {'etcdserver': '3.4.23', 'etcdcluster': '3.4.0'}."""
        return self.http_get("/version")

    def health(self):
        """health returns GET /health, e.g. {'health': 'true'}."""
        return self.http_get("/health")

    def put(self, key, value, lease=None):
        """put stores value under key (str or bytes); returns the gateway answer."""
        body = {"key": b64(key), "value": b64(value)}
        if lease is not None:
            body["lease"] = str(lease)
        return self.request("/v3/kv/put", body)

    def get_bytes(self, key):
        """get_bytes returns the value of key as bytes, or None if it does not exist."""
        kvs = self.request("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
        return unb64(kvs[0].get("value")) if kvs else None

    def get(self, key):
        """get returns the value of key decoded as UTF-8, or None if it does not exist."""
        value = self.get_bytes(key)
        return None if value is None else value.decode()

    def delete(self, key):
        """delete removes key; returns the number of keys deleted."""
        answer = self.request("/v3/kv/deleterange", {"key": b64(key)})
        return int(answer.get("deleted", 0))

    # ---- Service hooks --------------------------------------------------------
    def _assign_ports(self):
        self.client_port = self._pick_port()
        self.peer_port = self._pick_port()

    def _write_config(self):
        # A failed first attempt may have written member data with old ports.
        if not self._started_once:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _argv(self):
        return [self.binary,
                "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.endpoint,
                "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", f"{self.name}={self.peer_url}",
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.cluster_token,
                "--logger", "zap", "--log-outputs", "stderr",
                *self.extra_args]

    def _ready(self):
        try:
            ok = self.health().get("health") == "true"
        except (OSError, http.client.HTTPException, EtcdError, ValueError):
            return False
        if ok:
            self._started_once = True
        return ok
