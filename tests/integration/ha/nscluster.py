"""tests/integration/ha/nscluster.py - a pgdaemon cluster with every part in its own network namespace.

NsCluster builds, on a NetLab (mgharness/netns.py):

    etcd      namespace "etcd": one etcd on <addr>:2379 (and, with
              etcd_addresses > 1, the same etcd on further addresses of that
              namespace, so nodes can list several endpoints)
    node1..N  one namespace each: pgdaemon, the Postgres it starts and its
              watchdog, on <addr>:5432 (Postgres), :8008 (HTTP), :8009 (UDP)
    clients   namespace "clients": HAProxy with pgdaemon's own haproxy.cfg
              (mg_ha_haproxy_cfg: writes on 127.0.0.1:5000, reads :5001);
              writers run their sockets there (Endpoint.enter)

The test process stays in the root namespace as the observer: it reaches
every part over the bridge and is never cut. cut_from_etcd / cut_from_peers
/ cut_from_clients cut one node (silently, both ways; reject=True: refused
at once) and heal() undoes every cut. Existing suites keep starting their clusters with `pgdaemon
cluster up` on loopback; this is only for the partition tests.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import hatools
from hatools import run_pgdaemon

from mgharness import ManagedProcess, build_path
from mgharness.e2e import wait_until
from mgharness.etcd import EtcdInstance

HAPROXY_CFG = build_path("tests", "bin", "mg_ha_haproxy_cfg")
WRITE_PORT, READ_PORT = 5000, 5001
PG_PORT, HTTP_PORT, UDP_PORT = 5432, 8008, 8009


class NsEtcd(EtcdInstance):
    """NsEtcd is a single-node etcd inside an Endpoint's namespace, on fixed ports."""

    def __init__(self, root, endpoint, extra_addrs=()):
        self.endpoint_ns = endpoint
        self.extra_addrs = list(extra_addrs)
        super().__init__(root, name="etcd")
        self.host = endpoint.addr

    def _assign_ports(self):
        self.client_port, self.peer_port = 2379, 2380

    def _argv(self):
        argv = super()._argv()
        if self.extra_addrs:
            urls = ",".join(f"http://{a}:{self.client_port}" for a in [self.host, *self.extra_addrs])
            argv[argv.index("--listen-client-urls") + 1] = urls
        return self.endpoint_ns.argv(argv)


class NsCluster:
    """NsCluster: etcd, nodes and HAProxy in network namespaces; see the module docstring.

    Attributes: lab, dir, etcd, etcd_ep, clients, nodes ({name: Endpoint}),
    configs ({name: config path}), daemons ({name: ManagedProcess}), haproxy.
    """

    def __init__(self, root, lab, nodes=3, ttl="5s", loop_wait="500ms", retry_timeout="1500ms",
                 synchronous_mode=True, etcd_addresses=1, node_overrides=None, **overrides):
        self.root = root
        self.lab = lab
        self.dir = hatools.shared_dir(root, "nscluster")
        self.cluster = "ns"
        self.daemons = {}
        self.haproxy = None
        self.etcd_ep = lab.add("etcd")
        self.etcd_extra = [f"{lab.network.network_address + 200 + k}" for k in range(etcd_addresses - 1)]
        for a in self.etcd_extra:
            subprocess.run(["ip", "-n", self.etcd_ep.ns, "addr", "add",
                            f"{a}/{lab.network.prefixlen}", "dev", "eth0"], check=True)
        self.clients = lab.add("clients")
        self.nodes = {f"node{i + 1}": lab.add(f"node{i + 1}") for i in range(nodes)}
        self.etcd = NsEtcd(root, self.etcd_ep, self.etcd_extra).start()
        subnet = str(lab.network)
        self.configs = {}
        for name, ep in self.nodes.items():
            conf = {
                "address": ep.addr, "pg_port": PG_PORT, "http_port": HTTP_PORT,
                "udp_port": UDP_PORT, "ttl": ttl, "loop_wait": loop_wait,
                "retry_timeout": retry_timeout, "synchronous_mode": synchronous_mode,
                "etcd": {"endpoints": [f"http://{a}:2379"
                                       for a in [self.etcd_ep.addr, *self.etcd_extra]]},
                "postgres": {
                    "superuser_password": hatools.SUPERUSER_PASSWORD,
                    "replication_password": hatools.REPLICATION_PASSWORD,
                    "replication_addresses": [subnet],
                    "client_addresses": [subnet],
                    "parameters": ["fsync=off", "dynamic_shared_memory_type=mmap"],
                },
            }
            conf.update(overrides)
            conf.update((node_overrides or {}).get(name, {}))
            self.configs[name], _ = hatools.write_node_config(self.dir, name, self.etcd.endpoint,
                                                              self.cluster, **conf)
        for name in self.nodes:
            self.start_daemon(name)
        self._start_haproxy()

    # ---- processes ---------------------------------------------------------------
    def start_daemon(self, name):
        """start_daemon starts (or starts again) node name's pgdaemon in its namespace."""
        old = self.daemons.pop(name, None)
        if old is not None:
            old.stop()
        log = os.path.join(self.dir, name, "pgdaemon.log")
        self.daemons[name] = hatools.start_daemon(self.root, self.configs[name], log,
                                                  netns=self.nodes[name])
        return self.daemons[name]

    def _start_haproxy(self):
        cfg = os.path.join(self.dir, "haproxy.cfg")
        servers = [f"{name}={ep.addr}:{PG_PORT}:{HTTP_PORT}" for name, ep in self.nodes.items()]
        text = subprocess.run([HAPROXY_CFG, "127.0.0.1", str(WRITE_PORT), str(READ_PORT),
                               os.path.join(self.dir, "haproxy.sock"), *servers],
                              capture_output=True, text=True, check=True).stdout
        with open(cfg, "w") as f:
            f.write(text)
        self.haproxy = ManagedProcess(self.clients.argv([shutil.which("haproxy"), "-db", "-f", cfg]),
                                      log_path=os.path.join(self.dir, "haproxy.log"),
                                      cwd=self.dir, tag=self.root.path,
                                      on_spawn=self.root.record_process)

    def data_dir(self, name):
        with open(self.configs[name]) as f:
            return json.load(f)["data_dir"]

    def close(self):
        """close stops HAProxy, the daemons (they stop their Postgres), leftovers and etcd.

        With MG_HA_KEEP_LOGS=DIR the logs are copied there first.
        """
        keep = os.environ.get("MG_HA_KEEP_LOGS")
        if keep:
            dest = os.path.join(keep, os.path.basename(self.dir))
            subprocess.run(["sh", "-c", f"mkdir -p {dest} && cd {self.dir} && "
                            f"cp --parents $(find . -name '*.log') {dest}/"], check=False)
        if self.haproxy is not None:
            self.haproxy.stop()
        for proc in self.daemons.values():
            proc.stop(timeout=30)
        for name in self.nodes:
            pid = hatools.postmaster_pid(self.data_dir(name))
            if pid and hatools.alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.etcd.close()

    # ---- what the observer sees ----------------------------------------------------
    def status(self):
        """status returns `pgdaemon status --json` (read from etcd by the observer)."""
        out = run_pgdaemon(self.root, "status", "--json", "--config",
                           self.configs[next(iter(self.nodes))], timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def observe(self):
        """observe returns {node: (address, http port)} for Jepsen's /primary observers."""
        return {name: (ep.addr, HTTP_PORT) for name, ep in self.nodes.items()}

    def dsn(self, name=None):
        """dsn: connect arguments of HAProxy's write port (from clients) or of node name."""
        host, port = ("127.0.0.1", WRITE_PORT) if name is None else (self.nodes[name].addr, PG_PORT)
        return dict(host=host, port=port, user="postgres", password=hatools.SUPERUSER_PASSWORD,
                    dbname="postgres")

    def connect(self, name):
        """connect opens a connection from the observer to node name's Postgres."""
        return hatools.connect(PG_PORT, host=self.nodes[name].addr)

    def healthy(self):
        """healthy returns the leader once it is primary and every other node a streaming replica."""
        v = self.status()
        nodes = {n["name"]: n for n in v["nodes"]}
        leader = v["leader"]
        if not leader or len(nodes) != len(self.nodes) or v["status"]["failover_state"] != "stable":
            return None
        prim = nodes.get(leader)
        if prim is None or prim["state"] != "primary" or not prim["pg_queries_ok"]:
            return None
        repl = {r["application_name"]: r["state"] for r in prim["replication"]}
        for name, n in nodes.items():
            if name != leader and (n["state"] != "replica" or not n["streaming"]
                                   or repl.get(name) != "streaming"):
                return None
        return leader

    def wait_healthy(self, timeout=180):
        """wait_healthy waits for healthy() and returns the leader."""
        return wait_until(self.healthy, timeout, "a healthy cluster in namespaces")

    def leader(self):
        return self.status()["leader"]

    # ---- partitions -----------------------------------------------------------------
    def cut_from_etcd(self, name, reject=False):
        """cut_from_etcd cuts node name from etcd (silently; reject=True: refused at once)."""
        self.lab.cut(self.nodes[name], self.etcd_ep, reject=reject)

    def cut_from_peers(self, name, reject=False):
        """cut_from_peers cuts node name from the other nodes (UDP and replication)."""
        self.lab.isolate(self.nodes[name], [ep for n, ep in self.nodes.items() if n != name],
                         reject=reject)

    def cut_from_clients(self, name, reject=False):
        """cut_from_clients cuts node name from HAProxy and the writers."""
        self.lab.cut(self.nodes[name], self.clients, reject=reject)

    def heal(self):
        self.lab.heal()

    def wait(self, seconds):
        """wait sleeps through a part of a scenario that must last (a partition held)."""
        time.sleep(seconds)

