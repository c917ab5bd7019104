#!/usr/bin/python3
"""tests/bench/bench_cdc.py - benchmark of the change-stream apply.

Not a test: it prints figures measured side by side in one run.

  (1) sustained apply rate: a backlog of ~1 KB-document changes (40% insert,
      40% update, 20% delete) is written to mongosim while nothing applies,
      then `migrate sync` catches up; events/s = events applied / time;
  (2) the PostgreSQL ceiling, in the same run: pgbench, one client (the
      applier uses one connection), each transaction a 100-row multi-row
      upsert of ~1 KB jsonb documents into an identical table; rows/s;
  (3) end-to-end lag under a steady offered load (default 5k events/s):
      `migrate sync --follow --metrics-port`, /progress sampled every 100 ms.

Goals (issue 6): (1) >= 0.7 x (2); lag p99 <= 1 s. Usage:

    /usr/bin/python3 tests/bench/bench_cdc.py [--backlog 200000] [--rate 5000]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from mgharness import ServiceStack, build_path, default_root, pick_free_port  # noqa: E402
from mgharness.cpu import children_cpu_seconds, cpu_seconds  # noqa: E402
from mgharness.mongosim import MongosimInstance  # noqa: E402


def run(argv, check=True, **kw):
    t = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                 f"{proc.stderr[-3000:]}")
    return proc, time.time() - t


def applied(pg):
    return pg.query("SELECT applied_events FROM _migrate.checkpoint")[0][0]


def ceiling(pg, seconds):
    """pgbench: 100-row multi-row upserts of ~1 KB jsonb, one client.

    The rows are 100 documents of the benchmark's own collection as the
    renderer wrote them (so PostgreSQL parses the same JSON text the applier
    sends), under random keys that are unique within a statement."""
    pg.query("DROP TABLE IF EXISTS bench.ceiling")
    pg.query("CREATE TABLE bench.ceiling (_id text PRIMARY KEY, doc jsonb NOT NULL)")
    docs = [r[0] for r in pg.query("SELECT doc::text FROM bench.docs LIMIT 100")]
    rows = ", ".join(
        f"(((:k * 100) + {i})::text, '" + d.replace("'", "''") + "'::jsonb)"
        for i, d in enumerate(docs))
    script = ("\\set k random(1, 5000)\n"
              f"INSERT INTO bench.ceiling (_id, doc) VALUES {rows} "
              "ON CONFLICT (_id) DO UPDATE SET doc = EXCLUDED.doc;\n")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    os.chmod(path, 0o644)
    proc, _ = run([os.path.join(pg.bin_dir, "pgbench"), "-n", "-c", "1", "-T", str(seconds),
                   "-f", path, "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "postgres"],
                  env=pg.tool_env())
    os.unlink(path)
    for line in proc.stdout.splitlines():
        if line.startswith("tps"):
            return float(line.split("=")[1].split()[0]) * 100
    sys.exit("pgbench printed no tps:\n" + proc.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=200000, help="changes to catch up with")
    ap.add_argument("--rate", type=int, default=5000, help="offered load for the lag run")
    ap.add_argument("--seconds", type=int, default=20, help="length of the lag run")
    args = ap.parse_args()
    root = default_root()
    dg = build_path("bin", "datagen")
    migrate = build_path("bin", "migrate")
    with ServiceStack(root) as s:
        sim = s.add(MongosimInstance(root, name="bench-source", args=["--oplog-size-mb", "4096"]))
        pg = s.postgres(name="bench-target", extra_conf={
            "shared_buffers": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"})
        print(f"machine: {os.cpu_count()} cores; mongosim and PostgreSQL 15 on this host")
        existing = 100000
        run([dg, "generate", "--uri", sim.uri, "--db", "bench", "--coll", "docs", "--count",
             str(existing), "--seed", "5", "--size-min", "800", "--size-max", "1200"])
        run([migrate, "init", "--source", sim.uri, "--target", pg.uri, "--include", "bench.*"])
        run([migrate, "sync", "--source", sim.uri, "--target", pg.uri, "--copy-only"])
        run([migrate, "sync", "--source", sim.uri, "--target", pg.uri])  # T0 -> now

        # (1) backlog, then catch up
        ack = os.path.join(tempfile.mkdtemp(), "ack.log")
        before = applied(pg)
        proc, t_gen = run([dg, "workload", "--uri", sim.uri, "--db", "bench", "--coll", "docs",
                           "--existing", str(existing), "--rate", "1000000", "--duration",
                           "3600", "--max-ops", str(args.backlog), "--ack-log", ack, "--seed",
                           "6", "--mix", "insert=40,update=40,replace=0,delete=20,txn=0"],
                          check=False)
        if proc.returncode != 0:
            # older datagen without --max-ops: bounded by time instead
            proc, t_gen = run([dg, "workload", "--uri", sim.uri, "--db", "bench", "--coll",
                               "docs", "--existing", str(existing), "--rate", "1000000",
                               "--duration", str(max(5, args.backlog // 15000)), "--ack-log",
                               ack, "--seed", "6", "--mix",
                               "insert=40,update=40,replace=0,delete=20,txn=0"])
        ops = json.loads(proc.stdout.strip().splitlines()[-1])["ops"]
        print(f"backlog: {ops} changes written in {t_gen:.1f} s")
        cpu0 = (children_cpu_seconds(), cpu_seconds(sim.proc.pid), cpu_seconds(pg.pid))
        proc, t_apply = run([migrate, "--log-level", "debug", "sync", "--source", sim.uri,
                             "--target", pg.uri])
        cpu1 = (children_cpu_seconds(), cpu_seconds(sim.proc.pid), cpu_seconds(pg.pid))
        events = applied(pg) - before
        # sustained: from the first commit to the last, from the applier's log lines
        applies = [json.loads(line) for line in proc.stderr.splitlines()
                   if '"cdc.apply"' in line]
        stamps = [time.mktime(time.strptime(a["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
                  + float("0." + a["timestamp"][20:23]) for a in applies]
        tail = sum(a["events"] for a in applies[1:])
        rate = tail / (stamps[-1] - stamps[0]) if len(stamps) > 1 else events / t_apply
        print(f"(1) apply: {events} events; sustained {rate:,.0f} events/s between the first and "
              f"the last of {len(applies)} commits; {events / t_apply:,.0f} events/s over the "
              f"whole command ({t_apply:.1f} s, process start and stream open included)")
        for line in proc.stderr.splitlines():
            if '"cdc.stats"' in line:
                print("    " + json.loads(line)["message"])
        print(f"    CPU seconds during (1): migrate {cpu1[0] - cpu0[0]:.1f}, mongosim "
              f"{cpu1[1] - cpu0[1]:.1f}, postgres {cpu1[2] - cpu0[2]:.1f} "
              f"(2 cores x {t_apply:.1f} s = {2 * t_apply:.1f} available)")
        pcpu = cpu_seconds(pg.pid)
        ceil = ceiling(pg, 15)
        print(f"    CPU seconds during (2): postgres {cpu_seconds(pg.pid) - pcpu:.1f} of 30 available")
        print(f"(2) ceiling, pgbench 1 client, 100-row upserts of the same ~1 KB documents: "
              f"{ceil:,.0f} rows/s")
        print(f"    ratio (1)/(2) = {rate / ceil:.2f} (goal >= 0.7)")

        # (3) lag under a steady offered load
        port = pick_free_port()
        follow = subprocess.Popen([migrate, "sync", "--source", sim.uri, "--target", pg.uri,
                                   "--follow", "--metrics-port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        lags = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    p = json.loads(urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/progress", timeout=2).read())
                    lags.append(p["lag_s"])
                except OSError:
                    pass
                time.sleep(0.1)

        th = threading.Thread(target=sample)
        th.start()
        proc, _ = run([dg, "workload", "--uri", sim.uri, "--db", "bench", "--coll", "docs",
                       "--existing", str(existing), "--rate", str(args.rate), "--duration",
                       str(args.seconds), "--ack-log", ack + ".2", "--seed", "7", "--mix",
                       "insert=40,update=40,replace=0,delete=20,txn=0"])
        stop.set()
        th.join()
        follow.terminate()
        follow.wait(timeout=60)
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        offered = got["ops"] / got["seconds"]
        lags.sort()
        p50 = statistics.median(lags) if lags else float("nan")
        p99 = lags[int(0.99 * (len(lags) - 1))] if lags else float("nan")
        print(f"(3) lag at {offered:,.0f} events/s achieved by the writer "
              f"({args.rate} asked): p50 {p50:.2f} s, p99 {p99:.2f} s over {len(lags)} samples "
              f"(goal p99 <= 1 s)")


if __name__ == "__main__":
    main()
