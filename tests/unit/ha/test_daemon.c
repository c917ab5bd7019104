/*
 * tests/unit/ha/test_daemon.c - pure pieces of the daemon (ha/src, reached
 * through ha_internal.h): what the switchover hands over at (the final LSN
 * of a cleanly stopped cluster, from pg_controldata's output), when the
 * fencing watchdog is armed, and the clock lease deadlines run on.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare, CLONE_NEWTIME */
#endif
#include "ha_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define CONTROLDATA(state, lsn)                                        \
    "pg_control version number:            1300\n"                     \
    "Catalog version number:               202209061\n"                \
    "Database system identifier:           7312345678901234567\n"      \
    "Database cluster state:               " state "\n"                \
    "pg_control last modified:             Mon Dec  7 19:58:12 2026\n" \
    "Latest checkpoint location:           " lsn "\n"                  \
    "Latest checkpoint's REDO location:    0/3000028\n"                \
    "Latest checkpoint's TimeLineID:       1\n"

/*
 * test_final_lsn_needs_clean_shutdown (issue 16, finding 6a): the final LSN
 * of a switchover is the shutdown checkpoint, so it exists only for a
 * cluster whose state is "shut down". A crashed or immediately stopped
 * cluster ("in production") has WAL after its last checkpoint: handing over
 * at that checkpoint would lose it, so it is an error, never an LSN.
 */
static void
test_final_lsn_needs_clean_shutdown(void **state)
{
    char lsn[MG_HA_LSN_SIZE];
    mg_error_t error;

    (void)state;
    assert_true(mg_ha__controldata_final_lsn(CONTROLDATA("shut down", "0/3000028"), lsn,
                                             sizeof(lsn), &error));
    assert_string_equal(lsn, "0/3000028");
    assert_true(mg_ha__controldata_final_lsn(CONTROLDATA("shut down", "1A/FF000D8  "), lsn,
                                             sizeof(lsn), &error));
    assert_string_equal(lsn, "1A/FF000D8");
    static const char *const unclean[] = {"in production", "shut down in recovery",
                                          "in crash recovery", "in archive recovery",
                                          "shutting down"};
    for (size_t i = 0; i < sizeof(unclean) / sizeof(unclean[0]); i++) {
        char text[1024];

        snprintf(text, sizeof(text), CONTROLDATA("%s", "0/3000028"), unclean[i]);
        memset(lsn, 0, sizeof(lsn));
        assert_false(mg_ha__controldata_final_lsn(text, lsn, sizeof(lsn), &error));
        assert_int_equal(error.domain, MG_ERROR_DOMAIN_PG);
        assert_int_equal(error.code, MG_ERROR_CODE_INVALID_ARGUMENT);
        assert_non_null(strstr(error.message, unclean[i]));
        assert_string_equal(lsn, ""); /* output untouched */
    }
    /* malformed output: no state, no location, a location that is no LSN */
    assert_false(mg_ha__controldata_final_lsn("Latest checkpoint location: 0/1\n", lsn, sizeof(lsn),
                                              &error));
    assert_false(mg_ha__controldata_final_lsn("Database cluster state: shut down\n", lsn,
                                              sizeof(lsn), &error));
    assert_false(mg_ha__controldata_final_lsn(CONTROLDATA("shut down", "nonsense"), lsn,
                                              sizeof(lsn), &error));
    assert_false(mg_ha__controldata_final_lsn("", lsn, sizeof(lsn), &error));
}

/*
 * test_watchdog_armed_while_postgres_may_write (issue 16, finding 7): the
 * watchdog was armed only in state primary, so a promotion whose status
 * write failed (the node still a replica) left a writable Postgres with no
 * fence. It is armed whenever Postgres may take writes, and without a key
 * to move it the last deadline stands; never a later one.
 */
static void
test_watchdog_armed_while_postgres_may_write(void **state)
{
    const int64_t MARGIN = 3000, UNTIL = 50000, ARMED = 41500;

    (void)state;
    /* Postgres cannot write: disarmed, whatever the deadline */
    assert_int_equal(mg_ha__watchdog_deadline(false, UNTIL, ARMED, MARGIN), 0);
    /* it may write (a primary, or a replica promoted half-way): half a margin after the lease */
    assert_int_equal(mg_ha__watchdog_deadline(true, UNTIL, 0, MARGIN), UNTIL + MARGIN / 2);
    /* no deadline to move it with (key lost): the last one stands, not 0 */
    assert_int_equal(mg_ha__watchdog_deadline(true, 0, ARMED, MARGIN), ARMED);
    assert_int_equal(mg_ha__watchdog_deadline(true, 0, 0, MARGIN), 0);
}

/*
 * boot_offset_ms runs in a child with a time namespace whose boot clock is
 * offset by offset_s from the monotonic clock (what a machine suspended for
 * that long looks like) and returns mg_ha__now_ms() minus CLOCK_MONOTONIC
 * there; -1 when time namespaces are not available (not root, old kernel).
 */
static int64_t
boot_offset_ms(int offset_s)
{
    int fds[2];
    pid_t outer;
    int64_t diff = -1;

    if (pipe(fds) != 0)
        return -1;
    outer = fork();
    if (outer == 0) {
        char line[64];
        int fd;
        pid_t inner;

        close(fds[0]);
        snprintf(line, sizeof(line), "boottime %d 0\n", offset_s);
        if (unshare(CLONE_NEWTIME) != 0 || (fd = open("/proc/self/timens_offsets", O_WRONLY)) < 0 ||
            write(fd, line, strlen(line)) != (ssize_t)strlen(line))
            _exit(2);
        close(fd);
        inner = fork(); /* the time namespace applies to children */
        if (inner == 0) {
            struct timespec mono;
            int64_t d;

            clock_gettime(CLOCK_MONOTONIC, &mono);
            d = mg_ha__now_ms() - ((int64_t)mono.tv_sec * 1000 + mono.tv_nsec / 1000000);
            _exit(write(fds[1], &d, sizeof(d)) == sizeof(d) ? 0 : 3);
        }
        _exit(inner > 0 && waitpid(inner, NULL, 0) == inner ? 0 : 4);
    }
    close(fds[1]);
    if (outer > 0) {
        int status = 0;

        if (read(fds[0], &diff, sizeof(diff)) != sizeof(diff))
            diff = -1;
        (void)waitpid(outer, &status, 0);
    }
    close(fds[0]);
    return diff;
}

/*
 * test_deadline_clock_counts_suspend (issue 16, finding 8): lease deadlines
 * were on CLOCK_MONOTONIC, which stops during a suspend, so after a resume a
 * node answered /primary 200 past its lease. In a time namespace whose boot
 * clock is an hour ahead of the monotonic one, mg_ha__now_ms() is too.
 */
static void
test_deadline_clock_counts_suspend(void **state)
{
    int64_t diff = boot_offset_ms(3600);

    (void)state;
    if (diff == -1) {
        print_message("time namespaces not available here (needs root, Linux >= 5.6): skipped\n");
        skip();
    }
    assert_true(diff >= 3600 * 1000 - 1000 && diff <= 3600 * 1000 + 1000);
}

/*
 * test_failsafe_grant_needs_every_member (issue 16, finding 2): a primary
 * without etcd keeps writing only while every node of its failsafe set
 * (the status's members, not merely the nodes of its last view) acked a
 * failsafe heartbeat; the grant runs from the oldest ack.
 */
static void
test_failsafe_grant_needs_every_member(void **state)
{
    char set[3][MG_HA_NAME_SIZE] = {"p", "r1", "r2"};
    mg_ha_peer_t peers[2];

    (void)state;
    memset(peers, 0, sizeof(peers));
    snprintf(peers[0].name, sizeof(peers[0].name), "r1");
    snprintf(peers[1].name, sizeof(peers[1].name), "r2");
    peers[0].acked_sent_ms = 5000;
    /* r2, a member whose key had expired (absent from the view), never acked: no grant */
    assert_int_equal(mg_ha__grant_until(set, 3, "p", peers, 2, 10000, 3000), 0);
    assert_int_equal(mg_ha__grant_until(set, 3, "p", peers, 1, 10000, 3000), 0);
    peers[1].acked_sent_ms = 4000;
    assert_int_equal(mg_ha__grant_until(set, 3, "p", peers, 2, 10000, 3000), 4000 + 7000);
    /* a lone node has nobody to vouch for it */
    assert_int_equal(mg_ha__grant_until(set, 1, "p", peers, 2, 10000, 3000), 0);
}

/*
 * test_no_grant_without_a_member_set (issue 16, finding 2): before a
 * primary wrote the failsafe set (a new cluster before its first round, or
 * a status from before the set) no promise is known to be needed, so there
 * is no grant. It fell back to the nodes of the last view, and a node whose
 * key had expired came back, promoted (untracked, every node is a
 * candidate) and wrote beside the failsafe primary (test_ha_election,
 * classes failsafe-primary seed 417, failsafe-etcd-down seed 2247).
 */
static void
test_no_grant_without_a_member_set(void **state)
{
    mg_ha_view_t *v = calloc(1, sizeof(*v));
    char set[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    mg_ha_peer_t peers[1];

    (void)state;
    assert_non_null(v);
    memset(peers, 0, sizeof(peers));
    snprintf(peers[0].name, sizeof(peers[0].name), "r1");
    peers[0].acked_sent_ms = 5000;
    v->nnodes = 2;
    snprintf(v->nodes[0].name, sizeof(v->nodes[0].name), "p");
    snprintf(v->nodes[1].name, sizeof(v->nodes[1].name), "r1");
    /* untracked: nobody counts, so r1's ack grants nothing */
    assert_int_equal(mg_ha__failsafe_set(v, set), 0);
    assert_int_equal(mg_ha__grant_until(set, 0, "p", peers, 1, 10000, 3000), 0);
    /* tracked: the members, not the view */
    v->status.nmembers = 3;
    snprintf(v->status.members[0], MG_HA_NAME_SIZE, "p");
    snprintf(v->status.members[1], MG_HA_NAME_SIZE, "r1");
    snprintf(v->status.members[2], MG_HA_NAME_SIZE, "r2");
    assert_int_equal(mg_ha__failsafe_set(v, set), 3);
    assert_string_equal(set[2], "r2");
    assert_int_equal(mg_ha__grant_until(set, 3, "p", peers, 1, 10000, 3000), 0);
    free(v);
}

/*
 * test_promise_only_for_the_primary (issue 16, finding 2): a node promises
 * a failsafe primary not to take the leader key only while it believes
 * that node is the primary; one that sees another leader does not vouch
 * (it kept acking because it only checked its own state).
 */
static void
test_promise_only_for_the_primary(void **state)
{
    mg_ha_view_t *v = calloc(1, sizeof(*v));

    (void)state;
    assert_non_null(v);
    snprintf(v->leader, sizeof(v->leader), "p");
    assert_true(mg_ha__promise_ok(MG_HA_STATE_REPLICA, v, "r1", "p"));
    assert_false(mg_ha__promise_ok(MG_HA_STATE_PRIMARY, v, "r1", "p"));
    snprintf(v->leader, sizeof(v->leader), "r2"); /* r2 won the key */
    assert_false(mg_ha__promise_ok(MG_HA_STATE_REPLICA, v, "r1", "p"));
    snprintf(v->leader, sizeof(v->leader), "r1"); /* we hold it ourselves */
    assert_false(mg_ha__promise_ok(MG_HA_STATE_REPLICA, v, "r1", "p"));
    v->leader[0] = '\0'; /* free: the status says who the primary was */
    snprintf(v->status.primary, sizeof(v->status.primary), "p");
    assert_true(mg_ha__promise_ok(MG_HA_STATE_REPLICA, v, "r1", "p"));
    assert_false(mg_ha__promise_ok(MG_HA_STATE_REPLICA, v, "r1", "q"));
    free(v);
}

/*
 * test_sync_set_narrows_only_behind_a_caught_up_member (issue 16, finding
 * 5): dropping a member from etcd's sync set, the set failover candidates
 * come from, waits until a remaining member flushed the primary's LSN of
 * the moment Postgres stopped waiting for the dropped one; before, the
 * dropped member may hold acknowledged commits nobody else has.
 */
static void
test_sync_set_narrows_only_behind_a_caught_up_member(void **state)
{
    mg_ha_replication_t rep[2];
    char keep[1][MG_HA_NAME_SIZE] = {"b"};
    uint64_t L = 0;

    (void)state;
    memset(rep, 0, sizeof(rep));
    assert_true(mg_ha_lsn_parse("0/5000100", &L));
    snprintf(rep[0].application_name, sizeof(rep[0].application_name), "a");
    snprintf(rep[0].flush_lsn, sizeof(rep[0].flush_lsn), "0/6000000");
    snprintf(rep[1].application_name, sizeof(rep[1].application_name), "b");
    snprintf(rep[1].flush_lsn, sizeof(rep[1].flush_lsn), "0/50000FF");
    /* b, which stays, is one byte short; a, which would leave, has it all: wait */
    assert_false(mg_ha__sync_narrow_ok(rep, 2, keep, 1, L));
    snprintf(rep[1].flush_lsn, sizeof(rep[1].flush_lsn), "0/5000100");
    assert_true(mg_ha__sync_narrow_ok(rep, 2, keep, 1, L));
    /* not known yet, nobody to keep, or b not streaming at all: wait */
    assert_false(mg_ha__sync_narrow_ok(rep, 2, keep, 1, 0));
    assert_false(mg_ha__sync_narrow_ok(rep, 2, keep, 0, L));
    assert_false(mg_ha__sync_narrow_ok(rep, 1, keep, 1, L));
}

/*
 * test_stop_never_leaves_a_writable_primary (issue 16, finding 1): SIGTERM
 * with on_stop leave leaves only a standby running. A daemon stopped before
 * its first loop (state init) that adopted the watchdog deadline of a
 * killed daemon's primary holds that primary's fence: it must stop it. It
 * used to leave it running (not "ours": neither its state nor its child)
 * and end the adopted watchdog, so the primary kept taking writes without
 * a fence after its leader key expired (the property test found it:
 * class stop-leave, seed 101).
 */
static void
test_stop_never_leaves_a_writable_primary(void **state)
{
    const int leave = MG_HA_ON_STOP_LEAVE, fast = MG_HA_ON_STOP_FAST;

    (void)state;
    /* state init, a primary data directory, the adopted watchdog armed */
    assert_true(mg_ha__stop_stops_pg(leave, MG_HA_STATE_INIT, false, true, true, false));
    assert_true(mg_ha__stop_stops_pg(leave, MG_HA_STATE_PRIMARY, false, false, true, false));
    assert_true(mg_ha__stop_stops_pg(leave, MG_HA_STATE_DEMOTED, false, false, true, false));
    /* a standby stays with on_stop leave, stops with fast */
    assert_false(mg_ha__stop_stops_pg(leave, MG_HA_STATE_REPLICA, true, false, true, true));
    assert_true(mg_ha__stop_stops_pg(fast, MG_HA_STATE_REPLICA, true, false, true, true));
    /* a state primary stops whatever the directory says */
    assert_true(mg_ha__stop_stops_pg(leave, MG_HA_STATE_PRIMARY, false, false, true, true));
    /* not ours (a refused node, no child, no fence), or not running: untouched */
    assert_false(mg_ha__stop_stops_pg(fast, MG_HA_STATE_REFUSED, false, false, true, false));
    assert_false(mg_ha__stop_stops_pg(fast, MG_HA_STATE_INIT, false, false, true, false));
    assert_false(mg_ha__stop_stops_pg(fast, MG_HA_STATE_PRIMARY, true, true, false, false));
}

/*
 * test_config_quoting (issue 17, item 2): everything pgdaemon writes into
 * postgresql.conf is a quoted literal by that file's rules, a conninfo
 * value by libpq's; a control character (a newline would start a new
 * setting) is refused, naming what.
 */
static void
test_config_quoting(void **state)
{
    mg_buf_t b;
    mg_error_t error;

    (void)state;
    mg_buf_init(&b, 4096);
    assert_true(mg_ha__conf_quote(&b, "x", "it's a \\ test", &error));
    assert_true(mg_buf_append(&b, "", 1, &error));
    assert_string_equal(b.data, "'it''s a \\\\ test'");
    mg_buf_reset(&b);
    assert_false(mg_ha__conf_quote(&b, "the host", "x'\nwork_mem = '77MB'\n#", &error));
    assert_non_null(strstr(error.message, "the host"));
    mg_buf_reset(&b);
    assert_true(mg_ha__conninfo_append(&b, "host", "x' port=1", &error));
    assert_true(mg_ha__conninfo_append(&b, "passfile", "/a\\b", &error));
    assert_true(mg_buf_append(&b, "", 1, &error));
    assert_string_equal(b.data, "host='x\\' port=1' passfile='/a\\\\b'");
    mg_buf_reset(&b);
    assert_true(mg_ha__sync_setting("node1, node-2", &b, &error));
    assert_true(mg_buf_append(&b, "", 1, &error));
    assert_string_equal(b.data, "'ANY 1 (\"node1\", \"node-2\")'");
    mg_buf_reset(&b);
    assert_true(mg_ha__sync_setting("", &b, &error));
    assert_true(mg_buf_append(&b, "", 1, &error));
    assert_string_equal(b.data, "''");
    mg_buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_final_lsn_needs_clean_shutdown),
        cmocka_unit_test(test_watchdog_armed_while_postgres_may_write),
        cmocka_unit_test(test_deadline_clock_counts_suspend),
        cmocka_unit_test(test_failsafe_grant_needs_every_member),
        cmocka_unit_test(test_no_grant_without_a_member_set),
        cmocka_unit_test(test_promise_only_for_the_primary),
        cmocka_unit_test(test_sync_set_narrows_only_behind_a_caught_up_member),
        cmocka_unit_test(test_stop_never_leaves_a_writable_primary),
        cmocka_unit_test(test_config_quoting),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
