"""tests/integration/mgharness/postgres.py - a throwaway PostgreSQL 15 on a free port.

initdb runs once per instance (trust auth by default; with password= the
superuser gets that password and TCP connections need scram-sha-256). The
server listens on 127.0.0.1:<free port> with its unix socket in the
instance directory and fsync=off. Settings the harness owns are written to
<datadir>/mgharness.conf, included from postgresql.conf, so a tool that
later starts this data directory itself (pg_ctl, pgdaemon) gets the same
port and socket directory.

Postgres refuses to run as root: when the tests run as root, initdb, the
server and run_tool() run as the OS user "postgres" ($MG_PG_OS_USER
overrides), and the instance directory is chowned to it. Otherwise they
run as the current user.

stop() is a fast shutdown (SIGINT), kill9() SIGKILLs the postmaster and
all its backends at once (a node crash); start() may be called again after
either, on the same port and data directory.
"""

import os
import signal

import psycopg2

from .errors import HarnessError, ServiceStartError
from .ports import LOOPBACK
from .procs import ManagedProcess, RunAs
from .service import Service

PG_BIN_DIR = os.environ.get("MG_PG_BINDIR", "/usr/lib/postgresql/15/bin")
HARNESS_CONF = "mgharness.conf"
TOOL_TIMEOUT = 120.0


def default_os_user():
    """default_os_user returns the RunAs for Postgres: 'postgres' when root, else None."""
    if os.geteuid() != 0:
        return None
    return RunAs.named(os.environ.get("MG_PG_OS_USER", "postgres"))


def write_owned(path, text, mode, run_as):
    """write_owned writes text to path with mode, owned by run_as (a RunAs, or None: us)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if run_as is not None and run_as.uid != os.geteuid():
        os.chown(path, run_as.uid, run_as.gid)


def conf_value(value):
    """conf_value renders a Python value as a postgresql.conf value."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class ToolResult:
    """ToolResult is the outcome of run_tool: returncode and combined output."""

    def __init__(self, argv, returncode, output):
        self.argv = argv
        self.returncode = returncode
        self.output = output

    def check(self):
        """check returns self, or raises HarnessError when the tool failed."""
        if self.returncode != 0:
            raise HarnessError(f"{' '.join(self.argv)} exited {self.returncode}:\n{self.output}")
        return self


class PostgresInstance(Service):
    """PostgresInstance is one PostgreSQL server for a test.

    Attributes: host, port, user, password, dbname, datadir, socket_dir,
    bin_dir, log_path, dir, pid (postmaster), run_as.
    Properties: dsn, uri. Methods: start, stop, kill9, close, connect,
    query, run_tool, pids, log_tail.
    """

    kind = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: does not wait for clients
    start_timeout = 60.0

    def __init__(self, root=None, *, name=None, password=None, user="postgres",
                 extra_conf=None, initdb_args=(), bin_dir=None, port_picker=None,
                 os_user=None):
        """__init__ prepares an instance directory; nothing runs until start().

        extra_conf: dict of postgresql.conf settings (Python values).
        initdb_args: extra initdb arguments. os_user: OS user name to run as
        (default: see default_os_user).
        """
        run_as = RunAs.named(os_user) if os_user else default_os_user()
        super().__init__(root, name=name, port_picker=port_picker, run_as=run_as)
        self.host = LOOPBACK
        self.port = None
        self.user = user
        self.password = password
        self.dbname = "postgres"
        self.bin_dir = bin_dir or PG_BIN_DIR
        self.datadir = os.path.join(self.dir, "data")
        self.socket_dir = self.dir
        self.extra_conf = dict(extra_conf or {})
        self.initdb_args = list(initdb_args)

    # ---- connection details ---------------------------------------------
    @property
    def dsn(self):
        """dsn is a libpq key=value connection string for the TCP listener."""
        parts = [f"host={self.host}", f"port={self.port}", f"user={self.user}",
                 f"dbname={self.dbname}"]
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)

    @property
    def uri(self):
        """uri is the postgresql:// URI of the TCP listener."""
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}"

    def connect(self, dbname=None, autocommit=True, **kwargs):
        """connect returns a new psycopg2 connection (autocommit by default); caller closes it."""
        params = dict(host=self.host, port=self.port, user=self.user,
                      dbname=dbname or self.dbname, connect_timeout=5)
        if self.password:
            params["password"] = self.password
        params.update(kwargs)
        conn = psycopg2.connect(**params)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, params=None, dbname=None):
        """query runs one statement on a fresh connection; returns all rows (or None)."""
        conn = self.connect(dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else None
        finally:
            conn.close()

    # ---- tools ------------------------------------------------------------
    def tool_env(self):
        """tool_env returns the environment for Postgres programs (PG* point at this instance)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", HOME=self.dir, PGHOST=self.host,
                   PGUSER=self.user, PGDATABASE=self.dbname)
        if self.port is not None:
            env["PGPORT"] = str(self.port)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def run_tool(self, tool, *args, timeout=TOOL_TIMEOUT):
        """run_tool runs bin_dir/tool as the instance's OS user; returns a ToolResult.

        Output goes to <dir>/<tool>.log as well. Raises HarnessError on timeout.
        """
        log = os.path.join(self.dir, f"{tool}.log")
        start = os.path.getsize(log) if os.path.exists(log) else 0
        proc = ManagedProcess([os.path.join(self.bin_dir, tool), *args], log_path=log,
                              cwd=self.dir, env=self.tool_env(), run_as=self.run_as,
                              on_spawn=self.root.record_process, tag=self.root.path)
        try:
            status = proc.wait(timeout)
        except Exception:
            proc.kill9()
            raise HarnessError(f"{tool} did not finish within {timeout}s")
        with open(log, "rb") as f:
            f.seek(start)
            output = f.read().decode("utf-8", "replace")
        return ToolResult(proc.argv, status, output)

    # ---- Service hooks ----------------------------------------------------
    def _prepare(self):
        """_prepare runs initdb and hooks mgharness.conf into postgresql.conf."""
        args = ["-D", self.datadir, "-U", self.user, "-E", "UTF8", "--locale=C",
                "--data-checksums", "--no-sync", "--auth-local=trust"]
        pwfile = None
        if self.password:
            pwfile = os.path.join(self.dir, "pwfile")
            self._write_owned(pwfile, self.password + "\n", 0o600)
            args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth-host=trust"]
        try:
            result = self.run_tool("initdb", *args, *self.initdb_args)
        finally:
            if pwfile:
                os.unlink(pwfile)
        if result.returncode != 0:
            raise ServiceStartError(f"{self.name}: initdb failed ({result.returncode}):\n"
                                    f"{result.output[-4000:]}")
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write(f"\ninclude_if_exists = '{HARNESS_CONF}'\n")

    def _assign_ports(self):
        self.port = self._pick_port()

    def _write_config(self):
        """_write_config writes mgharness.conf with port, sockets and extra_conf."""
        settings = {
            "listen_addresses": self.host,
            "port": self.port,
            "unix_socket_directories": self.socket_dir,
            "fsync": False,
            # Segments in <datadir>/pg_dynshmem rather than /dev/shm, so a
            # postmaster a test kills with SIGKILL leaves nothing outside
            # the instance directory the harness removes.
            "dynamic_shared_memory_type": "mmap",
            "logging_collector": False,
            "log_line_prefix": "%m [%p] ",
            # the cutover makes a logical slot for the way back (docs/cutover.md)
            "wal_level": "logical",
        }
        settings.update(self.extra_conf)
        text = "# written by mgharness; rewritten on every start\n" + "".join(
            f"{key} = {conf_value(value)}\n" for key, value in settings.items())
        self._write_owned(os.path.join(self.datadir, HARNESS_CONF), text, 0o600)

    def _write_owned(self, path, text, mode):
        """_write_owned writes text to path, owned by the instance's OS user."""
        write_owned(path, text, mode, self.run_as)

    def _argv(self):
        return [os.path.join(self.bin_dir, "postgres"), "-D", self.datadir]

    def _env(self):
        return self.tool_env()

    def _ready(self):
        try:
            conn = self.connect(connect_timeout=2)
        except psycopg2.Error:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except psycopg2.Error:
            return False
        finally:
            conn.close()
