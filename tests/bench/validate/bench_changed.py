#!/usr/bin/python3
"""tests/bench/validate/bench_changed.py - collecting the changed documents
of `migrate validate --changed` (the cutover's default verify step, the
same engine run in-process), issue 14, hole 7.

Not a test: it prints figures measured in one run on one machine. The ids
to re-check are the distinct ids of _migrate.changed_docs plus the open
mismatches, collected without repeats: with a linear scan per id (the old
code) that costs n^2/2 comparisons for n ids, with a hash set one lookup
per id.

For each binary (this build, and with --old-migrate a build of the code
before the fix, on its own copy since the state schemas differ) it loads a
small collection into mongosim and copies it, then fills changed_docs with
n distinct ObjectId keys that exist on neither side, and times `migrate
validate --changed` for n = N/4 and N: the ids are collected, looked up on
both sides (one {_id: {$in: [...]}} find per 1,000 ids; mongosim answers
$in by scanning its collection, hence the small collection) and found
nowhere. Everything but the collection grows linearly with n, so the
growth of the time from N/4 to N is x4 when the collection is linear and
up to x16 when it is quadratic.

    /usr/bin/python3 tests/bench/validate/bench_changed.py [--ids 100000]
        [--old-migrate PATH]
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

from mgharness import ServiceStack, build_path, default_root  # noqa: E402
from mgharness.mongosim import MongosimInstance  # noqa: E402


def run(argv):
    t = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} {argv[1]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.time() - t


def load(stack, root, name, docs, migrate):
    """a mongosim with `docs` documents in bench.docs, copied to a fresh PostgreSQL."""
    sim = stack.add(MongosimInstance(root, name=f"{name.replace(' ', '-')}-source"))
    pg = stack.postgres(name=f"{name.replace(' ', '-')}-target")
    run([build_path("bin", "datagen"), "generate", "--uri", sim.uri, "--db", "bench", "--coll",
         "docs", "--count", str(docs), "--seed", "1", "--size-min", "150", "--size-max", "250"])
    src = ["--source", sim.uri, "--target", pg.uri]
    run([migrate, "init", *src, "--include", "bench.*"])
    t = run([migrate, "sync", *src])
    print(f"{name}: copied {docs} documents in {t:.1f} s", flush=True)
    return pg, src


def changed_run(migrate, pg, src, n):
    """seconds of validate --changed over n changed documents found on neither side."""
    pg.query("DELETE FROM _migrate.changed_docs")
    pg.query("INSERT INTO _migrate.changed_docs SELECT 'bench', 'docs', "
             "'ffff' || lpad(to_hex(k), 20, '0'), 5, 1 FROM generate_series(1, %s) k", (n,))
    pg.query("UPDATE _migrate.checkpoint SET cluster_time_ts = greatest(cluster_time_ts, 10)")
    return run([migrate, "validate", *src, "--changed"])


def series(name, migrate, pg, src, sizes):
    """times each count; returns {count: seconds}."""
    out = {}
    for n in sizes:
        out[n] = changed_run(migrate, pg, src, n)
        print(f"{name}: validate --changed over {n:>7} changed documents: {out[n]:7.2f} s",
              flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", type=int, default=100000)
    ap.add_argument("--old-migrate", help="a migrate binary built before the fix")
    args = ap.parse_args()
    root = default_root()
    sizes = [args.ids // 4, args.ids]
    print(f"machine: {os.cpu_count()} cores; mongosim and PostgreSQL 15 on this host")
    with ServiceStack(root) as stack:
        builds = [("this build", build_path("bin", "migrate"))]
        if args.old_migrate:
            builds.append(("old build", args.old_migrate))
        results = {}
        for name, binary in builds:
            pg, src = load(stack, root, name, 1000, binary)
            results[name] = series(name, binary, pg, src, sizes)
        for name, r in results.items():
            print(f"{name}: x{sizes[-1] // sizes[0]} changed documents: "
                  f"x{r[sizes[-1]] / r[sizes[0]]:.2f} time")
        if args.old_migrate:
            for d in sizes:
                print(f"old/this at {d} changed documents: "
                      f"{results['old build'][d] / results['this build'][d]:.2f}")


if __name__ == "__main__":
    main()
