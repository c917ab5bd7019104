"""tests/bench/workload/test_smoke.py - the workload benchmark's smoke run (ctest
integration_bench_workload_smoke): every experiment for about a second on a tiny
dataset, so the benchmark never rots.

It asserts that the benchmark ran and that its results are sane and complete
(operations counted, no errors, percentiles ordered, the CPU of the client and
of the primary's backends sampled, lag sampled for both physical replicas and the
logical subscriber, the plots written), never timings: those belong to the full
run recorded in docs/benchmarks.md.
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = {"client", "paths", "open", "toast", "repl", "syncrep", "txn", "fk", "memory",
            "indexes", "mongosim"}


def test_smoke(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, os.path.join(HERE, "bench_workload.py"), "--smoke",
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with open(out / "results.json") as f:
        res = json.load(f)
    runs = res["runs"]
    assert {r["exp"] for r in runs} == EXPECTED
    # the translated index serves the range read
    assert "orders_customer_created" in res["plan"], res["plan"]
    # products are TOASTed: their toast relation holds most of the table
    _, total, heap, toast = res["sizes"]["products"]
    assert toast > heap, res["sizes"]
    for r in runs:
        rep, name = r["report"], f"{r['exp']}/{r['label']}"
        assert rep["ops"] > 0, name
        assert rep["errors"] == 0 and rep["not_started"] == 0, (name, rep["by_op"])
        lat = rep["latency_ms"]
        assert lat["count"] == rep["ops"], name
        assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], name
        assert rep["curve"][-1][0] == 1.0 and rep["curve"][-1][1] == lat["max"], name
        assert sum(ops for ops, _ in rep["series"]) <= rep["ops"], name
        c = rep["client"]
        assert c["cpu_s"] >= 0 and 0 <= c["outside_fraction"] <= 1, name
        assert "client" in r["procs"], (name, sorted(r["procs"]))
        if r["dry"]:
            assert c["in_driver_s"] == 0, name
            continue
        assert sum(o["ops"] for o in rep["by_op"].values()) == rep["ops"], name
        assert c["in_driver_s"] > 0, name
        if r["target"] == "pg":
            backends = [k for k in r["procs"] if k.endswith("(primary): backends")]
            assert backends and r["procs"][backends[0]]["cpu_s"] > 0, (name, sorted(r["procs"]))
            assert r["wal_bytes"] > 0 or set(rep["by_op"]) <= {"point", "range"}, name
    # open loop: the offered rate is met and latency is measured from the due time
    for r in (x for x in runs if x["rate"]):
        rep = r["report"]
        assert rep["mode"] == "open" and rep["rate_offered"] == r["rate"]
        assert rep["latency_ms"]["p50"] >= rep["service_ms"]["p50"], r["label"]
    # replication: every consumer sampled and caught up after the run
    repl = [r for r in runs if r["exp"] == "repl"]
    assert len(repl) == 2
    for r in repl:
        groups = set(r["procs"])
        for kind in ("(replica): startup (replay)", "(replica): walreceiver",
                     "(primary): walsender", "subscriber: apply worker"):
            assert any(g.endswith(kind) for g in groups), (kind, sorted(groups))
        kinds = set(r["lag"])
        assert "subscriber" in kinds and len(kinds) == 3, kinds
        assert set(r["caught_up_s"]) == kinds, r["caught_up_s"]
    # the paths: three for one connection and three for many
    assert len([r for r in runs if r["exp"] == "paths"]) == 6
    assert {r["path"] for r in runs if r["exp"] == "paths"} == {"direct", "haproxy",
                                                                 "pgbouncer"}
    # the memory experiment ran under the cgroup (where one can be made: cgroup v1, root)
    mem = [r for r in runs if r.get("cgroup")]
    if os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup/memory"):
        assert len(mem) == 1 and mem[0]["cgroup"]["max_usage_mb"] > 0, res["notes"]
    else:
        assert any(n.startswith("memory: no cgroup arm") for n in res["notes"])
    # the report and the plots
    report = (out / "report.md").read_text()
    assert "| exp | run | ops/s |" in report and "never a claim about MongoDB" in report
    svgs = sorted(p.name for p in out.iterdir() if p.suffix == ".svg")
    for name in ("throughput.svg", "cpu.svg", "latency-paths.svg", "lag-update_large.svg"):
        assert name in svgs, svgs
    for name in svgs:
        root = ET.parse(out / name).getroot()
        assert root.tag.endswith("svg") and len(list(root)) > 5, name
