#!/usr/bin/python3
"""tests/bench/bench_sync_pk.py - primary key before or after the bulk load?

Not a test: copies the same documents twice per round with `migrate sync
--copy-only --workers 2`, once into the table as init creates it (primary key
present during the load) and once with the key dropped and rebuilt after the
load, and prints both totals side by side. Usage (after `make build`):

    /usr/bin/python3 tests/bench/bench_sync_pk.py [N]
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from mgharness import ServiceStack, build_path, default_root  # noqa: E402
from mgharness.mongosim import MongosimInstance  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 400000
root = default_root()
with ServiceStack(root) as s:
    sim = s.add(MongosimInstance(root, name="src"))
    pg = s.postgres(extra_conf={"shared_buffers": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"})
    subprocess.run([build_path("bin", "datagen"),"generate","--uri",sim.uri,"--db","b","--coll","docs","--count",str(N),"--seed","1","--size-min","600","--size-max","1000"],check=True,capture_output=True)
    for rnd in range(2):
      for mode in ("pk_before", "pk_after"):
        pg.query("DROP SCHEMA IF EXISTS _migrate CASCADE; DROP SCHEMA IF EXISTS b CASCADE")
        subprocess.run([build_path("bin", "migrate"),"init","--source",sim.uri,"--target",pg.uri,"--include","b.*"],check=True,capture_output=True)
        if mode == "pk_after":
            pg.query("ALTER TABLE b.docs DROP CONSTRAINT docs_pkey")
        t=time.time()
        r=subprocess.run([build_path("bin", "migrate"),"sync","--source",sim.uri,"--target",pg.uri,"--copy-only","--workers","2","--json"],capture_output=True,text=True)
        rep=json.loads(r.stdout)
        t_copy=time.time()-t
        t_pk=0
        if mode == "pk_after":
            t=time.time(); pg.query("ALTER TABLE b.docs ADD PRIMARY KEY (_id)"); t_pk=time.time()-t
        print(mode, "copy", round(rep["seconds"],2), "s; PK build", round(t_pk,2), "s; total", round(rep["seconds"]+t_pk,2), "s =", round(N/(rep["seconds"]+t_pk)), "docs/s")
