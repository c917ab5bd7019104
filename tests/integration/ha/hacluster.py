"""tests/integration/ha/hacluster.py - a `pgdaemon cluster up` cluster for the safety suites.

up() is the body of a pytest fixture: it starts etcd, three nodes and
HAProxy in a fresh directory (with the given extra `cluster up` options and
environment), yields the test_failover.Cluster, and always runs
`cluster down` (and stops daemons the test restarted) afterwards.
"""

import os

import hatools
from hatools import run_pgdaemon
from test_failover import Cluster

# the options every safety suite uses: no fsync, no /dev/shm segments left behind
BASE = ("--pg-parameter", "fsync=off", "--pg-parameter", "dynamic_shared_memory_type=mmap")
# ttl 5 s, loop 500 ms, retry 1.5 s: failovers within seconds
FAST = ("--ttl", 5, "--loop-wait-ms", 500, "--retry-timeout-ms", 1500)


def up(tmp_root, name, *options, env=None):
    """up yields a 3-node cluster started with `cluster up` BASE + options."""
    c = Cluster(tmp_root, os.path.join(hatools.shared_dir(tmp_root, name), "c"))
    out = run_pgdaemon(tmp_root, "cluster", "up", "--nodes", 3, "--dir", c.dir, "--timeout", 90,
                       *BASE, *options, timeout=180, env=env)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        yield c
    finally:
        if os.path.exists(os.path.join(c.dir, "cluster.json")):
            run_pgdaemon(tmp_root, "cluster", "down", "--dir", c.dir, timeout=180)
        for proc in c.restarted.values():
            proc.stop()
