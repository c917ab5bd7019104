"""tests/integration/ha/hatools.py - helpers for the pgdaemon suites.

Daemons run as ManagedProcess (own process group, PDEATHSIG, tagged with
MGHARNESS_ROOT so the harness sweep also finds the Postgres they start);
one-shot commands run with the same tag in their environment.
"""

import base64
import json
import os
import secrets
import signal
import subprocess
import urllib.error
import urllib.request

import psycopg2

from mgharness import ManagedProcess, build_path, pick_free_port
from mgharness.e2e import wait_until
from mgharness.procs import ROOT_TAG_VAR, ProcessIdentity

PGDAEMON = build_path("bin", "pgdaemon")
SUPERUSER_PASSWORD = "su-" + secrets.token_hex(8)
REPLICATION_PASSWORD = "repl-" + secrets.token_hex(8)
CLUSTER_SECRET = "udp-" + secrets.token_hex(16)


def tagged_env(root, extra=None):
    """tagged_env is the process environment plus MGHARNESS_ROOT=<root>."""
    env = dict(os.environ)
    env[ROOT_TAG_VAR] = root.path
    env.update(extra or {})
    return env


def run_pgdaemon(root, *args, timeout=120, env=None):
    """run_pgdaemon runs `pgdaemon ARGS` to completion and returns the CompletedProcess."""
    return subprocess.run([PGDAEMON, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=tagged_env(root, env),
                          stdin=subprocess.DEVNULL)


def shared_dir(root, prefix):
    """shared_dir makes a 0755 directory in the temp root (Postgres must traverse it)."""
    d = root.mkdtemp(prefix)
    os.chmod(d, 0o755)
    return d


def write_node_config(dirpath, name, etcd_endpoint, cluster, **overrides):
    """write_node_config writes <dirpath>/<name>.json (free ports) and returns (path, config)."""
    conf = {
        "name": name,
        "address": "127.0.0.1",
        "data_dir": os.path.join(dirpath, name, "data"),
        "pg_port": pick_free_port(),
        "http_port": pick_free_port(),
        "udp_port": pick_free_port(),
        "cluster": cluster,
        "etcd": {"endpoints": [etcd_endpoint]},
        "ttl": "10s",
        "loop_wait": "1s",
        "retry_timeout": "3s",
        "cluster_secret": CLUSTER_SECRET,
        "postgres": {
            "superuser_password": SUPERUSER_PASSWORD,
            "replication_password": REPLICATION_PASSWORD,
            "parameters": ["fsync=off", "dynamic_shared_memory_type=mmap"],
        },
    }
    for key, value in overrides.items():
        conf[key] = value
    os.makedirs(os.path.join(dirpath, name), exist_ok=True)
    os.chmod(os.path.join(dirpath, name), 0o755)
    path = os.path.join(dirpath, name + ".json")
    with open(path, "w") as f:
        json.dump(conf, f)
    os.chmod(path, 0o600)
    return path, conf


def start_daemon(root, config_path, log_path, netns=None):
    """start_daemon starts `pgdaemon run --config` as a ManagedProcess.

    netns: None, or an mgharness.netns.Endpoint to run the daemon (and so its
    Postgres and watchdog) in that network namespace.
    """
    argv = [PGDAEMON, "run", "--config", config_path]
    return ManagedProcess(netns.argv(argv) if netns is not None else argv, log_path=log_path,
                          cwd=os.path.dirname(config_path), tag=root.path,
                          on_spawn=root.record_process, stop_signal=signal.SIGTERM)


def http_get(port, path, timeout=3.0, host="127.0.0.1"):
    """http_get returns (status, body) of GET http://<host>:<port><path>; (None, err) if down."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


# wait_for(predicate, timeout, what, interval=0.25) polls predicate() until
# truthy and returns its value; fails the test after timeout.
wait_for = wait_until


def connect(port, password=SUPERUSER_PASSWORD, host="127.0.0.1", **kw):
    """connect opens an autocommit psycopg2 connection as postgres to <host>:<port>."""
    conn = psycopg2.connect(host=host, port=port, user="postgres", password=password,
                            dbname="postgres", connect_timeout=5, **kw)
    conn.autocommit = True
    return conn


def query(port, sql, params=None, password=SUPERUSER_PASSWORD, host="127.0.0.1"):
    """query runs sql on <host>:<port> and returns all rows."""
    conn = connect(port, password, host=host)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def etcd_prefix(etcd, prefix):
    """etcd_prefix returns {key: value} of every key under prefix (via the harness client)."""
    key = prefix.encode()
    end = key[:-1] + bytes([key[-1] + 1])
    answer = etcd.request("/v3/kv/range", {"key": base64.b64encode(key).decode(),
                                           "range_end": base64.b64encode(end).decode()})
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
            for kv in answer.get("kvs", [])}


def events(etcd, cluster):
    """events returns the decoded event records of a cluster, oldest first."""
    kvs = etcd_prefix(etcd, f"/pgdaemon/{cluster}/events/")
    return [json.loads(v) for _, v in sorted(kvs.items())]


def postmaster_pid(data_dir):
    """postmaster_pid returns the pid in data_dir/postmaster.pid, or None."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    """alive says whether pid runs (zombies count as gone)."""
    ident = ProcessIdentity.of(pid) if pid else None
    return ident is not None and ident.alive()


def etcd_get(endpoint, key, timeout=2.0):
    """etcd_get returns the value of key (str) from etcd's JSON gateway at endpoint, or None."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    req = urllib.request.Request(endpoint + "/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        kvs = json.loads(r.read()).get("kvs", [])
    return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None


def cluster_status_key(c, timeout=2.0):
    """cluster_status_key returns the decoded status key of a `cluster up` cluster, or {}."""
    raw = etcd_get(c.state["etcd_endpoint"], f"/pgdaemon/{c.state['cluster']}/status", timeout)
    return json.loads(raw) if raw else {}


def child_pids(ppid):
    """child_pids: the pids whose parent is ppid (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def walreceiver_pid(data_dir):
    """walreceiver_pid: the walreceiver process of the Postgres in data_dir, or None."""
    pm = postmaster_pid(data_dir)
    for pid in child_pids(pm) if pm else []:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"walreceiver" in f.read():
                    return pid
        except OSError:
            continue
    return None


def stop_process(pid, timeout=60):
    """stop_process sends SIGTERM to pid and waits until it is gone."""
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid), timeout, f"process {pid} to exit")


def set_node_options(config_path, **options):
    """set_node_options rewrites a node's JSON config with options set (the file keeps mode 0600)."""
    with open(config_path) as f:
        conf = json.load(f)
    conf.update(options)
    with open(config_path, "w") as f:
        json.dump(conf, f)
