"""tests/integration/mgharness/pgbouncer.py - pgbouncer (Debian package) as a harness Service.

PgbouncerInstance pools connections to one PostgreSQL server: it listens
on 127.0.0.1:<free port>, forwards database `dbname` to (server_host,
server_port), and logs in to the server as `user` with `password` (the
client side uses scram-sha-256 with the same password, kept in a 0600
auth file in the instance directory, never on a command line). Default
pool_mode is transaction, the mode applications put in front of Postgres.

pgbouncer refuses to run as root, so when the tests run as root it runs as
the Postgres OS user (see postgres.default_os_user). `show(what)` runs an
admin console command (SHOW POOLS, SHOW STATS, ...) and returns the rows
as dicts.
"""

import os

from .ports import LOOPBACK, port_is_listening
from .postgres import PostgresInstance, default_os_user, write_owned
from .procs import RunAs
from .service import Service

PGBOUNCER_BINARY = os.environ.get("MG_PGBOUNCER_BINARY", "/usr/sbin/pgbouncer")


class PgbouncerInstance(Service):
    """PgbouncerInstance is one pgbouncer process.

    Attributes: host, port, server_host, server_port, dbname, user,
    pool_mode, pool_size, max_client_conn, config_path.
    """

    kind = "pgbouncer"
    start_timeout = 15.0

    def __init__(self, root=None, *, server_host=LOOPBACK, server_port, dbname, user="postgres",
                 password=None, pool_mode="transaction", pool_size=8, max_client_conn=1000,
                 name=None, os_user=None, port_picker=None):
        run_as = RunAs.named(os_user) if os_user else default_os_user()
        super().__init__(root, name=name, port_picker=port_picker, run_as=run_as)
        self.host = LOOPBACK
        self.port = None
        self.server_host = server_host
        self.server_port = int(server_port)
        self.dbname = dbname
        self.user = user
        self.password = password
        self.pool_mode = pool_mode
        self.pool_size = int(pool_size)
        self.max_client_conn = int(max_client_conn)
        self.config_path = os.path.join(self.dir, "pgbouncer.ini")
        self.auth_path = os.path.join(self.dir, "userlist.txt")

    def _assign_ports(self):
        self.port = self._pick_port()

    def _write_config(self):
        def q(s):
            return '"' + s.replace('"', '""') + '"'

        write_owned(self.auth_path, f"{q(self.user)} {q(self.password or '')}\n", 0o600,
                    self.run_as)
        write_owned(self.config_path, "\n".join([
            "[databases]",
            f"{self.dbname} = host={self.server_host} port={self.server_port} "
            f"dbname={self.dbname}",
            "[pgbouncer]",
            f"listen_addr = {self.host}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"auth_type = {'scram-sha-256' if self.password else 'trust'}",
            f"auth_file = {self.auth_path}",
            f"admin_users = {self.user}",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.pool_size}",
            f"max_client_conn = {self.max_client_conn}",
            f"max_db_connections = {self.pool_size}",
            "server_reset_query =",
            "ignore_startup_parameters = extra_float_digits",
            "logfile =",
            "",
        ]), 0o600, self.run_as)

    def _argv(self):
        return [PGBOUNCER_BINARY, self.config_path]

    def _ready(self):
        return port_is_listening(self.port, self.host)

    # connect(dbname=None, autocommit=True, **kw): a psycopg2 connection through pgbouncer
    # (the same attributes as a PostgresInstance: host, port, user, password, dbname)
    connect = PostgresInstance.connect

    def show(self, what):
        """show runs SHOW <what> on the admin console; returns a list of dicts."""
        conn = self.connect(dbname="pgbouncer")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SHOW {what}")
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, row)) for row in cur.fetchall()]
        finally:
            conn.close()
