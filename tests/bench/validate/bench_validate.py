#!/usr/bin/python3
"""tests/bench/validate/bench_validate.py - benchmark of `migrate validate`
(full checksums of every document on both sides).

Not a test: it prints figures measured in one run on one machine. It loads
N documents of ~0.8 KB into mongosim (datagen), copies them with `migrate
init` + `migrate sync`, then times `migrate validate --full` and reports
docs/s (documents compared per second of wall time), the wall time of each
side's scan (they run in parallel), the drill-down cost when some documents
differ, and CPU seconds per process. Goal (issue 7): >= 100k docs/s for 1M
documents on the project's 2-core machine.

    /usr/bin/python3 tests/bench/validate/bench_validate.py [--docs 1000000]
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

from mgharness import ServiceStack, build_path, default_root  # noqa: E402
from mgharness.cpu import children_cpu_seconds, cpu_seconds  # noqa: E402
from mgharness.mongosim import MongosimInstance  # noqa: E402


def run(argv, ok=(0,)):
    t = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode not in ok:
        sys.exit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc, time.time() - t


def validate(migrate, sim, pg, *extra):
    cpu0 = (cpu_seconds(sim.proc.pid), cpu_seconds(pg.pid), children_cpu_seconds())
    proc, wall = run([migrate, "validate", "--source", sim.uri, "--target", pg.uri, "--full",
                      "--json", *extra], ok=(0, 5))
    cpu1 = (cpu_seconds(sim.proc.pid), cpu_seconds(pg.pid), children_cpu_seconds())
    rep = json.loads(proc.stdout)
    c = rep["collections"][0]
    return rep, c, wall, [b - a for a, b in zip(cpu0, cpu1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000000)
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
        _, t = run([migrate, "sync", "--source", sim.uri, "--target", pg.uri, "--workers", "2"])
        print(f"copied with migrate sync in {t:.1f} s")
        pg.query("VACUUM ANALYZE bench.docs")

        for label in ("clean, first run", "clean, second run"):
            rep, c, wall, cpu = validate(migrate, sim, pg)
            assert rep["status"] == "clean", rep["status"]
            docs = c["source_docs"]
            print(f"validate --full ({label}): {docs} docs in {c['elapsed_s']:.2f} s "
                  f"(process wall {wall:.2f} s) = {docs / c['elapsed_s']:,.0f} docs/s; "
                  f"source scan {c['source_s']:.2f} s, target scan {c['target_s']:.2f} s "
                  f"(in parallel)")
            print(f"    CPU seconds: migrate {cpu[2]:.1f}, mongosim {cpu[0]:.1f}, "
                  f"postgres {cpu[1]:.1f}")

        # 100 documents changed in the target: the drill-down's second scan
        pg.query("UPDATE bench.docs SET doc = jsonb_set(doc, '{bench_changed}', 'true') "
                 "WHERE _id IN (SELECT _id FROM bench.docs ORDER BY _id LIMIT 100)")
        for mem in ("256MB", "1GB"):
            rep, c, wall, cpu = validate(migrate, sim, pg, "--drilldown-memory", mem)
            print(f"validate --full with 100 differing documents, --drilldown-memory {mem}: "
                  f"{c['elapsed_s']:.2f} s = {c['source_docs'] / c['elapsed_s']:,.0f} docs/s; "
                  f"{c['segments_mismatched']} segments differ, {c['segments_drilled']} drilled, "
                  f"{c['different']} named different, truncated {c['truncated']}")


if __name__ == "__main__":
    main()
