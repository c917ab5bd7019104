"""tests/integration/ha/test_cli_options.py - `pgdaemon cluster up | down` option checks.

Every bad value is a usage error (exit 2) that names the option, before
anything is started or written (issue 18: checked integers instead of
atoi, which took "abc" as 0 and "3x" as 3). The options are parsed by the
command framework of core (docs/core.md), like every option of pgdaemon and
migrate: an integer is what strtoll reads completely, within the option's
bounds.
"""

import os

import pytest

import hatools
from hatools import run_pgdaemon


@pytest.mark.parametrize("args, option", [
    (["--nodes", "abc"], "--nodes"),
    (["--nodes", "3x"], "--nodes"),
    (["--nodes", "0"], "--nodes"),
    (["--nodes", "10"], "--nodes"),
    (["--nodes", "-1"], "--nodes"),
    (["--nodes", "99999999999999999999"], "--nodes"),
    (["--timeout", "1.5"], "--timeout"),
    (["--ttl", ""], "--ttl"),
    (["--ttl", "5", "--loop-wait-ms", "4000"], "--ttl"),
    (["--loop-wait-ms", "5"], "--loop-wait-ms"),
    (["--retry-timeout-ms", "1e3"], "--retry-timeout-ms"),
    (["--pg-parameter", "no_equals_sign"], "--pg-parameter"),
    (["--no-such-option"], "--no-such-option"),
    (["--nodes"], "--nodes"),
])
def test_cluster_up_rejects_bad_values(tmp_root, args, option):
    d = os.path.join(hatools.shared_dir(tmp_root, "opts"), "c")
    r = run_pgdaemon(tmp_root, "cluster", "up", "--dir", d, *args, timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    first = r.stderr.splitlines()[0]
    assert first.startswith("pgdaemon cluster up: ") and option in first, r.stderr
    assert not os.path.exists(d)  # nothing created


def test_cluster_up_rejects_relative_dir_and_extra_arguments(tmp_root):
    r = run_pgdaemon(tmp_root, "cluster", "up", "--dir", "relative/dir", timeout=30)
    assert r.returncode == 2 and '"--dir"' in r.stderr, r.stderr
    d = os.path.join(hatools.shared_dir(tmp_root, "opts"), "c")
    r = run_pgdaemon(tmp_root, "cluster", "up", "--dir", d, "stray", timeout=30)
    assert r.returncode == 2 and 'unexpected argument "stray"' in r.stderr, r.stderr


def test_cluster_down_options(tmp_root):
    r = run_pgdaemon(tmp_root, "cluster", "down", "--dir", timeout=30)
    assert r.returncode == 2 and "--dir" in r.stderr, r.stderr
    d = hatools.shared_dir(tmp_root, "nothing")
    r = run_pgdaemon(tmp_root, "cluster", "down", "--dir", d, timeout=30)
    assert r.returncode == 2 and "could not open" in r.stderr and "cluster.json" in r.stderr
