#!/usr/bin/python3
"""tests/integration/randomized/run.py - the randomized differential test from the command line.

    run.py [--seeds N] [--start S] [--seed S ...] [--minutes M] [--batch N]
           [--exclude HOLE ...] [--fidelity relaxed|exact] [--no-shrink]
           [--shrink-budget SECONDS] [--max-shrinks N] [--scale X] [--out DIR]
           [--replay FILE.json]

Starts its own mongosim and PostgreSQL 15 (mgharness), or uses the real
replica set in MIGRATE_TEST_MONGODB_URI (own databases, dropped after).
--minutes runs batches of fresh seeds until the time is up (soak; `make
soak` runs it); --seeds N runs seeds START..START+N-1. Prints every
failure with its seed, the acknowledged writes behind it and a minimal
reproduction (runnable pymongo code and JSON in --out). Exit 0 when every
seed passed, 1 when any failed.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import driver  # noqa: E402
import gen  # noqa: E402
import harness  # noqa: E402
import probe  # noqa: E402
from mgharness import PostgresInstance, build_path, default_root  # noqa: E402
from mgharness.mongosim import MongosimInstance  # noqa: E402


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=None, help="how many seeds (default 200)")
    p.add_argument("--start", type=int, default=None,
                   help="first seed (default: from the clock, printed)")
    p.add_argument("--seed", type=int, action="append", default=[], help="run exactly this seed")
    p.add_argument("--minutes", type=float, default=None, help="soak: run until this time is up")
    p.add_argument("--batch", type=int, default=100, help="seeds per migration run")
    p.add_argument("--exclude", action="append", default=[],
                   choices=sorted(gen.HOLES) + ["sim"],
                   help="leave out a hole class (repeatable; sim: the mongosim bugs, left out "
                        "unless --with-sim)")
    p.add_argument("--with-sim", action="store_true",
                   help="also generate what provokes the known mongosim bugs (gen.SIM_HOLES)")
    p.add_argument("--fidelity", choices=("relaxed", "exact"), default="relaxed")
    p.add_argument("--scale", type=float, default=1.0, help="document and operation counts")
    p.add_argument("--no-shrink", action="store_true")
    p.add_argument("--shrink-budget", type=float, default=180.0, help="seconds per failure")
    p.add_argument("--max-shrinks", type=int, default=4)
    p.add_argument("--out", default=None, help="directory for reproductions and report.json")
    p.add_argument("--replay", default=None, help="run the scenario of a reproduction's JSON")
    return p.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    root = default_root()
    out = a.out or os.path.join(root.path, "randomized")
    os.makedirs(out, exist_ok=True)
    real = os.environ.get("MIGRATE_TEST_MONGODB_URI")
    pg = PostgresInstance(root)
    sim = None
    sims = []
    try:
        pg.start()
        if real:
            uri = real
        else:
            sim = MongosimInstance(root)
            sims.append(sim)
            sim.start()
            uri = sim.uri
        caps, lacks = probe.capabilities(uri)
        print(f"source: {'real MongoDB' if real else 'mongosim'}; update features it lacks: "
              f"{', '.join(lacks) or 'none'}")
        for line in probe.differences(uri):
            print(f"source differs from MongoDB: {line}")
        exclude = gen.expand_excludes(a.exclude + ([] if a.with_sim else ["sim"]))
        options = gen.GenOptions(exclude=exclude, caps=caps, scale=a.scale)
        def restart():
            sims.append(MongosimInstance(root))
            sims[-1].start()
            return sims[-1].uri

        env = harness.Env(uri, pg, build_path("bin", "migrate"), out, root=root,
                          fidelity=a.fidelity, scope="listed" if real else "all",
                          restart_source=None if real else restart)
        cfg = driver.Config(options=options, batch_size=a.batch, shrink=not a.no_shrink,
                            shrink_budget=a.shrink_budget, max_shrinks=a.max_shrinks,
                            outdir=out)
        if a.replay:
            with open(a.replay) as f:
                sc = gen.Scenario.from_json(json.load(f))
            results, batches = driver.run_attributed(env, [sc], print)
            steps = batches[0].steps
            print(f"validate: {steps.get('validate', {}).get('summary')}, cutover: "
                  f"{steps.get('cutover', {}).get('summary')}")
            diffs = results[0][1]
            print("\n".join(driver.compare.summarize(diffs, 20)) or "no difference")
            return 1 if diffs else 0
        if a.seed:
            seeds = a.seed
        else:
            start = a.start if a.start is not None else int(time.time()) % 1000000 * 1000
            n = a.seeds if a.seeds is not None else (10 ** 9 if a.minutes else 200)
            seeds = range(start, start + n)
            print(f"seeds {start}.. (reproduce one with --seed S"
                  f"{''.join(' --exclude ' + h for h in a.exclude)}"
                  f"{' --with-sim' if a.with_sim else ''}"
                  f"{' --fidelity exact' if a.fidelity == 'exact' else ''})")
        if a.minutes:
            cfg.deadline = time.monotonic() + a.minutes * 60
        print(f"options: {json.dumps(options.describe())}")
        rep = driver.run_seeds(env, seeds, cfg)
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump(rep.to_json(), f, indent=1)
        print(f"\n{rep.seeds} seeds in {len(rep.batches)} migrations, {rep.seconds} s: "
              f"{len(rep.failures)} failed")
        for f in rep.failures.values():
            if f.minimal is not None:
                print("\n" + driver.format_failure(f))
        others = [f.seed for f in rep.failures.values() if f.minimal is None]
        if others:
            print("\nalso failed (not shrunk): "
                  + ", ".join(f"{s} ({rep.failures[s].primary})" for s in others[:100]))
        print(f"report: {os.path.join(out, 'report.json')}")
        for p in rep.problems:
            print(f"migration {p['prefix']} (seeds {p['seeds'][0]}..{p['seeds'][1]}) did not "
                  f"succeed although no seed differed: {p['steps']}")
        return 1 if rep.failures or rep.problems else 0
    finally:
        for s in sims:
            s.close()
        pg.close()
        if a.out is None:
            print("(the reproductions were in a temporary directory; pass --out DIR to keep "
                  "them)")
        root.cleanup()


if __name__ == "__main__":
    sys.exit(main())
