"""tests/integration/mgharness/netns.py - network namespaces a test makes for itself.

A NetLab is one Linux bridge in the root namespace plus one network
namespace per endpoint (an etcd, a pgdaemon node with its Postgres, the
clients), each joined to the bridge by a veth pair and given an address in a
private /24 that the lab picks unused (10.X.Y.0/24). The root namespace
keeps the bridge's address (.1): the test process itself observes every
endpoint from there and is never cut.

    lab = NetLab()                      # needs root and `ip netns`
    etcd = lab.add("etcd")              # Endpoint: ns, addr, argv(), enter()
    n1 = lab.add("node1")
    subprocess.run(n1.argv(["postgres", ...]))   # runs inside node1's namespace
    lab.cut(n1, etcd)                   # silent drop both ways, until heal
    lab.heal()                          # every cut undone
    lab.shape(n1, delay_ms=300)         # tc netem on both ends of n1's link
    lab.close()                         # namespaces, veths and bridge gone

Cuts are per pair and silent (no error, no reset: packets vanish, TCP
times out, datagrams are lost), like a partition: each side's neighbour
entry for the other is pinned to a MAC address nobody has, so the bridge
floods the frames and no interface accepts them. `oneway=True` cuts one
direction only; `reject=True` refuses instead (an unreachable route: the
sender gets "no route to host" at once, like a firewall that rejects).
No netfilter is needed (the test machines have none).

Slow and lossy links use `tc netem`, which this kernel may lack:
`netem_available()` says whether it works, and `shape()` raises
NetemUnavailable with the reason instead of silently doing nothing.

Cleanup: `close()` kills what still runs in the lab's namespaces (the
owner should have stopped its services first), then removes namespaces,
veths and bridge, and says what it could not remove. It runs at interpreter
exit too, and `sweep_stale()` (run by every new NetLab) removes the labs of
test processes that died: the bridge's alias records its owner's pid and
start time.
"""

import atexit
import contextlib
import ctypes
import ipaddress
import os
import random
import re
import signal
import subprocess
import threading

from .errors import HarnessError
from .procs import ProcessIdentity, wait_gone

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
BRIDGE_PREFIX = "mgb"  # mgb<lab>: the lab's bridge (interface names have 15 bytes at most)
VETH_PREFIX = "mgv"  # mgv<lab><k>: host end of endpoint k's veth pair
NS_PREFIX = "mgt"  # mgt-<lab>-<name>: the namespaces
OWNER_TAG = "mgharness-netlab"
DEAD_MAC = "02:00:5e:00:de:ad"  # locally administered, owned by no interface
IP_TIMEOUT = 30

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(HarnessError):
    """NetnsError: a namespace, link or route command failed."""


class NetemUnavailable(NetnsError):
    """NetemUnavailable: the kernel has no sch_netem, so links cannot be slowed here."""


def _ip(*args, check=True):
    """_ip runs `ip ARGS`; returns stdout; raises NetnsError naming the command on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise NetnsError(f"could not run \"ip {' '.join(args)}\": {proc.stderr.strip()}")
    return proc.stdout


def _tc(*args, ns=None, check=True):
    """_tc runs `tc ARGS` (in namespace ns); returns the CompletedProcess."""
    argv = ["tc", *args] if ns is None else ["ip", "netns", "exec", ns, "tc", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise NetnsError(f"could not run \"{' '.join(argv)}\": {proc.stderr.strip()}")
    return proc


def netns_available():
    """netns_available returns (True, "") when this process can make namespaces, else (False, why)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    try:
        _ip("netns", "list")
    except (OSError, subprocess.SubprocessError, NetnsError) as e:
        return False, f"`ip netns` does not work: {e}"
    return True, ""


_netem = None


def netem_available():
    """netem_available returns (ok, why): whether `tc qdisc ... netem` works on a veth here."""
    global _netem
    if _netem is None:
        name = f"{VETH_PREFIX}probe{os.getpid() % 10000}"
        try:
            _ip("link", "add", name, "type", "veth", "peer", "name", name + "p")
            proc = _tc("qdisc", "add", "dev", name, "root", "netem", "delay", "1ms", check=False)
            _netem = (proc.returncode == 0, proc.stderr.strip())
        except (OSError, subprocess.SubprocessError, NetnsError) as e:
            _netem = (False, str(e))
        finally:
            _ip("link", "del", name, check=False)
    ok, why = _netem
    return ok, ("" if ok else f"tc netem does not work on this kernel: {why}")


def _owner_text():
    me = ProcessIdentity.of(os.getpid())
    return f"{OWNER_TAG} {me.pid} {me.starttime}"


def _bridges():
    """_bridges returns {lab id: alias} of every lab bridge in the root namespace."""
    found = {}
    for line in _ip("-o", "link", "show", "type", "bridge").splitlines():
        m = re.match(r"\d+: (" + BRIDGE_PREFIX + r"[0-9a-f]+)[:@]", line)
        if m:
            try:
                with open(f"/sys/class/net/{m.group(1)}/ifalias") as f:
                    alias = f.read().strip()
            except OSError:
                alias = ""
            found[m.group(1)[len(BRIDGE_PREFIX):]] = alias
    return found


def _namespaces():
    """_namespaces returns the names of every namespace in /run/netns."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def _ns_pids(ns):
    """_ns_pids returns the pids of the processes in namespace ns."""
    out = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def _kill_in(ns):
    """_kill_in SIGKILLs every process still inside namespace ns and waits for them."""
    victims = [i for i in (ProcessIdentity.of(p) for p in _ns_pids(ns)) if i is not None]
    for ident in victims:
        ident.kill(signal.SIGKILL)
    return wait_gone(victims, 10.0)


def _remove_lab(lab):
    """_remove_lab deletes the namespaces, veths and bridge of lab id lab; returns leftovers."""
    left = []
    for ns in _namespaces():
        if ns.startswith(f"{NS_PREFIX}-{lab}-"):
            if _kill_in(ns):
                left.append(f"processes in {ns}")
            _ip("netns", "del", ns, check=False)
    for line in _ip("-o", "link", "show").splitlines():
        m = re.match(r"\d+: (" + VETH_PREFIX + lab + r"\d+)[:@]", line)
        if m:
            _ip("link", "del", m.group(1), check=False)
    _ip("link", "del", BRIDGE_PREFIX + lab, check=False)
    left += [ns for ns in _namespaces() if ns.startswith(f"{NS_PREFIX}-{lab}-")]
    left += [name for name in _link_names() if name == BRIDGE_PREFIX + lab
             or re.fullmatch(VETH_PREFIX + lab + r"\d+", name)]
    return left


def _link_names():
    names = []
    for line in _ip("-o", "link", "show").splitlines():
        m = re.match(r"\d+: ([^:@]+)[:@]", line)
        if m:
            names.append(m.group(1))
    return names


def sweep_stale():
    """sweep_stale removes the labs whose owner process is gone; returns their ids."""
    removed = []
    labs = _bridges()
    for lab, alias in labs.items():
        parts = alias.split()
        if len(parts) == 3 and parts[0] == OWNER_TAG:
            owner = ProcessIdentity(int(parts[1]), int(parts[2]))
            if owner.alive():
                continue
        elif alias:
            continue  # not ours
        _remove_lab(lab)
        removed.append(lab)
    # namespaces of a lab whose bridge is already gone (a crash half-way through close)
    for ns in _namespaces():
        m = re.fullmatch(NS_PREFIX + r"-([0-9a-f]+)-.+", ns)
        if m and m.group(1) not in labs and m.group(1) not in removed:
            _remove_lab(m.group(1))
            removed.append(m.group(1))
    return removed


def _used_networks():
    """_used_networks returns the IPv4 networks of every address and route of the root namespace."""
    nets = []
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            nets.append(ipaddress.ip_interface(m.group(1)).network)
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("broadcast", "local", "unreachable", "blackhole", "prohibit"):
            first = line.split()[1]
        if first == "default":
            continue
        try:
            nets.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            pass
    return nets


@contextlib.contextmanager
def enter_netns(ns):
    """enter_netns moves the calling thread into namespace ns for the with block, then back.

    Sockets made inside the block live in ns (setns changes one thread only).
    """
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"could not enter network namespace \"{ns}\": {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NetnsError(f"could not leave network namespace \"{ns}\": {os.strerror(err)}")
    finally:
        os.close(fd)
        os.close(back)


class Endpoint:
    """Endpoint is one namespace on the lab's bridge.

    Attributes: lab, name, ns (namespace name), addr (its IPv4 address),
    host_if (the veth end on the bridge), mac (of its eth0).
    """

    def __init__(self, lab, name, ns, addr, host_if, mac):
        self.lab = lab
        self.name = name
        self.ns = ns
        self.addr = addr
        self.host_if = host_if
        self.mac = mac

    def argv(self, argv):
        """argv returns argv prefixed so that it runs inside this namespace."""
        return ["ip", "netns", "exec", self.ns, *map(str, argv)]

    def run(self, argv, **kwargs):
        """run runs argv inside the namespace (subprocess.run keyword arguments)."""
        return subprocess.run(self.argv(argv), **kwargs)

    def enter(self):
        """enter is enter_netns(self.ns): the calling thread's sockets live here."""
        return enter_netns(self.ns)

    def __repr__(self):
        return f"Endpoint({self.name} {self.addr} in {self.ns})"


class NetLab:
    """NetLab is a bridge with namespaces made by one test; see the module docstring.

    Attributes: id, network (ipaddress.IPv4Network), observer_addr (the root
    namespace's address on the bridge), bridge, endpoints (name -> Endpoint),
    closed.
    """

    def __init__(self):
        """__init__ sweeps stale labs, picks an unused /24 and makes the bridge."""
        ok, why = netns_available()
        if not ok:
            raise NetnsError(why)
        sweep_stale()
        self._lock = threading.Lock()
        self.endpoints = {}
        self.closed = False
        self._cuts = set()  # (from ns, to addr): silent
        self._rejects = set()  # (from ns, to addr): refused
        self._shaped = set()
        existing = set(_bridges())
        used = _used_networks()
        rng = random.SystemRandom()
        for _ in range(200):
            self.id = f"{rng.randrange(16 ** 4):04x}"
            net = ipaddress.ip_network(f"10.{rng.randrange(100, 250)}.{rng.randrange(1, 255)}.0/24")
            if self.id not in existing and not any(net.overlaps(u) for u in used):
                self.network = net
                break
        else:
            raise NetnsError("could not find an unused private /24 for the lab")
        self._hosts = list(self.network.hosts())
        self.observer_addr = str(self._hosts[0])
        self.bridge = BRIDGE_PREFIX + self.id
        atexit.register(self.close)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "alias", _owner_text())
        _ip("addr", "add", f"{self.observer_addr}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name):
        """add makes namespace mgt-<lab>-<name> with an address on the bridge; returns its Endpoint."""
        if not re.fullmatch(r"[a-z0-9_]{1,24}", name):
            raise ValueError(f"endpoint name \"{name}\" must be 1-24 of [a-z0-9_]")
        with self._lock:
            if name in self.endpoints:
                raise ValueError(f"endpoint \"{name}\" exists already")
            k = len(self.endpoints)
            if k + 1 >= len(self._hosts):
                raise NetnsError("the lab's /24 is full")
            ns = f"{NS_PREFIX}-{self.id}-{name}"
            addr = str(self._hosts[k + 1])
            host_if = f"{VETH_PREFIX}{self.id}{k}"
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", host_if, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{addr}/{self.network.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        m = re.search(r"link/ether (\S+)", _ip("-n", ns, "link", "show", "eth0"))
        ep = Endpoint(self, name, ns, addr, host_if, m.group(1) if m else "")
        with self._lock:
            self.endpoints[name] = ep
        return ep

    # ---- partitions ---------------------------------------------------------
    def _pin(self, src, dst_addr):
        _ip("-n", src.ns, "neigh", "replace", dst_addr, "lladdr", DEAD_MAC, "dev", "eth0",
            "nud", "permanent")
        with self._lock:
            self._cuts.add((src.ns, dst_addr))

    def _unpin(self, ns, dst_addr):
        _ip("-n", ns, "neigh", "del", dst_addr, "dev", "eth0", check=False)
        with self._lock:
            self._cuts.discard((ns, dst_addr))

    def _reject(self, src, dst_addr):
        _ip("-n", src.ns, "route", "replace", "unreachable", f"{dst_addr}/32")
        with self._lock:
            self._rejects.add((src.ns, dst_addr))

    def _unreject(self, ns, dst_addr):
        _ip("-n", ns, "route", "del", "unreachable", f"{dst_addr}/32", check=False)
        with self._lock:
            self._rejects.discard((ns, dst_addr))

    def cut(self, a, b, oneway=False, reject=False):
        """cut drops every packet between endpoints a and b (only a -> b when oneway).

        reject=True makes it a refusal instead of a silence: sending fails at
        once with "no route to host" (an unreachable route), like a host whose
        service is down or a firewall that rejects.
        """
        block = self._reject if reject else self._pin
        block(a, b.addr)
        if not oneway:
            block(b, a.addr)

    def isolate(self, a, others, reject=False):
        """isolate cuts a from every endpoint of others (both ways)."""
        for b in others:
            if b is not a:
                self.cut(a, b, reject=reject)

    def heal(self, a=None, b=None):
        """heal undoes the cuts between a and b (both ways), or every cut when a is None."""
        with self._lock:
            cuts = sorted(self._cuts)
            rejects = sorted(self._rejects)
        match = lambda ns, addr: (a is None or (ns == a.ns and addr == b.addr)  # noqa: E731
                                  or (ns == b.ns and addr == a.addr))
        for ns, addr in cuts:
            if match(ns, addr):
                self._unpin(ns, addr)
        for ns, addr in rejects:
            if match(ns, addr):
                self._unreject(ns, addr)

    def cuts(self):
        """cuts returns the (from endpoint name, to address) pairs currently cut."""
        names = {ep.ns: ep.name for ep in self.endpoints.values()}
        with self._lock:
            return sorted((names.get(ns, ns), addr) for ns, addr in self._cuts | self._rejects)

    # ---- slow and lossy links ------------------------------------------------
    def shape(self, ep, delay_ms=0, jitter_ms=0, loss_pct=0.0):
        """shape puts tc netem on both ends of ep's link: every packet to and from ep.

        Raises NetemUnavailable when the kernel has no netem.
        """
        ok, why = netem_available()
        if not ok:
            raise NetemUnavailable(why)
        spec = ["netem", "delay", f"{int(delay_ms)}ms"]
        if jitter_ms:
            spec.append(f"{int(jitter_ms)}ms")
        if loss_pct:
            spec += ["loss", f"{float(loss_pct)}%"]
        _tc("qdisc", "replace", "dev", ep.host_if, "root", *spec)
        _tc("qdisc", "replace", "dev", "eth0", "root", *spec, ns=ep.ns)
        with self._lock:
            self._shaped.add(ep.name)

    def unshape(self, ep):
        """unshape removes what shape() put on ep's link."""
        _tc("qdisc", "del", "dev", ep.host_if, "root", check=False)
        _tc("qdisc", "del", "dev", "eth0", "root", ns=ep.ns, check=False)
        with self._lock:
            self._shaped.discard(ep.name)

    # ---- teardown -------------------------------------------------------------
    def leftovers(self):
        """leftovers returns the lab's namespaces and links that still exist."""
        names = [ns for ns in _namespaces() if ns.startswith(f"{NS_PREFIX}-{self.id}-")]
        names += [n for n in _link_names() if n == self.bridge
                  or re.fullmatch(VETH_PREFIX + self.id + r"\d+", n)]
        return names

    def close(self):
        """close removes everything the lab made (idempotent); raises NetnsError on leftovers."""
        if self.closed:
            return
        self.closed = True
        left = _remove_lab(self.id)
        if left:
            raise NetnsError(f"lab {self.id}: could not remove {left}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
