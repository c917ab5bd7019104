#!/usr/bin/python3
"""tests/bench/ha/bench_patroni.py - the same failover timings for Patroni (not a test).

Needs the Debian package patroni (installed by hand, see docs/benchmarks.md).
Starts etcd, 3 Patroni nodes (as the postgres OS user when run as root) and
HAProxy with the same check settings pgdaemon generates (GET /primary on
Patroni's REST port), then measures node loss (kill -9 of Patroni and its
postmaster), Postgres crash (kill -9 of the postmaster) and switchover
(`patronictl switchover --force`), RUNS times each, like bench_ha.py.
Usage: bench_patroni.py --ttl 10 --loop 2 --retry 4 [--runs 5]

"Healthy" (before every run) means what bench_ha.py means: a leader and two
replicas that the leader's pg_stat_replication shows streaming. Patroni
3.0.2's `patronictl list` says "running" for a replica that is up but not
streaming (e.g. while its replication slot does not exist yet on the
primary, which Patroni creates only in its next loop - up to loop_wait
later); at ttl 30 / loop 10 the first kill then came before the bench table
had reached any replica, the promoted replica had no table, and every
INSERT failed for the rest of the run ("relation bench does not exist"), so
no outage and no switchover gap was recorded. The table is now also waited
for on both replicas before the writer starts, and the writer's error
messages are printed with the results.
"""

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ha import Writer, summary  # noqa: E402

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import psycopg2  # noqa: E402

PW = "benchpw"
# the check settings pgdaemon generates (MG_HA_HAPROXY_CHECK in ha/include/mg/ha.h,
# with "timeout connect 200ms" and "option redispatch"): keep them equal for a fair run
HAPROXY_CHECK = ("inter 1s fastinter 100ms downinter 100ms fall 2 rise 1 observe layer4 "
                 "error-limit 1 on-error fastinter on-marked-down shutdown-sessions")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def as_pg():
    if os.getuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")

    def demote():
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return {"preexec_fn": demote}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ttl", type=int, default=10)
    ap.add_argument("--loop", type=int, default=2)
    ap.add_argument("--retry", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-patroni-")
    os.chmod(root, 0o755)
    if os.getuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    procs, patronis = [], {}
    res, loss, crash, gaps, writer = {}, [], [], [], None
    etcd_port, etcd_peer, write_port = free_port(), free_port(), free_port()
    nodes = {f"p{i}": {"pg": free_port(), "rest": free_port()} for i in (1, 2, 3)}
    try:
        procs.append(subprocess.Popen(
            ["etcd", "--name", "e", "--data-dir", os.path.join(root, "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
             "--initial-cluster", f"e=http://127.0.0.1:{etcd_peer}"],
            stdout=open(os.path.join(root, "etcd.log"), "w"), stderr=subprocess.STDOUT,
            start_new_session=True))
        time.sleep(2)
        for name, n in nodes.items():
            d = os.path.join(root, name)
            os.makedirs(d, mode=0o700)
            if os.getuid() == 0:
                shutil.chown(d, "postgres", "postgres")
            n["data"] = os.path.join(d, "data")
            n["cfg"] = os.path.join(root, name + ".yml")
            with open(n["cfg"], "w") as f:
                f.write(f"""scope: bench
namespace: /patroni/
name: {name}
restapi:
  listen: 127.0.0.1:{n['rest']}
  connect_address: 127.0.0.1:{n['rest']}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: {a.ttl}
    loop_wait: {a.loop}
    retry_timeout: {a.retry}
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: 'on'
        fsync: 'off'
  initdb:
  - encoding: UTF8
  - data-checksums
  pg_hba:
  - host replication replicator 127.0.0.1/32 scram-sha-256
  - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:{n['pg']}
  connect_address: 127.0.0.1:{n['pg']}
  data_dir: {n['data']}
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: {d}/pgpass
  authentication:
    superuser: {{username: postgres, password: {PW}}}
    replication: {{username: replicator, password: {PW}}}
    rewind: {{username: postgres, password: {PW}}}
  parameters:
    unix_socket_directories: '{d}'
""")
            os.chmod(n["cfg"], 0o644)

        def start(name):
            n = nodes[name]
            patronis[name] = subprocess.Popen(
                ["patroni", n["cfg"]], stdout=open(os.path.join(root, name + ".log"), "a"),
                stderr=subprocess.STDOUT, start_new_session=True, **as_pg())

        for name in nodes:
            start(name)
            time.sleep(3 if name == "p1" else 0)
        servers = "".join(f"    server {nm} 127.0.0.1:{n['pg']} check port {n['rest']}\n"
                          for nm, n in nodes.items())
        with open(os.path.join(root, "haproxy.cfg"), "w") as f:
            f.write(f"""global
    maxconn 1024
defaults
    mode tcp
    timeout connect 200ms
    timeout client 30m
    timeout server 30m
    timeout check 2s
    option redispatch
    default-server {HAPROXY_CHECK}
frontend fe_primary
    bind 127.0.0.1:{write_port}
    default_backend be_primary
backend be_primary
    option httpchk GET /primary
    http-check expect status 200
{servers}""")
        procs.append(subprocess.Popen(["haproxy", "-db", "-f", os.path.join(root, "haproxy.cfg")],
                                      stdout=open(os.path.join(root, "haproxy.log"), "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True))

        def cluster():
            try:
                out = subprocess.run(["patronictl", "-c", nodes["p1"]["cfg"], "list", "-f", "json"],
                                     capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                return []
            try:
                return json.loads(out.stdout)
            except ValueError:
                return []

        def streaming(leader):
            """streaming: {member: replay_lsn - lsn} of the replicas streaming from leader."""
            try:
                c2 = psycopg2.connect(host="127.0.0.1", port=nodes[leader]["pg"], user="postgres",
                                      password=PW, dbname="postgres", connect_timeout=2)
            except psycopg2.Error:
                return {}
            try:
                cur = c2.cursor()
                cur.execute("SELECT application_name, pg_wal_lsn_diff(replay_lsn, %s::pg_lsn) "
                            "FROM pg_stat_replication WHERE state = 'streaming'", (lsn[0],))
                return {r[0]: r[1] for r in cur.fetchall()}
            except psycopg2.Error:
                return {}
            finally:
                c2.close()

        def healthy():
            m = cluster()
            lead = [x["Member"] for x in m if x["Role"] == "Leader" and x["State"] == "running"]
            reps = [x for x in m if x["Role"] in ("Replica", "Sync Standby")
                    and x["State"] in ("streaming", "running")]
            if not (len(m) == 3 and len(lead) == 1 and len(reps) == 2):
                return None
            st = streaming(lead[0])  # "running" alone does not mean streaming in 3.0.2
            ok = all(st.get(r["Member"]) is not None and st[r["Member"]] >= 0 for r in reps)
            return lead[0] if ok else None

        def wait_healthy(timeout=240):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                h = healthy()
                if h:
                    return h
                time.sleep(0.5)
            raise RuntimeError(f"patroni cluster did not heal: {cluster()}")

        lsn = ["0/0"]  # replicas must have replayed this far (the bench table) to count as healthy
        wait_healthy()
        deadline = time.monotonic() + 60
        while True:  # HAProxy may not have checked the leader yet
            try:
                c = psycopg2.connect(host="127.0.0.1", port=write_port, user="postgres",
                                     password=PW, dbname="postgres", connect_timeout=2)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        c.autocommit = True
        cur = c.cursor()
        cur.execute("CREATE TABLE bench (n bigint, t timestamptz DEFAULT now())")
        cur.execute("SELECT pg_current_wal_lsn()::text")
        lsn[0] = cur.fetchone()[0]
        c.close()
        wait_healthy()  # now also: the table has reached both replicas
        writer = Writer(write_port, PW)
        writer.start()
        time.sleep(2)
        res["settings"] = {"system": "patroni 3.0.2", "ttl_s": a.ttl, "loop_wait_s": a.loop,
                           "retry_timeout_s": a.retry, "runs": a.runs,
                           "haproxy": ["timeout connect 200ms", "option redispatch",
                                       "default-server " + HAPROXY_CHECK]}
        for _ in range(a.runs):
            leader = wait_healthy()
            time.sleep(1)
            with open(os.path.join(nodes[leader]["data"], "postmaster.pid")) as f:
                pm = int(f.readline())
            t = time.monotonic()
            os.kill(patronis[leader].pid, signal.SIGKILL)
            os.kill(pm, signal.SIGKILL)
            deadline = t + 180
            while writer.outage(t) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            loss.append(writer.outage(t))
            patronis[leader].wait()
            start(leader)
        for _ in range(a.runs):
            leader = wait_healthy()
            time.sleep(1)
            with open(os.path.join(nodes[leader]["data"], "postmaster.pid")) as f:
                pm = int(f.readline())
            t = time.monotonic()
            os.kill(pm, signal.SIGKILL)
            deadline = t + 180
            while writer.outage(t) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            crash.append(writer.outage(t))
        for _ in range(a.runs):
            leader = wait_healthy()
            time.sleep(1)
            t0 = time.monotonic()
            out = subprocess.run(["patronictl", "-c", nodes["p1"]["cfg"], "switchover", "bench",
                                  "--leader", leader, "--force"], capture_output=True, text=True,
                                 timeout=120)
            # the gap ends with the first insert on the new leader: wait for the leader to
            # change and for 2 s of acknowledged inserts after that (not a fixed sleep)
            deadline, new = time.monotonic() + 120, None
            while time.monotonic() < deadline:
                lead = [x["Member"] for x in cluster() if x["Role"] == "Leader"]
                if lead and lead[0] != leader:
                    new = lead[0]
                    break
                time.sleep(0.5)
            t_new = time.monotonic()
            while time.monotonic() < deadline and not (writer.ok and writer.ok[-1] > t_new + 2):
                time.sleep(0.1)
            if new:
                gaps.append(writer.max_gap(t0 - 0.5, time.monotonic()))
            else:  # patronictl did not switch: no gap to measure, say so
                res.setdefault("switchover_not_done", []).append(
                    (out.stdout + out.stderr).strip().splitlines()[-1:])
        writer.stop.set()
    except Exception as e:  # noqa: BLE001 - report what was measured before it
        res["error"] = str(e)[:400]
        keep = os.environ.get("MG_BENCH_KEEP_LOGS")
        if keep:
            subprocess.run(["sh", "-c", f"mkdir -p {keep} && cp {root}/*.log {keep}/; "
                            f"for d in {root}/p*/data; do cp -r $d/log {keep}/$(basename $(dirname $d))-pglog "
                            "2>/dev/null; done"], check=False)
    finally:
        res["node_loss_s"] = summary(loss)
        res["pg_crash_s"] = summary(crash)
        res["switchover_max_gap_s"] = summary(gaps)
        res["unmeasured"] = {"node_loss": loss.count(None), "pg_crash": crash.count(None),
                             "switchover": gaps.count(None)}
        if writer:
            res["writer"] = {"inserts_ok": len(writer.ok), "inserts_failed": len(writer.failed),
                             "errors": dict(writer.errors.most_common(8))}
        print(json.dumps(res, indent=1))
        for p in list(patronis.values()):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in list(patronis.values()):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
