"""Integration: every statement the SQL generators write for the fuzz
corpora runs in a real PostgreSQL (issue 17, "Fuzzing").

The fuzz targets' replay drivers (tests/fuzz, built in every build as
<target>_replay) run their corpus - the seeds and every input a fuzzing
run found - with MG_FUZZ_PG pointing at a PostgreSQL started here:
fuzz_shadow runs each translated shadow query and its sort guard against
a table of varied documents with a hostile name, fuzz_schema_index builds
each translated index twice and again after a rename. Any statement
PostgreSQL refuses (but for a timeout, a resource limit, or a unique index
the sample rows do not fit) aborts the driver and fails this test.
"""

import os
import subprocess

import pytest

from mgharness import build_path
from mgharness.paths import source_dir

TARGETS = [
    (("tests", "fuzz", "validate", "fuzz_shadow_replay"), "shadow"),
    (("tests", "fuzz", "schema", "fuzz_schema_index_replay"), "index"),
]


@pytest.mark.parametrize("binary,corpus", TARGETS, ids=[c for _, c in TARGETS])
def test_corpus_sql_runs_in_postgres(services, binary, corpus):
    pg = services.postgres()
    exe = build_path(*binary)
    if not os.path.exists(exe):
        pytest.fail(f"{exe} is not built (a -DMG_FUZZ=ON tree builds the fuzzers instead)")
    env = dict(os.environ, MG_FUZZ_PG=pg.dsn, MG_FUZZ_VERBOSE="1")
    proc = subprocess.run([exe, os.path.join(source_dir(), "tests", "fuzz", "corpus", corpus)],
                          capture_output=True, text=True, env=env, timeout=300)
    print(proc.stdout)
    print(proc.stderr[-20000:])
    assert proc.returncode == 0, f"{corpus}: PostgreSQL refused a generated statement:\n" \
                                 f"{proc.stderr[-4000:]}"
    # the corpus reaches PostgreSQL: some inputs translate, so the check is not vacuous
    built = proc.stderr.count("translated: ") + proc.stderr.count("built: ")
    assert built >= 3, f"{corpus}: only {built} inputs produced SQL"
