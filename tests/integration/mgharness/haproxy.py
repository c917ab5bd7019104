"""tests/integration/mgharness/haproxy.py - HAProxy in TCP mode in front of a list of backends.

The configuration is rendered from haproxy.cfg.tmpl (next to this file):
one frontend on 127.0.0.1:<free port> forwarding to one backend with the
given servers. Health checks, per server:

    check=None    no checks: every server is always used
    check="tcp"   a TCP connect to the server port
    check="http"  `option httpchk GET <http_check_path>` with
                  `http-check expect status 200`, sent to the server's
                  check_port (the pgdaemon health endpoint), so only the
                  node answering 200 on /primary receives traffic

With checks, start() returns only once every server has its first check
result (UP or DOWN), so a test's first connection already honours them.

HAProxy runs in the foreground (-db) as a single process, with an admin
stats socket in the instance directory; command(), show_stat(),
server_status() and wait_server_status() use it.
"""

import csv
import io
import os
import re
import socket
import string
import time
from dataclasses import dataclass

from .errors import HarnessError
from .ports import LOOPBACK, port_is_listening
from .service import Service

HAPROXY_BINARY = os.environ.get("MG_HAPROXY_BINARY", "haproxy")
TEMPLATE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "haproxy.cfg.tmpl")
CHECK_MODES = (None, "tcp", "http")
_TRANSITIONAL = re.compile(r"\d+/\d+")  # e.g. "UP 1/2": going down, not settled


@dataclass(frozen=True)
class Backend:
    """Backend is one server: host, port, optional check_port and name."""

    host: str
    port: int
    check_port: int = None
    name: str = None


def as_backends(items):
    """as_backends turns Backend, (host, port) or (host, port, check_port) items into Backends."""
    result = []
    for i, item in enumerate(items):
        b = item if isinstance(item, Backend) else Backend(*item)
        result.append(Backend(b.host, int(b.port), b.check_port, b.name or f"s{i}"))
    return result


class HAProxyInstance(Service):
    """HAProxyInstance is one HAProxy process for a test.

    Attributes: host, port (= frontend_port), frontend_port, backends,
    check, http_check_path, config_path, stats_socket, dir, log_path, pid.
    Methods: start, stop, kill9, close, command, show_stat, server_status,
    wait_server_status, checks_settled, render_config.
    """

    kind = "haproxy"
    start_timeout = 15.0

    def __init__(self, root=None, backends=(), *, check=None, http_check_path="/primary",
                 check_interval_ms=500, fall=2, rise=1, name=None, binary=None,
                 template_path=None, port_picker=None):
        """__init__ prepares the instance; backends as accepted by as_backends()."""
        if check not in CHECK_MODES:
            raise ValueError(f"check must be one of {CHECK_MODES}, not {check!r}")
        super().__init__(root, name=name, port_picker=port_picker)
        self.host = LOOPBACK
        self.frontend_port = None
        self.backends = as_backends(backends)
        self.check = check
        self.http_check_path = http_check_path
        self.check_interval_ms = int(check_interval_ms)
        self.fall = int(fall)
        self.rise = int(rise)
        self.binary = binary or HAPROXY_BINARY
        self.template_path = template_path or TEMPLATE_PATH
        self.config_path = os.path.join(self.dir, "haproxy.cfg")
        self.stats_socket = os.path.join(self.dir, "haproxy.sock")

    @property
    def port(self):
        """port is the frontend port clients connect to."""
        return self.frontend_port

    # ---- configuration ----------------------------------------------------
    def _server_line(self, b):
        line = f"    server {b.name} {b.host}:{b.port}"
        if self.check is not None:
            line += " check"
            if b.check_port is not None:
                line += f" port {b.check_port}"
        return line

    def render_config(self):
        """render_config returns the haproxy.cfg text for the current ports and backends."""
        options = []
        if self.check == "http":
            options = [f"    option httpchk GET {self.http_check_path}",
                       "    http-check expect status 200"]
        with open(self.template_path) as f:
            template = string.Template(f.read())
        return template.substitute(
            stats_socket=self.stats_socket, frontend_port=self.frontend_port,
            check_interval=self.check_interval_ms, fall=self.fall, rise=self.rise,
            backend_options="\n".join(options),
            servers="\n".join(self._server_line(b) for b in self.backends))

    # ---- stats socket -------------------------------------------------------
    def command(self, cmd, timeout=5.0):
        """command sends one command to the admin stats socket; returns the answer text."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.stats_socket)
            sock.sendall(cmd.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode("utf-8", "replace")

    def show_stat(self):
        """show_stat returns `show stat` as a list of dicts (keys: pxname, svname, status, ...)."""
        text = self.command("show stat").lstrip("# ")
        return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]

    def server_status(self, server, backend="be_main"):
        """server_status returns the status column of a server (e.g. 'UP', 'DOWN', 'no check')."""
        for row in self.show_stat():
            if row["pxname"] == backend and row["svname"] == server:
                return row["status"]
        raise HarnessError(f"no server {server} in backend {backend}")

    def checks_settled(self, backend="be_main"):
        """checks_settled returns True when every server has a first check result and is settled.

        HAProxy starts checked servers as "UP 1/2" with check status INI,
        so until then traffic may reach a server whose check will fail.
        """
        rows = [r for r in self.show_stat() if r["pxname"] == backend
                and r["svname"] not in ("FRONTEND", "BACKEND")]
        return all(r["check_status"] not in ("", "INI")
                   and not _TRANSITIONAL.search(r["status"]) for r in rows)

    def wait_server_status(self, server, status, timeout=10.0, backend="be_main"):
        """wait_server_status waits until server_status starts with status; raises on timeout."""
        deadline = time.monotonic() + timeout
        current = None
        while time.monotonic() < deadline:
            current = self.server_status(server, backend)
            if current.startswith(status):
                return current
            time.sleep(0.1)
        raise HarnessError(f"{self.name}: server {server} is {current!r}, "
                           f"not {status!r} after {timeout}s\n{self.log_tail()}")

    # ---- Service hooks --------------------------------------------------------
    def _assign_ports(self):
        self.frontend_port = self._pick_port()

    def _write_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.render_config())

    def _argv(self):
        return [self.binary, "-db", "-f", self.config_path]

    def _ready(self):
        try:
            info = self.command("show info", timeout=1.0)
        except OSError:
            return False
        if "Pid:" not in info or not port_is_listening(self.frontend_port):
            return False
        return self.check is None or self.checks_settled()
