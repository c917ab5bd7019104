"""tests/integration/mgharness/jepsen.py - a Jepsen-style checker for the HA tests.

While a scenario runs, a `Jepsen` records

* every /primary answer of every node: one observer thread per node polls
  GET /primary (every 50 ms by default) and logs (node, sent, received,
  status), monotonic seconds;
* every write of every writer: each writer thread inserts unique ids into
  one table, through HAProxy or straight at one node, and logs the
  operation with its invocation and completion time and its outcome: `ok`
  (the commit was acknowledged; the answer also names the server address,
  port and WAL timeline it was written on), `fail` (definitely not
  written: the connection or the statement was refused before the commit
  was sent), or `info` (indeterminate: the connection broke while the
  commit may have been in flight).

`check(reader)` then reads the table back (reader() returns a connection
to the node that leads after the scenario) and reports, as a Report:

* **fork on /primary** - two nodes whose runs of 200 answers overlap in
  time (a run lasts from the first 200's request to the last 200's answer
  with no other answer in between), i.e. at some instant both could claim
  to be primary;
* **fork in the writes** - two writers' views of who takes writes
  alternate: a write acknowledged by (server, timeline) X completed before
  one acknowledged by Y was sent, and another one of Y completed before
  one of X was sent. One failover or switchover is X then Y (and a node
  that comes back as primary again does so on a new timeline);
* **loss** - an acknowledged id missing from the table after the scenario
  (ids whose write was indeterminate may be present or not; ids never
  written must not appear).

`assert_ok()` raises AssertionError with the evidence (first few of each).
Writers and observers can run inside a network namespace (writers_in /
observers_in: an object with an enter() context manager, e.g. an
mgharness.netns.Endpoint), so clients can be cut apart from the observer.
"""

import contextlib
import threading
import time
from dataclasses import dataclass, field

import psycopg2

from .errors import HarnessError

POLL_INTERVAL = 0.05
HTTP_TIMEOUT = 0.5


def _mono():
    return time.monotonic()


@dataclass
class Answer:
    """Answer is one GET /primary: node, monotonic send and receive times, status (None: no answer)."""

    node: str
    sent: float
    received: float
    status: int


@dataclass
class Op:
    """Op is one write: writer, id, invoke/complete times, outcome and where it landed."""

    writer: str
    id: int
    invoked: float
    completed: float = None
    outcome: str = None  # ok | fail | info
    server: str = None   # "addr:port" of the Postgres that acknowledged it
    timeline: str = None
    error: str = None


@dataclass
class Report:
    """Report is what check() found; ok is True when there is neither fork nor loss."""

    answers: int = 0
    ops: int = 0
    acknowledged: int = 0
    indeterminate: int = 0
    primary_forks: list = field(default_factory=list)
    write_forks: list = field(default_factory=list)
    lost: list = field(default_factory=list)
    phantom: list = field(default_factory=list)
    servers: dict = field(default_factory=dict)  # (server, timeline) -> acknowledged count

    @property
    def ok(self):
        return not (self.primary_forks or self.write_forks or self.lost or self.phantom)

    def summary(self):
        return (f"{self.answers} /primary answers, {self.ops} writes ({self.acknowledged} "
                f"acknowledged, {self.indeterminate} indeterminate) on {self.servers}; "
                f"/primary forks {len(self.primary_forks)}, write forks {len(self.write_forks)}, "
                f"lost {len(self.lost)}, phantom {len(self.phantom)}")


def _http_status(host, port, path, timeout):
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class _Observer(threading.Thread):
    """_Observer polls one node's /primary and appends Answers to the Jepsen log."""

    def __init__(self, owner, node, host, port):
        super().__init__(daemon=True, name=f"jepsen-observe-{node}")
        self.owner, self.node, self.host, self.port = owner, node, host, port

    def run(self):
        with self.owner._context(self.owner.observers_in):
            while not self.owner._stop.is_set():
                t0 = _mono()
                status = _http_status(self.host, self.port, "/primary", HTTP_TIMEOUT)
                self.owner._record_answer(Answer(self.node, t0, _mono(), status))
                self.owner._stop.wait(max(0.0, self.owner.poll_interval - (_mono() - t0)))


class _Writer(threading.Thread):
    """_Writer inserts fresh ids through one DSN and logs every operation."""

    def __init__(self, owner, name, dsn):
        super().__init__(daemon=True, name=f"jepsen-write-{name}")
        self.owner, self.label, self.dsn = owner, name, dsn

    def _connect(self):
        conn = psycopg2.connect(connect_timeout=2, **self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '20s'")
        return conn

    def run(self):
        conn = None
        with self.owner._context(self.owner.writers_in):
            while not self.owner._stop.is_set():
                op = Op(self.label, self.owner._next_id(), _mono())
                sent = False
                try:
                    if conn is None:
                        conn = self._connect()
                    with conn.cursor() as cur:
                        sent = True
                        cur.execute(
                            f"INSERT INTO {self.owner.table} (id, writer) VALUES (%s, %s) "
                            "RETURNING host(inet_server_addr()) || ':' || inet_server_port(), "
                            "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                            (op.id, self.label))
                        op.server, op.timeline = cur.fetchone()
                    # a cancelled wait for a synchronous standby still reports success, with
                    # a warning: committed locally, maybe not replicated - not acknowledged
                    waited = [n for n in conn.notices if "synchronous replication" in n]
                    del conn.notices[:]
                    op.outcome = "info" if waited else "ok"
                    if waited:
                        op.error = waited[0].strip()
                except psycopg2.Error as e:
                    op.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    # refused before the commit was sent, or an error Postgres reported for
                    # the statement itself: not written; a broken connection mid-statement: unknown
                    op.outcome = "info" if sent and isinstance(e, (psycopg2.OperationalError,
                                                                   psycopg2.InterfaceError)) \
                        else "fail"
                    try:
                        if conn is not None:
                            conn.close()
                    except psycopg2.Error:
                        pass
                    conn = None
                op.completed = _mono()
                self.owner._record_op(op)
                self.owner._stop.wait(0.1 if op.outcome != "ok" else self.owner.write_interval)
        if conn is not None:
            conn.close()


class Jepsen:
    """Jepsen records /primary answers and writes during a scenario and checks them.

    observe: {node name: (host, http_port)}; writers: {writer name: psycopg2
    connect keyword arguments}; the table (id bigint primary key, writer
    text) must exist before start(). poll_interval and write_interval in
    seconds. writers_in / observers_in: None or an object whose enter()
    makes the calling thread use a network namespace.
    """

    def __init__(self, observe, writers, table="jepsen", poll_interval=POLL_INTERVAL,
                 write_interval=0.02, writers_in=None, observers_in=None):
        self.observe = dict(observe)
        self.writers = dict(writers)
        self.table = table
        self.poll_interval = poll_interval
        self.write_interval = write_interval
        self.writers_in = writers_in
        self.observers_in = observers_in
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._answers = []
        self._ops = []
        self._id = 0
        self._threads = []
        self.started = False

    @staticmethod
    def _context(where):
        return where.enter() if where is not None else contextlib.nullcontext()

    def _next_id(self):
        with self._lock:
            self._id += 1
            return self._id

    def _record_answer(self, answer):
        with self._lock:
            self._answers.append(answer)

    def _record_op(self, op):
        with self._lock:
            self._ops.append(op)

    @staticmethod
    def create_table(conn, table="jepsen"):
        """create_table makes the table the writers insert into (conn: autocommit)."""
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, writer text)")

    def start(self):
        """start launches one observer per node and one writer per DSN."""
        if self.started:
            raise HarnessError("jepsen: started twice")
        self.started = True
        for node, (host, port) in self.observe.items():
            self._threads.append(_Observer(self, node, host, port))
        for name, dsn in self.writers.items():
            self._threads.append(_Writer(self, name, dsn))
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        """stop ends every thread (bounded; a writer stuck in a statement has 30 s)."""
        self._stop.set()
        for t in self._threads:
            t.join(30)

    # ---- what the scenario can look at meanwhile ------------------------------
    def acknowledged(self, writer=None):
        """acknowledged returns how many writes were acknowledged (by one writer, or all)."""
        with self._lock:
            return sum(1 for o in self._ops if o.outcome == "ok" and writer in (None, o.writer))

    def acknowledged_by(self, host, within):
        """acknowledged_by counts writes host acknowledged in the last `within` seconds."""
        since = _mono() - within
        with self._lock:
            return sum(1 for o in self._ops if o.outcome == "ok" and o.completed >= since
                       and o.server.rsplit(":", 1)[0] == host)

    def primaries_now(self, window=0.5):
        """primaries_now returns the nodes whose latest answer, within window seconds, was 200."""
        latest = {}
        now = _mono()
        with self._lock:
            for a in self._answers:
                latest[a.node] = a
        return sorted(n for n, a in latest.items() if a.status == 200 and now - a.received <= window)

    def wait_writes(self, more, timeout, writer=None):
        """wait_writes waits until `more` further writes are acknowledged; raises on timeout."""
        start = self.acknowledged(writer)
        deadline = _mono() + timeout
        while _mono() < deadline:
            if self.acknowledged(writer) >= start + more:
                return
            time.sleep(0.1)
        raise AssertionError(f"jepsen: fewer than {more} writes acknowledged within {timeout}s "
                             f"(last errors: {self.last_errors()})")

    def last_errors(self, n=3):
        with self._lock:
            return [f"{o.writer}: {o.error}" for o in self._ops if o.error][-n:]

    # ---- the verdict -----------------------------------------------------------
    def _primary_runs(self):
        """_primary_runs returns [(node, start, end)] runs of consecutive 200 answers."""
        runs = []
        by_node = {}
        with self._lock:
            answers = list(self._answers)
        for a in sorted(answers, key=lambda a: a.sent):
            by_node.setdefault(a.node, []).append(a)
        for node, lst in by_node.items():
            start = end = None
            for a in lst:
                if a.status == 200:
                    start = a.sent if start is None else start
                    end = a.received
                elif start is not None:
                    runs.append((node, start, end))
                    start = None
            if start is not None:
                runs.append((node, start, end))
        return runs

    def _write_forks(self, ops):
        """_write_forks returns pairs of (server, timeline) groups whose writes alternate in time."""
        groups = {}
        for o in ops:
            if o.outcome == "ok":
                g = groups.setdefault((o.server, o.timeline), [float("inf"), float("-inf")])
                g[0] = min(g[0], o.completed)  # earliest completion
                g[1] = max(g[1], o.invoked)    # latest invocation
        forks = []
        keys = sorted(groups)
        for i, x in enumerate(keys):
            for y in keys[i + 1:]:
                if groups[x][0] < groups[y][1] and groups[y][0] < groups[x][1]:
                    forks.append((x, y))
        return forks, {k: sum(1 for o in ops if o.outcome == "ok" and (o.server, o.timeline) == k)
                       for k in keys}

    def check(self, reader):
        """check stops the threads, reads the table through reader() and returns a Report."""
        self.stop()
        report = Report()
        with self._lock:
            ops = list(self._ops)
            report.answers = len(self._answers)
        report.ops = len(ops)
        report.acknowledged = sum(1 for o in ops if o.outcome == "ok")
        report.indeterminate = sum(1 for o in ops if o.outcome == "info")
        runs = self._primary_runs()
        for i, (n1, s1, e1) in enumerate(runs):
            for n2, s2, e2 in runs[i + 1:]:
                if n1 != n2 and s1 <= e2 and s2 <= e1:
                    report.primary_forks.append(((n1, round(s1, 3), round(e1, 3)),
                                                 (n2, round(s2, 3), round(e2, 3))))
        report.write_forks, report.servers = self._write_forks(ops)
        conn = reader()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT id FROM {self.table}")
                present = {r[0] for r in cur.fetchall()}
        finally:
            conn.close()
        acked = {o.id for o in ops if o.outcome == "ok"}
        possible = acked | {o.id for o in ops if o.outcome == "info"}
        report.lost = sorted(acked - present)
        report.phantom = sorted(present - possible)
        return report

    def assert_ok(self, reader):
        """assert_ok runs check() and raises AssertionError with the evidence unless it is clean."""
        report = self.check(reader)
        if not report.ok:
            raise AssertionError(
                f"jepsen: {report.summary()}\n"
                f"/primary forks (node, from, to): {report.primary_forks[:5]}\n"
                f"write forks ((server, timeline) pairs): {report.write_forks[:5]}\n"
                f"acknowledged writes lost: {report.lost[:20]}\n"
                f"rows never written: {report.phantom[:20]}")
        return report
