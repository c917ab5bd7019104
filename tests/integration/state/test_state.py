"""Integration: the state layer (state/, mg/state.h) against a real PostgreSQL 15.

The checks themselves are C (cmocka, test_state.c: every typed function of
the state layer, on a state schema named with a quote, a dot, a space, a
dollar and non-ASCII letters, with hostile values as bound parameters). The
unit label means no servers, so they run here: this file starts a
PostgreSQL from the harness and hands the program its connection string in
MG_TEST_PG. cmocka's report is shown when it fails.
"""

import os
import subprocess

from mgharness.paths import build_path


def test_state_layer_against_postgres(postgres):
    binary = build_path("tests", "bin", "mg_state_test")
    assert os.access(binary, os.X_OK), f"{binary} is not built"
    env = dict(os.environ, MG_TEST_PG=postgres.uri)
    proc = subprocess.run([binary], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    ran = out.count("[ RUN      ]")
    assert ran >= 11 and f"[  PASSED  ] {ran} test(s)." in out, out
