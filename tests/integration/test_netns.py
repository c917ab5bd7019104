"""tests/integration/test_netns.py - proof of the partition harness (mgharness/netns.py).

A cut really cuts (TCP connects time out, datagrams vanish, nothing is
refused), a one-way cut cuts one direction, a heal heals, the observer (the
test process in the root namespace) is never cut, a thread can act inside a
namespace, and nothing of a lab is left after close() - nor after a test
that fails, nor after a test process killed with SIGKILL (the next lab's
sweep removes it). Needs root; skipped with the reason otherwise.
"""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from mgharness import netns
from mgharness.netns import NetLab, NetnsError

OK, WHY = netns.netns_available()
pytestmark = pytest.mark.skipif(not OK, reason=WHY)

HERE = os.path.dirname(os.path.abspath(__file__))

# A TCP server that answers "hi" and a UDP receiver that prints what arrives.
SERVER = textwrap.dedent("""
    import socket, sys, threading
    addr = sys.argv[1]
    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((addr, 7000)); t.listen(16)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, 7001))
    def serve():
        while True:
            c, _ = t.accept(); c.sendall(b"hi"); c.close()
    threading.Thread(target=serve, daemon=True).start()
    print("ready", flush=True)
    while True:
        data, _ = u.recvfrom(100)
        print("udp", data.decode(), flush=True)
""")


class Server:
    """Server runs SERVER inside an endpoint's namespace and collects the datagrams it got."""

    def __init__(self, ep):
        self.proc = subprocess.Popen(ep.argv([sys.executable, "-c", SERVER, ep.addr]),
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def got(self, word, timeout=3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"udp {word}" in self.lines:
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)


def tcp(ep_from, addr, timeout=2.0):
    """tcp connects from ep_from's namespace (None: the root) to addr:7000; 'hi' or the error class."""
    result = []

    def go():
        try:
            with (ep_from.enter() if ep_from is not None else _nothing()):
                with socket.create_connection((addr, 7000), timeout=timeout) as c:
                    result.append(c.recv(10).decode())
        except OSError as e:
            result.append(type(e).__name__)

    t = threading.Thread(target=go)
    t.start()
    t.join(timeout + 5)
    return result[0]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def udp(ep_from, addr, word):
    """udp sends one datagram from ep_from's namespace to addr:7001."""
    def go():
        with ep_from.enter():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(word.encode(), (addr, 7001))

    t = threading.Thread(target=go)
    t.start()
    t.join(10)


def test_cut_is_silent_both_ways_and_heal_restores(netlab):
    a, b = netlab.add("a"), netlab.add("b")
    srv_a, srv_b = Server(a), Server(b)
    try:
        assert tcp(a, b.addr) == "hi"
        udp(a, b.addr, "before")
        assert srv_b.got("before")

        netlab.cut(a, b)
        assert netlab.cuts() == sorted([("a", b.addr), ("b", a.addr)])
        t0 = time.monotonic()
        # a partition: no refusal, no reset, the connect simply times out
        assert tcp(a, b.addr, timeout=1.5) == "TimeoutError"
        assert time.monotonic() - t0 >= 1.4
        assert tcp(b, a.addr, timeout=1.5) == "TimeoutError"
        udp(a, b.addr, "during")
        udp(b, a.addr, "during")
        assert not srv_b.got("during", timeout=1.5)
        assert not srv_a.got("during", timeout=0.5)

        netlab.heal()
        assert netlab.cuts() == []
        assert tcp(a, b.addr) == "hi"
        udp(a, b.addr, "after")
        assert srv_b.got("after")
    finally:
        srv_a.stop()
        srv_b.stop()


def test_reject_cut_refuses_at_once(netlab):
    a, b = netlab.add("a"), netlab.add("b")
    srv_b = Server(b)
    try:
        netlab.cut(a, b, reject=True)
        t0 = time.monotonic()
        assert tcp(a, b.addr, timeout=5) in ("OSError", "ConnectionRefusedError")
        assert time.monotonic() - t0 < 1.0  # refused, not timed out
        netlab.heal()
        assert netlab.cuts() == []
        assert tcp(a, b.addr) == "hi"
    finally:
        srv_b.stop()


def test_oneway_cut_drops_one_direction(netlab):
    a, b = netlab.add("a"), netlab.add("b")
    srv_a, srv_b = Server(a), Server(b)
    try:
        netlab.cut(a, b, oneway=True)
        udp(a, b.addr, "atob")
        udp(b, a.addr, "btoa")
        assert srv_a.got("btoa")
        assert not srv_b.got("atob", timeout=1.5)
        netlab.heal(a, b)
        udp(a, b.addr, "atob2")
        assert srv_b.got("atob2")
    finally:
        srv_a.stop()
        srv_b.stop()


def test_cut_is_per_pair_and_the_observer_is_never_cut(netlab):
    a, b, c = netlab.add("a"), netlab.add("b"), netlab.add("c")
    srv_b = Server(b)
    try:
        netlab.cut(a, b)
        assert tcp(a, b.addr, timeout=1.0) == "TimeoutError"
        assert tcp(c, b.addr) == "hi"
        assert tcp(None, b.addr) == "hi"  # the test process, in the root namespace
    finally:
        srv_b.stop()


def test_thread_enters_a_namespace_alone(netlab):
    a = netlab.add("a")
    root = os.readlink("/proc/thread-self/ns/net")
    seen = []

    def go():
        with a.enter():
            seen.append(os.readlink("/proc/thread-self/ns/net"))
        seen.append(os.readlink("/proc/thread-self/ns/net"))

    t = threading.Thread(target=go)
    t.start()
    t.join(10)
    assert seen[0] != root and seen[1] == root
    assert os.readlink("/proc/thread-self/ns/net") == root


def test_close_removes_namespaces_links_and_processes():
    lab = NetLab()
    a, b = lab.add("a"), lab.add("b")
    sleeper = subprocess.Popen(a.argv(["sleep", "600"]))
    lab.cut(a, b)
    names = lab.leftovers()
    assert f"mgt-{lab.id}-a" in names and lab.bridge in names and a.host_if in names
    lab.close()
    assert lab.leftovers() == []
    assert sleeper.wait(10) == -9  # what still ran inside was killed
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"mgt-{lab.id}-" not in listed
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert lab.bridge not in links and a.host_if not in links and b.host_if not in links
    lab.close()  # idempotent


def test_failing_test_leaves_nothing(tmp_path):
    """A test that fails after making a lab leaves no namespace or link behind."""
    (tmp_path / "test_fails.py").write_text(textwrap.dedent("""
        from mgharness.netns import NetLab
        import pytest

        @pytest.fixture
        def lab():
            lab = NetLab()
            yield lab
            lab.close()

        def test_fails(lab):
            lab.add("x")
            lab.add("y")
            print("LAB", lab.id, flush=True)
            assert False, "failing on purpose"
    """))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          str(tmp_path / "test_fails.py")], capture_output=True, text=True,
                         cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=HERE), timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    lab_id = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("LAB ")][0]
    assert_lab_gone(lab_id)


def test_killed_test_process_is_swept(tmp_path):
    """A test process killed with SIGKILL leaves its lab; the next lab's sweep removes it."""
    script = textwrap.dedent("""
        import os, signal, subprocess
        from mgharness.netns import NetLab
        lab = NetLab()
        a = lab.add("x")
        subprocess.Popen(a.argv(["sleep", "600"]), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        print("LAB", lab.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=HERE), timeout=120)
    assert out.returncode == -9
    lab_id = out.stdout.split()[1]
    assert f"mgt-{lab_id}-x" in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                               text=True).stdout
    assert lab_id in netns.sweep_stale()
    assert_lab_gone(lab_id)


def assert_lab_gone(lab_id):
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"mgt-{lab_id}-" not in listed
    assert f"mgb{lab_id}" not in links and f"mgv{lab_id}" not in links


def test_shape_needs_netem(netlab):
    a, b = netlab.add("a"), netlab.add("b")
    ok, why = netns.netem_available()
    if not ok:
        with pytest.raises(netns.NetemUnavailable):
            netlab.shape(a, delay_ms=200)
        pytest.skip(why)
    srv = Server(b)
    try:
        netlab.shape(a, delay_ms=200)
        t0 = time.monotonic()
        assert tcp(a, b.addr, timeout=5) == "hi"
        # connect + reply cross a's link several times, 200 ms each way
        assert time.monotonic() - t0 >= 0.4
        netlab.unshape(a)
        t0 = time.monotonic()
        assert tcp(a, b.addr) == "hi"
        assert time.monotonic() - t0 < 0.4
    finally:
        srv.stop()


def test_bad_endpoint_name_is_refused(netlab):
    with pytest.raises(ValueError, match="endpoint name"):
        netlab.add("Bad Name")
    netlab.add("ok")
    with pytest.raises(ValueError, match="exists already"):
        netlab.add("ok")


def test_netns_error_names_the_command(netlab):
    with pytest.raises(NetnsError, match="could not run \"ip"):
        netns._ip("link", "del", "mgb-no-such-link")
