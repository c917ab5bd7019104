"""Integration: `migrate cutover` puts no secret on any process's command line.

The verify step used to run `migrate validate --source URI --target URI` as
a child process, so both connection strings, passwords included, could be
read in /proc/<pid>/cmdline by any local user while the source was frozen
(issue 17, point 4). The cutover now runs the validate engine in-process.

The test gives the target a password (trust authentication ignores it), passes
the connection string through the environment, and uses a freeze hook to
start a watcher (one Python process, no fork per look) that records every
process whose command line holds the password, looking at all of /proc every
few milliseconds until the cutover ends. The watcher reads the password from
a file, so its own command line does not hold it.
"""

import uuid

WATCHER = """
import os, sys, time
pattern = open(sys.argv[1], "rb").read().strip()
seen, done = sys.argv[2], sys.argv[3]
me = str(os.getpid())
while not os.path.exists(done):
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read()
            if pattern in argv:
                shown = argv.replace(pattern, b"<password>").replace(b"\\0", b" ")
                with open(seen, "ab") as out:
                    out.write(pid.encode() + b": " + shown[:300] + b"\\n")
        except OSError:
            pass
    time.sleep(0.002)
"""

from test_cutover import cutover_args, prepare, state


def test_no_secret_on_any_command_line(mongo, dbname, postgres, migrate, tmp_path):
    prepare(mongo, postgres, migrate, dbname, count=500)
    secret = "Pw" + uuid.uuid4().hex
    sep = "&" if "?" in postgres.uri else "?"
    target = f"{postgres.uri}{sep}password={secret}"
    pattern = tmp_path / "pattern"
    pattern.write_text(secret + "\n")
    seen = tmp_path / "seen"
    done = tmp_path / "done"
    script = tmp_path / "watcher.py"
    script.write_text(WATCHER)
    watcher = f"/usr/bin/python3 {script} {pattern} {seen} {done} >/dev/null 2>&1 & sleep 0.3"
    args = [a for a in cutover_args(mongo, postgres, "--freeze", f"hook:{watcher}",
                                    "--verify", "changed")]
    # the target comes from the environment, not from the command line
    i = args.index("--target")
    del args[i:i + 2]
    try:
        r = migrate(*args, env={"MIGRATE_TARGET": target})
    finally:
        done.write_text("")
    assert r.rc == 0, r
    assert state(postgres)[1] == "done"
    assert secret not in r.stdout + r.stderr
    assert not seen.exists(), f"processes showed the password: {seen.read_text()}"
