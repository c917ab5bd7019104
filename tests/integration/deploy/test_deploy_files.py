"""tests/integration/deploy/test_deploy_files.py - the files under deploy/ agree with the binaries.

What an operator copies from deploy/ must work with the programs built
from this tree, so every claim a shipped file makes is checked against the
real program:

* every option on an ExecStart line (pgdaemon.service, migrate-sync.service,
  the etcd drop-in) is one the program lists in its --help;
* the example configs (node.json, migrate-sync.json) and environment files
  (pgdaemon.env, migrate.env, etcd.default) name only options the program
  knows, and the binary accepts them: run with the service's own command
  line and environment but unreachable peers, pgdaemon fails on etcd and
  migrate on the source, never on the configuration; the same run with one
  unknown key added fails with exit 2 naming that key (so the check can fail);
* etcd starts with the drop-in's flags and the example environment (its
  URLs moved to loopback) and reports the quota the drop-in sets;
* `haproxy -c` accepts deploy/haproxy.cfg, and its checks, timeouts and
  sections are the ones `pgdaemon cluster up` generates; its servers use
  node.json's ports;
* `systemd-analyze verify` accepts the units (skipped where the tool is
  missing).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from mgharness import ManagedProcess, build_path, pick_free_port, source_dir
from mgharness.procs import ROOT_TAG_VAR

DEPLOY = os.path.join(source_dir(), "deploy")
BINARIES = {"pgdaemon": build_path("bin", "pgdaemon"), "migrate": build_path("bin", "migrate")}
INSTALLED_PREFIX = "/usr/local/bin/"


# ---------------------------------------------------------------------------
# helpers


def deploy_path(*parts):
    return os.path.join(DEPLOY, *parts)


def parse_unit(path):
    """parse_unit returns {section: [(key, value), ...]} of a systemd unit or drop-in.

    Continuation lines (a trailing backslash) are joined; comments dropped.
    """
    sections, current, pending = {}, None, ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if pending:
                line = pending + " " + line.strip()
                pending = ""
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if stripped.endswith("\\"):
                pending = stripped[:-1].rstrip()
                continue
            if stripped.startswith("[") and stripped.endswith("]"):
                current = stripped[1:-1]
                sections.setdefault(current, [])
                continue
            key, _, value = stripped.partition("=")
            sections[current].append((key.strip(), value.strip()))
    assert not pending, f"{path}: the last line ends in a backslash"
    return sections


def exec_start(path):
    """exec_start returns the effective ExecStart= of a unit as an argv list."""
    values = [v for k, v in parse_unit(path).get("Service", []) if k == "ExecStart"]
    assert values, f"{path} has no ExecStart="
    assert values[-1], f"{path}: the last ExecStart= is empty"
    return shlex.split(values[-1])


def env_file(path):
    """env_file reads a systemd EnvironmentFile (KEY=VALUE, quotes removed) into a dict."""
    env = {}
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), \
                f"{path}:{n}: not KEY=VALUE: {line!r}"
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            env[key] = value
    return env


def json_keys(obj, prefix=""):
    """json_keys lists the dotted key of every leaf of a JSON object (lists are leaves)."""
    keys = []
    for k, v in obj.items():
        full = prefix + k
        if isinstance(v, dict):
            keys += json_keys(v, full + ".")
        else:
            keys.append(full)
    return keys


def run(argv, env=None, timeout=60):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def help_text(binary, *command):
    """help_text returns `binary COMMAND --help` (stdout and stderr; some commands use stderr)."""
    out = run([binary, *command, "--help"])
    return out.stdout + out.stderr


def flag_in_help(flag, text):
    """flag_in_help: --name (or --no-name) is listed, plainly or as --[no-]name."""
    name = flag[2:].split("=", 1)[0]
    candidates = {"--" + name, "--[no-]" + name}
    if name.startswith("no-"):
        candidates.add("--[no-]" + name[3:])
    return any(re.search(re.escape(c) + r"(?![A-Za-z0-9-])", text) for c in candidates)


def flag_of_key(key):
    """flag_of_key maps a config key (etcd.ca_file) to its flag (--etcd-ca-file), as core does."""
    return "--" + key.replace(".", "-").replace("_", "-")


def clean_env(prefix):
    """clean_env is os.environ without variables of the program's prefix (MIGRATE_, PGDAEMON_)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefix)}


def closed_port():
    """closed_port returns a loopback port nothing listens on (picked free, never bound)."""
    return pick_free_port()


def with_extra_key(src, dst, key):
    with open(src) as f:
        conf = json.load(f)
    conf[key] = 1
    with open(dst, "w") as f:
        json.dump(conf, f)
    return dst


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module", autouse=True)
def binaries_built():
    for name, path in BINARIES.items():
        if not os.access(path, os.X_OK):
            pytest.fail(f"{name} is not built at {path} (set MG_BUILD_DIR)")


@pytest.fixture
def workdir(tmp_root):
    """workdir is a 0755 directory (Postgres' OS user must be able to traverse it)."""
    d = tmp_root.mkdtemp("deploy")
    os.chmod(d, 0o755)
    return d


# ---------------------------------------------------------------------------
# ExecStart lines against --help


@pytest.mark.parametrize("unit,program,command", [
    ("pgdaemon.service", "pgdaemon", "run"),
    ("migrate-sync.service", "migrate", "sync"),
])
def test_execstart_options_are_in_help(unit, program, command):
    argv = exec_start(deploy_path(unit))
    assert argv[0] == INSTALLED_PREFIX + program, argv
    assert argv[1] == command, argv
    text = help_text(BINARIES[program], command)
    assert "usage:" in text, text
    flags = [a for a in argv[2:] if a.startswith("--")]
    assert flags, f"{unit}: no options on the ExecStart line"
    for flag in flags:
        assert flag_in_help(flag, text), f"{unit}: {flag} is not in `{program} {command} --help`"
    # the check itself can fail
    assert not flag_in_help("--no-such-option", text)


def test_etcd_dropin_flags_are_in_etcd_help():
    argv = exec_start(deploy_path("etcd.service.d", "10-pgdaemon.conf"))
    assert argv[0] == "/usr/bin/etcd", argv
    out = run(["etcd", "--help"])
    text = out.stdout + out.stderr
    flags = [a for a in argv[1:] if a.startswith("--")]
    assert {"--auto-compaction-retention=1h", "--quota-backend-bytes=2147483648"} <= set(flags)
    for flag in flags:
        assert flag_in_help(flag, text), f"etcd has no {flag}"
    for key in env_file(deploy_path("etcd.default")):
        assert key.startswith("ETCD_"), key
        flag = "--" + key[len("ETCD_"):].lower().replace("_", "-")
        assert flag_in_help(flag, text), f"etcd.default: {key} is no etcd flag ({flag})"


# ---------------------------------------------------------------------------
# pgdaemon: node.json + pgdaemon.env


def test_pgdaemon_config_keys_are_known_options():
    text = help_text(BINARIES["pgdaemon"], "run")
    with open(deploy_path("node.json")) as f:
        conf = json.load(f)
    for key in json_keys(conf):
        assert flag_in_help(flag_of_key(key), text), f"node.json: {key} is not a pgdaemon option"
    env = env_file(deploy_path("pgdaemon.env"))
    assert set(env) == {"PGDAEMON_POSTGRES_SUPERUSER_PASSWORD",
                        "PGDAEMON_POSTGRES_REPLICATION_PASSWORD", "PGDAEMON_CLUSTER_SECRET"}
    for var in env:
        assert f"[env {var}]" in text, f"pgdaemon.env: {var} is not read by pgdaemon run"
    # secrets stay out of the world-readable config
    assert "superuser_password" not in conf.get("postgres", {})
    assert "cluster_secret" not in conf


def pgdaemon_service_run(workdir, config_path):
    """pgdaemon_service_run runs the unit's ExecStart with its EnvironmentFile, etcd unreachable."""
    argv = exec_start(deploy_path("pgdaemon.service"))
    argv[0] = BINARIES["pgdaemon"]
    argv[argv.index("--config") + 1] = config_path
    env = clean_env("PGDAEMON_")
    env.update(env_file(deploy_path("pgdaemon.env")))
    env["PGDAEMON_LOG_FORMAT"] = "json"
    # the data directory's parent must exist here; etcd is a port nothing listens on
    argv += ["--data-dir", os.path.join(workdir, "data"),
             "--etcd-endpoints", f"http://127.0.0.1:{closed_port()}"]
    return run(argv, env=env, timeout=60)


def test_pgdaemon_accepts_node_json_and_fails_only_on_etcd(workdir):
    out = pgdaemon_service_run(workdir, deploy_path("node.json"))
    assert out.returncode == 1, out.stderr
    assert "etcd is unreachable at start" in out.stderr, out.stderr
    assert "unknown option" not in out.stderr and "invalid value" not in out.stderr, out.stderr
    assert not os.path.exists(os.path.join(workdir, "data")), "a data directory was created"
    # the same run with one unknown key fails on the configuration, naming it
    bad = with_extra_key(deploy_path("node.json"), os.path.join(workdir, "bad.json"),
                         "no_such_key")
    out = pgdaemon_service_run(workdir, bad)
    assert out.returncode == 2, out.stderr
    assert 'unknown option "no_such_key"' in out.stderr, out.stderr


# ---------------------------------------------------------------------------
# migrate: migrate-sync.json + migrate.env


def test_migrate_config_keys_are_known_options():
    text = help_text(BINARIES["migrate"], "sync")
    with open(deploy_path("migrate-sync.json")) as f:
        conf = json.load(f)
    for key in json_keys(conf):
        assert flag_in_help(flag_of_key(key), text), \
            f"migrate-sync.json: {key} is not a `migrate sync` option"
    env = env_file(deploy_path("migrate.env"))
    assert {"MIGRATE_SOURCE", "MIGRATE_TARGET"} <= set(env)
    for var in env:
        assert f"[env {var}]" in text, f"migrate.env: {var} is not read by migrate sync"
    # and the unit sets MONGOC_DISABLE_SHM for libmongoc
    unit = parse_unit(deploy_path("migrate-sync.service"))
    assert ("Environment", "MONGOC_DISABLE_SHM=1") in unit["Service"]


def migrate_service_run(config_path):
    """migrate_service_run runs the unit's ExecStart with its EnvironmentFile, source unreachable."""
    argv = exec_start(deploy_path("migrate-sync.service"))
    argv[0] = BINARIES["migrate"]
    argv[argv.index("--config") + 1] = config_path
    env = clean_env("MIGRATE_")
    env.update(env_file(deploy_path("migrate.env")))
    env["MIGRATE_LOG_FORMAT"] = "json"
    env["MONGOC_DISABLE_SHM"] = "1"
    # flags win over the environment: point both ends at ports nothing listens on
    argv += ["--source", f"mongodb://127.0.0.1:{closed_port()}/?serverSelectionTimeoutMS=500",
             "--target", f"postgresql://migrate@127.0.0.1:{closed_port()}/app?connect_timeout=2"]
    return run(argv, env=env, timeout=60)


def test_migrate_accepts_sync_config_and_fails_only_on_the_source(tmp_root):
    out = migrate_service_run(deploy_path("migrate-sync.json"))
    assert out.returncode == 3, out.stderr
    assert "could not connect to source" in out.stderr, out.stderr
    assert "unknown option" not in out.stderr and "invalid value" not in out.stderr, out.stderr
    bad = with_extra_key(deploy_path("migrate-sync.json"),
                         os.path.join(tmp_root.mkdtemp("deploy"), "bad.json"), "no_such_key")
    out = migrate_service_run(bad)
    assert out.returncode == 2, out.stderr
    assert 'unknown option "no_such_key"' in out.stderr, out.stderr


# ---------------------------------------------------------------------------
# etcd: the drop-in's flags and the example environment start a member


def http_text(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def test_etcd_starts_with_dropin_and_example_environment(tmp_root):
    argv = exec_start(deploy_path("etcd.service.d", "10-pgdaemon.conf"))
    argv = [shutil.which("etcd") or "etcd"] + [a for a in argv[1:] if a != "$DAEMON_ARGS"]
    d = tmp_root.mkdtemp("etcd-deploy")
    client, peer = pick_free_port(), pick_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    example = env_file(deploy_path("etcd.default"))
    # the member's own addresses move to loopback; every other setting stays
    moved = {
        "ETCD_DATA_DIR": os.path.join(d, "data"),
        "ETCD_LISTEN_PEER_URLS": f"http://127.0.0.1:{peer}",
        "ETCD_LISTEN_CLIENT_URLS": f"http://127.0.0.1:{client}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://127.0.0.1:{client}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://127.0.0.1:{peer}",
        "ETCD_INITIAL_CLUSTER": f"{example['ETCD_NAME']}=http://127.0.0.1:{peer}",
    }
    assert set(moved) <= set(example), "etcd.default lacks a member URL setting"
    env.update(example)
    env.update(moved)
    log = os.path.join(d, "etcd.log")
    proc = ManagedProcess(argv, log_path=log, cwd=d, env=env, tag=tmp_root.path,
                          on_spawn=tmp_root.record_process)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and proc.running():
            status, body = http_text(f"http://127.0.0.1:{client}/health")
            if status == 200 and '"true"' in body:
                break
            time.sleep(0.2)
        with open(log) as f:
            text = f.read()
        assert status == 200, f"etcd did not become healthy; log:\n{text[-3000:]}"
        # every ETCD_* variable was used, none shadowed or unknown
        assert "unrecognized environment variable" not in text, text[-3000:]
        assert "shadowed by corresponding command-line flag" not in text, text[-3000:]
        # the quota the drop-in sets is the one in force
        status, metrics = http_text(f"http://127.0.0.1:{client}/metrics")
        assert status == 200
        quota = re.search(r"^etcd_server_quota_backend_bytes (\S+)$", metrics, re.M)
        assert quota and float(quota.group(1)) == 2147483648, quota
        # and the logs are zap's JSON lines
        assert '"level":"info"' in text, text[-2000:]
    finally:
        proc.stop()


# ---------------------------------------------------------------------------
# HAProxy


def test_haproxy_accepts_the_example():
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is not installed (scripts/setup-deps.sh installs it)"
    out = run([haproxy, "-c", "-f", deploy_path("haproxy.cfg")])
    assert out.returncode == 0, out.stdout + out.stderr


def haproxy_sections(text):
    """haproxy_sections returns {section header: [normalised lines]}, comments dropped.

    Addresses, ports and server names are replaced by placeholders, so a
    generated file and the example compare by shape.
    """
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not raw[0].isspace():
            current = line
            sections[current] = []
            continue
        line = re.sub(r"^bind \S+:\d+$", "bind ADDR:PORT", line)
        line = re.sub(r"^server \S+ \S+:\d+ check port \d+$", "server NAME HOST:PORT check port P",
                      line)
        line = re.sub(r"^stats socket \S+ ", "stats socket PATH ", line)
        if line not in sections[current]:
            sections[current].append(line)
    return sections


def test_haproxy_example_matches_what_cluster_up_generates(tmp_root, workdir):
    d = os.path.join(workdir, "c")
    env = dict(os.environ)
    env[ROOT_TAG_VAR] = tmp_root.path
    up = run([BINARIES["pgdaemon"], "cluster", "up", "--nodes", 1, "--dir", d, "--timeout", 60,
              "--pg-parameter", "fsync=off", "--pg-parameter", "dynamic_shared_memory_type=mmap"],
             env=env, timeout=180)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with open(os.path.join(d, "haproxy.cfg")) as f:
            generated = haproxy_sections(f.read())
    finally:
        if os.path.exists(os.path.join(d, "cluster.json")):
            run([BINARIES["pgdaemon"], "cluster", "down", "--dir", d], env=env, timeout=180)
    with open(deploy_path("haproxy.cfg")) as f:
        shipped_text = f.read()
    shipped = haproxy_sections(shipped_text)
    assert list(shipped) == list(generated), (list(shipped), list(generated))
    for section, lines in generated.items():
        if section == "global":
            # the example adds the process user; everything generated stays
            missing = [x for x in lines if x not in shipped[section]]
        else:
            missing = sorted(set(lines) ^ set(shipped[section]))
        assert not missing, f"[{section}] differs from the generated file: {missing}"
    # the servers are the nodes of node.json: its address, Postgres port and HTTP port
    with open(deploy_path("node.json")) as f:
        node = json.load(f)
    servers = re.findall(r"^\s*server \S+ (\S+):(\d+) check port (\d+)$", shipped_text, re.M)
    assert servers
    assert all(int(p) == node["pg_port"] and int(c) == node["http_port"] for _, p, c in servers)
    assert node["address"] in {h for h, _, _ in servers}
    # clients reach the nodes through HAProxy: the servers' hosts may connect
    # to each other (pg_rewind, CHECKPOINT on a new primary) and replicate
    hosts = {h for h, _, _ in servers}
    assert hosts <= set(node["postgres"]["client_addresses"])
    assert hosts <= set(node["postgres"]["replication_addresses"])


# ---------------------------------------------------------------------------
# systemd


VERIFY_PROBLEM = re.compile(r"unknown|failed|invalid|not executable|missing|ignoring|bad",
                            re.I)


def verify(paths):
    out = run(["systemd-analyze", "verify", *paths], timeout=60)
    text = out.stdout + out.stderr
    problems = [line for line in text.splitlines() if VERIFY_PROBLEM.search(line)]
    return out.returncode, problems, text


def test_systemd_analyze_verify(tmp_root):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    d = tmp_root.mkdtemp("units")
    units = []
    for unit, program in [("pgdaemon.service", "pgdaemon"), ("migrate-sync.service", "migrate")]:
        with open(deploy_path(unit)) as f:
            text = f.read()
        assert INSTALLED_PREFIX + program in text
        # verify checks that the command exists: point it at the build
        with open(os.path.join(d, unit), "w") as f:
            f.write(text.replace(INSTALLED_PREFIX + program, BINARIES[program]))
        units.append(os.path.join(d, unit))
    package_unit = "/lib/systemd/system/etcd.service"
    if os.path.exists(package_unit):
        # the drop-in is verified on top of Debian's unit, found next to it
        shutil.copy(package_unit, os.path.join(d, "etcd.service"))
        os.makedirs(os.path.join(d, "etcd.service.d"))
        shutil.copy(deploy_path("etcd.service.d", "10-pgdaemon.conf"),
                    os.path.join(d, "etcd.service.d", "10-pgdaemon.conf"))
        units.append(os.path.join(d, "etcd.service"))
    rc, problems, text = verify(units)
    assert rc == 0 and not problems, text
    # the check can fail: a misspelt key is reported
    with open(os.path.join(d, "pgdaemon.service")) as f:
        text = f.read()
    with open(os.path.join(d, "broken.service"), "w") as f:
        f.write(text.replace("KillMode=mixed", "KillMode=mixed\nRestartSecs=5s"))
    rc, problems, text = verify([os.path.join(d, "broken.service")])
    assert problems, text
