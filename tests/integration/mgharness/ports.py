"""tests/integration/mgharness/ports.py - free loopback port picking.

pick_free_port() binds a socket to 127.0.0.1:0, reads the port the kernel
chose and closes the socket. A process-wide set remembers every port handed
out so two services of one test run never get the same port. Between the
close and the service's own bind another process can still take the port;
services detect "address already in use" in their log and retry with new
ports (see Service.start).
"""

import socket
import threading

from .errors import HarnessError

LOOPBACK = "127.0.0.1"

_lock = threading.Lock()
_handed_out = set()


def pick_free_port(host=LOOPBACK):
    """pick_free_port returns a currently free TCP port on host, never the same twice."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        with _lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise HarnessError("no free loopback port found after 100 attempts")


def handed_out_ports():
    """handed_out_ports returns a copy of the set of ports given out so far."""
    with _lock:
        return set(_handed_out)


def port_is_listening(port, host=LOOPBACK, timeout=0.5):
    """port_is_listening returns True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
