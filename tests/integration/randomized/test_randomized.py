"""Integration: the seeded randomized differential test (issue 14, "The test that finds
the next one").

Hundreds of seeds, each a scenario of random documents over the whole BSON
type space and a random operation sequence (gen.py), run through whole
migrations: mongosim (or the real replica set of MIGRATE_TEST_MONGODB_URI)
-> migrate init -> migrate sync --follow while the operations run ->
migrate validate -> migrate cutover; then every seed's databases are
compared with the target by compare.py (raw BSON against the target's JSON
decoded from docs/type-mapping.md, independent of `migrate validate`).
A failure names its seed, the acknowledged writes behind each difference and
a minimal reproduction (runnable pymongo code and JSON, written next to the
test's temp dir and printed).

Environment:
    MG_RANDOMIZED_SEEDS    how many seeds (default 300)
    MG_RANDOMIZED_START    the first seed (default 0: CI runs the same seeds)
    MG_RANDOMIZED_EXCLUDE  hole classes to leave out, comma-separated (gen.HOLES; "sim"
                           for the mongosim bugs, the default; "none" for nothing)
    MG_RANDOMIZED_BATCH    seeds per migration (default 60)
    MG_RANDOMIZED_OUT      where reproductions go (default: the test's tmp_path)
Soak: `make soak` (run.py --minutes).
"""

import os

import pytest

import driver
import gen
import harness
import probe
from mgharness import build_path

SEEDS = int(os.environ.get("MG_RANDOMIZED_SEEDS", "300"))
START = int(os.environ.get("MG_RANDOMIZED_START", "0"))
# by default the classes that provoke known mongosim bugs are left out (gen.SIM_HOLES)
EXCLUDE = sorted(gen.expand_excludes(os.environ.get("MG_RANDOMIZED_EXCLUDE", "sim").split(",")))
BATCH = int(os.environ.get("MG_RANDOMIZED_BATCH", "60"))


def test_randomized_differential(rand_source, postgres, tmp_root, tmp_path):
    uri, real = rand_source.uri, rand_source.real
    out = os.environ.get("MG_RANDOMIZED_OUT") or str(tmp_path)
    caps, lacks = probe.capabilities(uri)
    print(f"\nsource: {'real MongoDB' if real else 'mongosim'}; update features it lacks "
          f"(not generated): {', '.join(lacks) or 'none'}")
    for line in probe.differences(uri):
        print(f"source differs from MongoDB: {line}")
    options = gen.GenOptions(exclude=EXCLUDE, caps=caps)
    env = harness.Env(uri, postgres, build_path("bin", "migrate"), out, root=tmp_root,
                      scope="listed" if real else "all", restart_source=rand_source.restart)
    cfg = driver.Config(options=options, batch_size=BATCH, shrink_budget=120, max_shrinks=3,
                        outdir=out)
    print(f"seeds {START}..{START + SEEDS - 1}, options {options.describe()} (reproduce: "
          f"tests/integration/randomized/run.py --with-sim --seed S"
          + "".join(f" --exclude {h}" for h in EXCLUDE) + ")")
    rep = driver.run_seeds(env, range(START, START + SEEDS), cfg)
    print(f"{rep.seeds} seeds, {len(rep.batches)} migrations, {rep.seconds} s, "
          f"{len(rep.failures)} failed")
    assert not rep.problems, f"migrations that failed although no seed differed: {rep.problems}"
    if rep.failures:
        shown = [driver.format_failure(f) for f in rep.failures.values() if f.minimal]
        rest = [f"{f.seed} ({f.primary}; {', '.join(sorted(f.scenario.tags())) or 'no hole class'})"
                for f in rep.failures.values() if f.minimal is None]
        pytest.fail(f"{len(rep.failures)} of {rep.seeds} seeds differ between source and "
                    f"target:\n\n" + "\n\n".join(shown)
                    + (f"\n\nalso: {'; '.join(rest[:60])}" if rest else ""), pytrace=False)
