#!/usr/bin/python3
"""scripts/demo.py - the main job on an embedded default (`make demo`).

Starts mongosim loaded with a sample shop (customers, orders, products,
events) and two live write workloads, a 3-node pgdaemon cluster behind
HAProxy, then runs the migration the way an operator would:

    migrate init -> migrate sync --follow -> migrate validate (checksums,
    shadow reads, HTML report) -> migrate cutover

and tears everything down. Exit 0 only if validation was clean and the
cutover completed. The report, the logs and the endpoint file stay in
--out (default ./demo-output).

Everything runs on loopback ports picked at random; as root, PostgreSQL
runs as the `postgres` user. It uses the integration harness
(tests/integration/mgharness), so the demo runs what tests/integration/e2e
proves.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))

from mgharness.e2e import MigrationStack, terminate, wait_until  # noqa: E402
from mgharness.tmproot import TempRoot, sweep_stale_roots  # noqa: E402

WORKLOAD_COLLS = ("orders", "customers")


def say(msg=""):
    print(msg, flush=True)


def step(n, total, title):
    say()
    say(f"== [{n}/{total}] {title}")


class SyncOutput(threading.Thread):
    """SyncOutput keeps sync's JSON log in a file and shows the parts worth seeing."""

    def __init__(self, pipe, path):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.path = path
        self.show = True

    def run(self):
        with open(self.path, "w") as log:
            for raw in self.pipe:
                line = raw.decode("utf-8", "replace")
                log.write(line)
                log.flush()
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                ev, level = rec.get("event") or "", rec.get("level", "")
                if ev == "sync.progress" and "collection" not in rec and self.show:
                    eta = rec.get("eta_s", -1)
                    say(f"   copy: {rec.get('docs', 0):>8} of ~{rec.get('docs_total', 0)} "
                        f"documents  {rec.get('docs_per_s', 0):8.0f} docs/s  "
                        f"{rec.get('mb_per_s', 0):5.1f} MB/s"
                        + (f"  ETA {eta:.0f} s" if eta >= 0 else ""))
                elif level in ("warning", "error", "critical") or ev in (
                        "sync.start", "sync.report", "cdc.start", "cdc.caught_up",
                        "copy.target_back", "cdc.target_back"):
                    say(f"   sync: {rec.get('message', line.strip())}")


def run_step(stack, args, timeout=900):
    r = stack.migrate(*args, timeout=timeout)
    for line in r.stdout.splitlines():
        say("   " + line)
    if r.returncode != 0:
        tail = "\n".join(r.stderr.splitlines()[-15:])
        say(f"   migrate {args[0]} exited {r.returncode}:\n{tail}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.getcwd(), "demo-output"),
                    help="where the report, logs and endpoint file are kept")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="sample size factor (1.0: ~165k documents)")
    ap.add_argument("--rate", type=int, default=50,
                    help="writes per second of each live workload")
    args = ap.parse_args()
    for tool in ("migrate", "pgdaemon", "mongosim", "datagen"):
        path = os.path.join(os.environ.get("MG_BUILD_DIR", os.path.join(SOURCE_DIR, "build")),
                            "bin", tool)
        if not os.access(path, os.X_OK):
            say(f"demo: {path} is missing: run `make build` first (or `make demo`)")
            return 2
    os.environ.setdefault("MG_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
    os.makedirs(args.out, exist_ok=True)
    sweep_stale_roots()
    root = TempRoot()
    stack = MigrationStack(root, db="shop", say=lambda m: say("   " + m))
    sync = out = None
    ok = False
    started = time.monotonic()
    total = 7
    try:
        step(1, total, "source: mongosim with a sample shop")
        stack.start_source()
        n = stack.load_sample(scale=args.scale)
        say(f"   {n} documents in 4 collections")

        step(2, total, "target: a 3-node pgdaemon cluster (etcd, PostgreSQL 15, HAProxy)")
        up = stack.start_cluster(nodes=3, synchronous=True)
        for line in up.splitlines():
            say("   " + line)
        leader = wait_until(stack.healthy_primary, 120, "a healthy cluster")
        say(f"   primary: {leader}; the migration writes through HAProxy on 127.0.0.1:"
            f"{stack.write_port}")
        for coll in WORKLOAD_COLLS:
            stack.start_workload(coll, rate=args.rate, seconds=3600, scale=args.scale)
        say(f"   live writes: datagen workloads on shop.{' and shop.'.join(WORKLOAD_COLLS)}, "
            f"{args.rate} ops/s each (insert, update, replace, delete, transactions)")
        src, tgt = stack.source_uri, stack.target_uri

        step(3, total, "migrate init: census and tables")
        if run_step(stack, ["init", "--source", src, "--target", tgt, "--include",
                            "shop.*"]).returncode != 0:
            return 1

        step(4, total, "migrate sync --follow: bulk copy, then the change stream")
        sync = stack.start_migrate("--log-format=json", "sync", "--source", src, "--target",
                                   tgt, "--follow", "--progress-interval", "1s",
                                   stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        out = SyncOutput(sync.stderr, os.path.join(args.out, "sync.log"))
        out.start()
        wait_until(lambda: stack.phase() == "copied" or sync.poll() is not None, 1800,
                   "the copy")
        if sync.poll() is not None:
            say(f"   sync exited {sync.returncode}; see {args.out}/sync.log")
            return 1
        wait_until(lambda: (stack.lag_seconds() or 99) < 2 or sync.poll() is not None, 600,
                   "the change stream to catch up")
        out.show = False
        say(f"   caught up: the change stream is applied within "
            f"{stack.lag_seconds():.1f} s of the source, writes still coming")
        run_step(stack, ["status", "--target", tgt])

        step(5, total, "migrate validate: checksums, shadow reads, HTML report")
        shadow = stack.write_shadow_queries()
        shutil.copy(shadow, os.path.join(args.out, "shadow-queries.jsonl"))
        live_report = os.path.join(args.out, "validation-live.html")
        if run_step(stack, ["validate", "--source", src, "--target", tgt, "--full", "--shadow",
                            shadow, "--report-html", live_report]).returncode != 0:
            return 1
        say("   (under live writes a document can differ for a moment; a difference counts "
            "only if the next run sees it again)")
        clean = False
        for _ in range(20):
            r = stack.migrate("validate", "--source", src, "--target", tgt, "--changed",
                              "--json")
            if r.returncode != 0:
                say(r.stderr[-2000:])
                return 1
            if json.loads(r.stdout)["status"] == "clean":
                clean = True
                break
        if not clean:
            say("   no clean --changed run in 20 tries")
            return 1
        say("   validate --changed: clean")

        step(6, total, "migrate cutover: freeze, drain, verify, flip")
        endpoint = os.path.join(args.out, "endpoint")
        # pgdaemon runs wal_level=replica: no reverse capture (docs/cdc.md "The way back")
        r = run_step(stack, ["cutover", "--source", src, "--target", tgt, "--max-lag", "5s",
                             "--endpoint-file", endpoint, "--no-fallback"])
        if r.returncode != 0:
            return 1

        step(7, total, "after the cutover")
        stats = stack.stop_workloads()
        for coll, st in stats.items():
            say(f"   workload on shop.{coll}: {st.get('acknowledged_writes')} writes "
                f"acknowledged, {st.get('failures')} refused once the source was frozen")
        report = os.path.join(args.out, "validation.html")
        report_json = os.path.join(args.out, "validation.json")
        r = run_step(stack, ["validate", "--source", src, "--target", tgt, "--full", "--shadow",
                             shadow, "--report-html", report, "--report-json", report_json])
        if r.returncode != 0:
            return 1
        with open(report_json) as f:
            status = json.load(f)["status"]
        ok = status == "clean"
        say(f"   final validation on the frozen source: {status}")
        return 0 if ok else 1
    except Exception as e:  # noqa: BLE001 - the demo reports and tears down
        say(f"demo failed: {e}")
        return 1
    finally:
        if sync is not None:
            terminate(sync)
        if out is not None:
            out.join(5)
        say()
        say("== teardown")
        stack.close()
        root.cleanup()
        say(f"   everything stopped after {time.monotonic() - started:.0f} s")
        if ok:
            say(f"   report: {os.path.join(args.out, 'validation.html')}")
            say(f"   new endpoint: {os.path.join(args.out, 'endpoint')}; logs in {args.out}")
        else:
            say(f"   the demo did not complete; logs in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
