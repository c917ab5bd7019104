#!/usr/bin/python3
"""tests/bench/bench_sync.py - benchmark of the bulk copy (`migrate sync`).

Not a test: it prints figures measured side by side in one run, on one
machine, and the ratios the issue asks for:

  (a) ceiling  - psql \\copy of the same rows, pre-rendered to files, into an
                 identical table, 2 parallel sessions;
  (b) migrate  - `migrate sync --workers 2` from mongosim;
  (c) baseline - the way users usually write it: one Python process reading
                 with pymongo and loading with psycopg2 copy_expert.

Goal: (b) >= 0.8 x (a) and (b) >= 3 x (c) in docs/s. Also prints the peak
RSS of (b). Usage (after `make build`):

    /usr/bin/python3 tests/bench/bench_sync.py [--docs 1000000] [--workers 2]
"""

import argparse
import io
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import psycopg2  # noqa: E402
import pymongo  # noqa: E402
from bson import json_util  # noqa: E402

from mgharness import ServiceStack, build_path, default_root  # noqa: E402
from mgharness.cpu import children_cpu_seconds, cpu_seconds  # noqa: E402
from mgharness.mongosim import MongosimInstance  # noqa: E402


def run(argv, **kw):
    t = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc, time.time() - t


def ceiling(pg, files):
    """ceiling loads the pre-rendered files with 2 parallel psql \\copy sessions."""
    pg.query("DROP TABLE IF EXISTS bench.ceiling")
    pg.query("CREATE TABLE bench.ceiling (LIKE bench.docs INCLUDING ALL)")
    psql = os.path.join(pg.bin_dir, "psql")
    errors = []

    def load(path):
        proc = subprocess.run([psql, pg.dsn, "-v", "ON_ERROR_STOP=1", "-c",
                               f"\\copy bench.ceiling FROM '{path}'"], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            errors.append(proc.stderr)

    t = time.time()
    threads = [threading.Thread(target=load, args=(f,)) for f in files]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.time() - t
    if errors:
        sys.exit("ceiling load failed: " + errors[0])
    return elapsed


def baseline(pg, uri, docs):
    """baseline: pymongo -> json_util -> COPY text via copy_expert, one process."""
    pg.query("DROP TABLE IF EXISTS bench.baseline")
    pg.query("CREATE TABLE bench.baseline (_id text PRIMARY KEY, doc jsonb NOT NULL)")
    client = pymongo.MongoClient(uri)
    conn = psycopg2.connect(pg.dsn)
    t = time.time()
    buf = io.StringIO()
    n = 0

    def flush():
        buf.seek(0)
        with conn.cursor() as cur:
            cur.copy_expert("COPY bench.baseline (_id, doc) FROM STDIN", buf)
        buf.seek(0)
        buf.truncate()

    for doc in client.bench.docs.find(batch_size=10000):
        text = json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        buf.write(f"{doc['_id']}\t{text}\n")
        n += 1
        if n % 20000 == 0:
            flush()
    flush()
    conn.commit()
    elapsed = time.time() - t
    conn.close()
    client.close()
    assert n == docs, (n, docs)
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    root = default_root()
    with ServiceStack(root) as s:
        sim = s.add(MongosimInstance(root, name="bench-source"))
        pg = s.postgres(name="bench-target", extra_conf={
            "shared_buffers": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"})
        print(f"machine: {os.cpu_count()} cores; mongosim and PostgreSQL 15 on this host")
        _, t = run([build_path("bin", "datagen"), "generate", "--uri", sim.uri, "--db", "bench",
                    "--coll", "docs", "--count", str(args.docs), "--seed", str(args.seed),
                    "--size-min", "600", "--size-max", "1000"])
        print(f"generated {args.docs} documents (~0.8 KB) in {t:.1f} s")
        migrate = build_path("bin", "migrate")
        run([migrate, "init", "--source", sim.uri, "--target", pg.uri, "--include", "bench.*"])

        cpu0 = (cpu_seconds(sim.proc.pid), cpu_seconds(pg.pid), children_cpu_seconds())
        proc, wall_b = run([migrate, "sync", "--source", sim.uri, "--target", pg.uri,
                            "--workers", str(args.workers), "--json"])
        cpu1 = (cpu_seconds(sim.proc.pid), cpu_seconds(pg.pid), children_cpu_seconds())
        import json
        rep = json.loads(proc.stdout)
        copy_b = rep["seconds"]
        rate_b = rep["docs"] / copy_b
        print(f"(b) migrate sync: {rep['docs']} docs in {copy_b:.1f} s copy "
              f"({wall_b:.1f} s wall incl. plan and index build) = {rate_b:,.0f} docs/s, "
              f"peak RSS {rep['peak_rss_kb'] / 1024:.1f} MB")
        print(f"    CPU seconds during (b): migrate {cpu1[2] - cpu0[2]:.1f}, mongosim "
              f"{cpu1[0] - cpu0[0]:.1f}, postgres (server, live processes) "
              f"{cpu1[1] - cpu0[1]:.1f}")
        for w in rep["workers"]:
            tot = w["seconds"] or 1
            print(f"    worker {w['worker']}: mongodb {100 * w['mongo_s'] / tot:.0f}%, render "
                  f"{100 * w['render_s'] / tot:.0f}%, postgres {100 * w['postgres_s'] / tot:.0f}%")

        # (a): the same rows, rendered by PostgreSQL itself into 2 files
        files = [os.path.join(pg.dir, f"part{i}.copy") for i in range(2)]
        for i, f in enumerate(files):
            pg.query(f"COPY (SELECT * FROM bench.docs WHERE hashtext(_id) % 2 = {i} "
                     f"OR hashtext(_id) % 2 = -{i}) TO '{f}'")
        pcpu0 = cpu_seconds(pg.pid)
        t_a = ceiling(pg, files)
        print(f"    CPU seconds during (a): postgres (server, live processes) "
              f"{cpu_seconds(pg.pid) - pcpu0:.1f}")
        rate_a = args.docs / t_a
        print(f"(a) ceiling, psql \\copy x2 of pre-rendered rows: {t_a:.1f} s = "
              f"{rate_a:,.0f} docs/s")

        t_c = baseline(pg, sim.uri, args.docs)
        rate_c = args.docs / t_c
        print(f"(c) baseline, Python pymongo + copy_expert: {t_c:.1f} s = {rate_c:,.0f} docs/s")
        print(f"ratios: (b)/(a) = {rate_b / rate_a:.2f} (goal >= 0.8), "
              f"(b)/(c) = {rate_b / rate_c:.1f} (goal >= 3)")


if __name__ == "__main__":
    main()
