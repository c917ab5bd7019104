"""tests/integration/test_jepsen.py - proof of the Jepsen-style checker (mgharness/jepsen.py).

The verdict logic on made-up histories: overlapping runs of /primary 200s
are a fork, a handover is not; writes acknowledged by two servers (or
timelines) that alternate in time are a fork, a failover is not; an
acknowledged id missing afterwards is a loss, an indeterminate one is not,
a row nobody wrote is reported. Then live, against one real PostgreSQL: the
writers' acknowledged ids are all read back (no false alarm), and a deleted
acknowledged row is reported as lost.
"""

import pytest

from mgharness.jepsen import Answer, Jepsen, Op


class FakeConn:
    """FakeConn answers SELECT id with a fixed set of ids."""

    def __init__(self, ids):
        self.ids = ids

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        assert sql.startswith("SELECT id FROM")

    def fetchall(self):
        return [(i,) for i in self.ids]

    def close(self):
        pass


def history(answers=(), ops=()):
    j = Jepsen({}, {})
    for a in answers:
        j._record_answer(Answer(*a))
    for o in ops:
        j._record_op(o)
    return j


def ok(writer, i, t0, t1, server, timeline="00000002"):
    return Op(writer, i, t0, t1, "ok", server, timeline)


def test_overlapping_primary_runs_are_a_fork():
    j = history(answers=[("n1", 0.0, 0.01, 200), ("n1", 1.0, 1.01, 200), ("n1", 2.0, 2.01, 503),
                         ("n2", 0.5, 0.51, 503), ("n2", 0.9, 0.91, 200), ("n2", 3.0, 3.01, 200)])
    report = j.check(lambda: FakeConn([]))
    assert len(report.primary_forks) == 1
    assert report.primary_forks[0][0][0] == "n1" and report.primary_forks[0][1][0] == "n2"


def test_a_handover_is_not_a_fork():
    j = history(answers=[("n1", 0.0, 0.01, 200), ("n1", 1.0, 1.01, 200), ("n1", 1.1, 1.11, 503),
                         ("n2", 1.05, 1.06, 503), ("n2", 1.2, 1.21, 200), ("n1", 2.0, None, None),
                         ("n2", 2.0, 2.01, 200)])
    report = j.check(lambda: FakeConn([]))
    assert report.primary_forks == []
    assert report.ok


def test_alternating_writers_are_a_fork():
    ops = [ok("a", 1, 0.0, 0.1, "10.0.0.2:5432"), ok("a", 2, 0.2, 0.3, "10.0.0.3:5432"),
           ok("a", 3, 0.4, 0.5, "10.0.0.2:5432")]  # back on the first server, same timeline
    report = history(ops=ops).check(lambda: FakeConn([1, 2, 3]))
    assert report.write_forks == [(("10.0.0.2:5432", "00000002"), ("10.0.0.3:5432", "00000002"))]
    assert not report.ok


def test_a_failover_and_a_return_on_a_new_timeline_are_not_a_fork():
    ops = [ok("a", 1, 0.0, 0.1, "n1"), ok("b", 2, 0.05, 0.15, "n1"),
           ok("a", 3, 1.0, 1.1, "n2", "00000003"), ok("b", 4, 1.2, 1.3, "n2", "00000003"),
           ok("a", 5, 2.0, 2.1, "n1", "00000004")]
    report = history(ops=ops).check(lambda: FakeConn([1, 2, 3, 4, 5]))
    assert report.write_forks == []
    assert report.servers == {("n1", "00000002"): 2, ("n2", "00000003"): 2,
                              ("n1", "00000004"): 1}


def test_the_same_server_on_two_timelines_at_once_is_a_fork():
    ops = [ok("a", 1, 0.0, 0.1, "n1", "00000002"), ok("b", 2, 0.2, 0.3, "n1", "00000003"),
           ok("a", 3, 0.4, 0.5, "n1", "00000002")]
    assert len(history(ops=ops).check(lambda: FakeConn([1, 2, 3])).write_forks) == 1


def test_loss_and_phantom_rows():
    ops = [ok("a", 1, 0.0, 0.1, "n1"), ok("a", 2, 0.2, 0.3, "n1"),
           Op("a", 3, 0.4, 0.5, "info", error="server closed the connection"),
           Op("a", 4, 0.6, 0.7, "fail", error="could not connect")]
    report = history(ops=ops).check(lambda: FakeConn([1, 3, 99]))
    assert report.lost == [2]
    assert report.phantom == [99]
    assert report.acknowledged == 2 and report.indeterminate == 1
    with pytest.raises(AssertionError, match="acknowledged writes lost: \\[2\\]"):
        history(ops=ops).assert_ok(lambda: FakeConn([1, 3, 99]))
    # an indeterminate write may be absent, a refused one is not expected
    assert history(ops=ops).check(lambda: FakeConn([1, 2])).ok


def test_live_writers_against_postgres(postgres):
    conn = postgres.connect()
    Jepsen.create_table(conn)
    dsn = dict(host=postgres.host, port=postgres.port, user=postgres.user, dbname="postgres")
    j = Jepsen({}, {"w1": dsn, "w2": dsn}).start()
    j.wait_writes(50, 60)
    report = j.assert_ok(postgres.connect)
    assert report.acknowledged >= 50 and report.lost == [] and report.write_forks == []
    assert len(report.servers) == 1
    # a lost acknowledged row is caught
    with conn.cursor() as cur:
        cur.execute("DELETE FROM jepsen WHERE id = (SELECT min(id) FROM jepsen)")
    report = j.check(postgres.connect)
    assert len(report.lost) == 1
    conn.close()
