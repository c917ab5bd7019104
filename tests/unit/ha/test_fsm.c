/*
 * tests/unit/ha/test_fsm.c - the reconcile decision, table-driven: a fake KV
 * (key -> JSON value, as etcd would hold them under the cluster prefix) and
 * a fake clock go in, mg_ha_decide's action, next state and peer come out.
 * Also: the transition table itself, and a sweep proving every decision is
 * a row of the table.
 */
#include "mg/ha.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define PREFIX "/pgdaemon/c1/"

/* Node records used by the cases. */
#define N1_PRIMARY_NO_SLOTS                                                               \
    "{\"name\":\"n1\",\"state\":\"primary\",\"role\":\"primary\",\"pg_queries_ok\":true," \
    "\"host\":\"127.0.0.1\",\"pg_port\":5433,\"slots\":[]}"
#define N1_PRIMARY_WITH_N2_SLOT                                                           \
    "{\"name\":\"n1\",\"state\":\"primary\",\"role\":\"primary\",\"pg_queries_ok\":true," \
    "\"host\":\"127.0.0.1\",\"pg_port\":5433,\"slots\":[\"pgdaemon_n2\"]}"
#define N1_PRIMARY_BROKEN                                                                  \
    "{\"name\":\"n1\",\"state\":\"primary\",\"role\":\"primary\",\"pg_queries_ok\":false," \
    "\"pg_reachable\":true,\"slots\":[\"pgdaemon_n2\"]}"
#define N2_WAITING "{\"name\":\"n2\",\"state\":\"wait_primary\",\"role\":\"unknown\"}"
#define N3_REPLICA "{\"name\":\"n3\",\"state\":\"replica\",\"role\":\"replica\"}"
#define INIT_111   "{\"node\":\"n1\",\"system_identifier\":\"111\"}"
#define INIT_EMPTY "{\"node\":\"n1\",\"system_identifier\":\"\"}"
#define STATUS_N1  "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"stable\"}"
#define STATUS_N3  "{\"primary\":\"n3\",\"term\":4,\"failover_state\":\"stable\"}"

typedef struct {
    const char *key; /* relative to PREFIX; NULL ends the list */
    const char *value;
} fake_kv_t;

typedef struct {
    const char *name;
    const char *me;
    mg_ha_state_t state;
    bool have_data;
    bool data_is_primary; /* no standby.signal */
    const char *local_sysid;
    bool pg_running;
    fake_kv_t kv[8];
    int64_t now_ms;
    int64_t join_started_ms;
    int64_t max_nodes; /* 0 = 5 */
    bool leader_stale; /* the leader key was not taken by this run */
    int64_t wall_ms;   /* wall clock of the view */
    int64_t fresh_ms;  /* self.fresh_ms (test_safety_decisions; 0 = every report fresh) */
    int64_t seen_ms;   /* every node's seen_ms (0 = freshness by wall clock) */
    mg_ha_action_t want_action;
    mg_ha_state_t want_state;
    const char *want_peer;      /* NULL = don't care */
    const char *want_in_reason; /* NULL = don't care */
} case_t;

#define LEADER(name)   \
    {                  \
        "leader", name \
    }

static const case_t cases[] = {
    {.name = "empty etcd, no data: claim initialize",
     .me = "n1",
     .want_action = MG_HA_ACTION_CLAIM_INITIALIZE,
     .want_state = MG_HA_STATE_BOOTSTRAP},
    {.name = "empty etcd, own data: claim with the existing data dir",
     .me = "n1",
     .have_data = true,
     .local_sysid = "111",
     .want_action = MG_HA_ACTION_CLAIM_INITIALIZE,
     .want_state = MG_HA_STATE_BOOTSTRAP,
     .want_in_reason = "existing data"},
    {.name = "claimed by us, crashed before initdb: resume",
     .me = "n1",
     .kv = {{"initialize", INIT_EMPTY}},
     .want_action = MG_HA_ACTION_INITDB,
     .want_state = MG_HA_STATE_BOOTSTRAP},
    {.name = "bootstrap without data: initdb",
     .me = "n1",
     .state = MG_HA_STATE_BOOTSTRAP,
     .kv = {{"initialize", INIT_EMPTY}},
     .want_action = MG_HA_ACTION_INITDB,
     .want_state = MG_HA_STATE_BOOTSTRAP},
    {.name = "bootstrap with data: start primary",
     .me = "n1",
     .state = MG_HA_STATE_BOOTSTRAP,
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_EMPTY}},
     .want_action = MG_HA_ACTION_START_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "another node is initializing: wait",
     .me = "n2",
     .kv = {{"initialize", INIT_EMPTY}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_WAIT_PRIMARY,
     .want_in_reason = "being initialized by n1"},
    {.name = "initialized, no primary yet: wait",
     .me = "n2",
     .kv = {{"initialize", INIT_111}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_WAIT_PRIMARY},
    {.name = "primary up, our slot missing: wait for it",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_NO_SLOTS}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_WAIT_PRIMARY,
     .want_peer = "n1",
     .want_in_reason = "slot pgdaemon_n2"},
    {.name = "primary has our slot: clone",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_CLONE,
     .want_state = MG_HA_STATE_CLONE,
     .want_peer = "n1"},
    {.name = "leader whose queries fail is no primary to clone from",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_BROKEN}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_WAIT_PRIMARY},
    {.name = "slot listed by a node that is not the leader: wait",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .kv = {{"initialize", INIT_111}, {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_WAIT_PRIMARY},
    {.name = "foreign system identifier: refuse",
     .me = "n2",
     .have_data = true,
     .local_sysid = "222",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_REFUSE,
     .want_state = MG_HA_STATE_REFUSED,
     .want_in_reason = "222"},
    {.name = "foreign system identifier while running as replica: refuse",
     .me = "n2",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "222",
     .pg_running = true,
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_REFUSE,
     .want_state = MG_HA_STATE_REFUSED},
    {.name = "max nodes reached by nodes registered before us: refuse",
     .me = "n2",
     .max_nodes = 2,
     .kv = {{"initialize", INIT_111},
            LEADER("n1"),
            {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT},
            {"nodes/n3", N3_REPLICA}},
     .want_action = MG_HA_ACTION_REFUSE,
     .want_state = MG_HA_STATE_REFUSED,
     .want_in_reason = "node n2 refused"},
    {.name = "max nodes: we registered before the extra node, so we may join",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .max_nodes = 2,
     .kv = {{"initialize", INIT_111},
            LEADER("n1"),
            {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT},
            {"nodes/n2", N2_WAITING},
            {"nodes/n3", N3_REPLICA}},
     .want_action = MG_HA_ACTION_CLONE,
     .want_state = MG_HA_STATE_CLONE},
    {.name = "join timeout exceeded: refuse",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .kv = {{"initialize", INIT_111}},
     .now_ms = 400001,
     .join_started_ms = 100000,
     .want_action = MG_HA_ACTION_REFUSE,
     .want_state = MG_HA_STATE_REFUSED,
     .want_in_reason = "join_timeout"},
    {.name = "join timeout not yet exceeded: wait",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .kv = {{"initialize", INIT_111}},
     .now_ms = 400000,
     .join_started_ms = 100000,
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_WAIT_PRIMARY},
    {.name = "restart of the primary after its lease went: status names us",
     .me = "n1",
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_START_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "restart of the primary while its leader key still exists",
     .me = "n1",
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_START_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "restart of a replica: follow the leader",
     .me = "n2",
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111},
            LEADER("n1"),
            {"status", STATUS_N1},
            {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_START_REPLICA,
     .want_state = MG_HA_STATE_REPLICA,
     .want_peer = "n1"},
    {.name = "restart with standby data, leader free, status names another node: join the "
             "election as a standby",
     .me = "n1",
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, {"status", STATUS_N3}},
     .want_action = MG_HA_ACTION_START_REPLICA,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "restart with primary data, leader free, status names another node: demoted",
     .me = "n1",
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, {"status", STATUS_N3}},
     .want_action = MG_HA_ACTION_DEMOTE,
     .want_state = MG_HA_STATE_DEMOTED},
    {.name = "restart with primary data while another node leads: demoted, then rewind",
     .me = "n2",
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_NO_SLOTS}},
     .want_action = MG_HA_ACTION_DEMOTE,
     .want_state = MG_HA_STATE_DEMOTED,
     .want_in_reason = "rewind"},
    {.name = "waiting with data until the primary is back: follow it",
     .me = "n2",
     .state = MG_HA_STATE_WAIT_PRIMARY,
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_NO_SLOTS}},
     .want_action = MG_HA_ACTION_START_REPLICA,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "primary whose Postgres stopped: start it",
     .me = "n1",
     .state = MG_HA_STATE_PRIMARY,
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_START_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "primary running: maintain",
     .me = "n1",
     .state = MG_HA_STATE_PRIMARY,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_MAINTAIN_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "primary whose leader key another node holds: stop writes (demote)",
     .me = "n1",
     .state = MG_HA_STATE_PRIMARY,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111}, LEADER("n3")},
     .want_action = MG_HA_ACTION_DEMOTE,
     .want_state = MG_HA_STATE_DEMOTED,
     .want_in_reason = "stop writes"},
    {.name = "replica running: maintain",
     .me = "n2",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111}, LEADER("n1")},
     .want_action = MG_HA_ACTION_MAINTAIN_REPLICA,
     .want_state = MG_HA_STATE_REPLICA,
     .want_peer = "n1"},
    {.name = "replica whose Postgres stopped: start it",
     .me = "n2",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_START_REPLICA,
     .want_state = MG_HA_STATE_REPLICA,
     .want_peer = "n1"},
    {.name = "clone done: start as standby",
     .me = "n2",
     .state = MG_HA_STATE_CLONE,
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_START_REPLICA,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "clone failed and the primary is gone: back to waiting",
     .me = "n2",
     .state = MG_HA_STATE_CLONE,
     .kv = {{"initialize", INIT_111}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_WAIT_PRIMARY},
    {.name = "clone failed, primary still there: clone again",
     .me = "n2",
     .state = MG_HA_STATE_CLONE,
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_CLONE,
     .want_state = MG_HA_STATE_CLONE},
    {.name = "refused stays refused",
     .me = "n2",
     .state = MG_HA_STATE_REFUSED,
     .want_action = MG_HA_ACTION_NONE,
     .want_state = MG_HA_STATE_REFUSED},
};

/* fake_kv_load turns a case's fake KV into etcd key-values and loads the view. */
static void
fake_kv_load(const case_t *c, mg_ha_view_t *view)
{
    mg_etcd_kv_t kvs[8];
    char keys[8][128];
    size_t n = 0;
    mg_error_t error;

    memset(view, 0, sizeof(*view));
    for (; n < 8 && c->kv[n].key != NULL; n++) {
        snprintf(keys[n], sizeof(keys[n]), PREFIX "%s", c->kv[n].key);
        kvs[n] = (mg_etcd_kv_t){.key = keys[n],
                                .key_len = strlen(keys[n]),
                                .value = (char *)c->kv[n].value,
                                .value_len = strlen(c->kv[n].value),
                                .create_revision = (int64_t)n + 2,
                                .mod_revision = (int64_t)n + 2,
                                .version = 1};
    }
    assert_true(mg_ha_view_load(view, PREFIX, kvs, n, &error));
    view->state = c->state;
    view->have_data = c->have_data;
    snprintf(view->local_sysid, sizeof(view->local_sysid), "%s",
             c->local_sysid ? c->local_sysid : "");
    view->pg_running = c->pg_running;
    view->data_is_primary = c->data_is_primary;
    view->pg_queries_ok = c->pg_running;
    view->leader_stale = c->leader_stale;
    for (size_t i = 0; i < view->nnodes; i++)
        view->nodes[i].seen_ms = c->seen_ms;
    view->wall_ms = c->wall_ms;
    view->now_ms = c->now_ms;                   /* fake clock */
    view->join_started_ms = c->join_started_ms; /* when the join began */
}

/*
 * check_case decides case c with self; false (the mismatch printed) unless
 * the decision is the wanted one. The callers check every case, then fail.
 */
static bool
check_case(const case_t *c, const mg_ha_self_t *self)
{
    mg_ha_view_t view;
    mg_ha_decision_t d;
    mg_error_t error;

    fake_kv_load(c, &view);
    if (!mg_ha_decide(self, &view, &d, &error)) {
        print_error("case \"%s\": %s\n", c->name, error.message);
        return false;
    }
    if (d.action != c->want_action || d.next_state != c->want_state) {
        print_error("case \"%s\": got %s -> %s (%s), want %s -> %s\n", c->name,
                    mg_ha_action_name(d.action), mg_ha_state_name(d.next_state), d.reason,
                    mg_ha_action_name(c->want_action), mg_ha_state_name(c->want_state));
        return false;
    }
    if (c->want_peer != NULL && strcmp(d.peer, c->want_peer) != 0) {
        print_error("case \"%s\": peer \"%s\", want \"%s\"\n", c->name, d.peer, c->want_peer);
        return false;
    }
    if (c->want_in_reason != NULL && strstr(d.reason, c->want_in_reason) == NULL) {
        print_error("case \"%s\": reason \"%s\" lacks \"%s\"\n", c->name, d.reason,
                    c->want_in_reason);
        return false;
    }
    return true;
}

static void
test_decisions(void **state)
{
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const case_t *c = &cases[i];
        mg_ha_self_t self = {
            .name = c->me, .max_nodes = c->max_nodes ? c->max_nodes : 5, .join_timeout_ms = 300000};

        failed += !check_case(c, &self);
    }
    assert_int_equal(failed, 0);
}

static void
test_table(void **state)
{
    size_t n, i, j;
    const mg_ha_transition_t *t = mg_ha_transitions(&n);

    assert_true(n > 10);
    for (i = 0; i < n; i++) {
        assert_non_null(t[i].comment);
        assert_true(strlen(t[i].comment) > 0);
        for (j = i + 1; j < n; j++)
            assert_false(t[i].from == t[j].from && t[i].to == t[j].to);
        assert_ptr_equal(mg_ha_transition_find(t[i].from, t[i].to), &t[i]);
    }
    /* nothing leaves refused, nothing enters init */
    assert_null(mg_ha_transition_find(MG_HA_STATE_REFUSED, MG_HA_STATE_PRIMARY));
    assert_null(mg_ha_transition_find(MG_HA_STATE_PRIMARY, MG_HA_STATE_INIT));
    /* a replica becomes primary only by promotion; a primary never becomes a replica directly */
    assert_non_null(mg_ha_transition_find(MG_HA_STATE_REPLICA, MG_HA_STATE_PRIMARY));
    assert_null(mg_ha_transition_find(MG_HA_STATE_PRIMARY, MG_HA_STATE_REPLICA));
}

/* Records for the issue 16 cases. */
#define STATUS_N1_CATCHUP                                                        \
    "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"waiting_for_catchup\"," \
    "\"target_primary\":\"n2\",\"final_lsn\":\"0/3000028\",\"writes_stopped_ms\":1000}"
#define STATUS_N1_HANDED_TO_N2                                                     \
    "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"promoting_new_primary\"," \
    "\"target_primary\":\"n2\",\"final_lsn\":\"0/3000028\",\"writes_stopped_ms\":1000}"
#define STATUS_N1_MEMBERS_N1_N3_HANDED_TO_N2                                            \
    "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"promoting_new_primary\","      \
    "\"target_primary\":\"n2\",\"final_lsn\":\"0/3000028\",\"writes_stopped_ms\":1000," \
    "\"members\":[\"n1\",\"n3\"]}"
#define N2_REPLICA_NOFAILOVER                                                             \
    "{\"name\":\"n2\",\"state\":\"replica\",\"role\":\"replica\",\"pg_queries_ok\":true," \
    "\"pg_running\":true,\"nofailover\":true,\"priority\":0,\"replay_lsn\":\"0/3000028\"}"
#define SPEC_SWITCH_TO_N2 "{\"switchover_id\":1,\"switchover_to\":\"n2\"}"
#define STATUS_N1_MEMBERS_N1_N2 \
    "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"stable\",\"members\":[\"n1\",\"n2\"]}"
#define N2_REPLICA_AT(lsn)                                                                \
    "{\"name\":\"n2\",\"state\":\"replica\",\"role\":\"replica\",\"pg_queries_ok\":true," \
    "\"pg_running\":true,\"priority\":100,\"receive_lsn\":\"" lsn "\",\"replay_lsn\":\"" lsn "\"}"
#define STATUS_N1_SYNC_N2                                                                     \
    "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"stable\",\"synchronous_mode\":true," \
    "\"sync_members\":[\"n2\"]}"
#define N1_PRIMARY_RUNNING                                                                \
    "{\"name\":\"n1\",\"state\":\"primary\",\"role\":\"primary\",\"pg_queries_ok\":true," \
    "\"pg_running\":true,\"current_lsn\":\"0/3000000\"}"
#define N3_REPLICA_AT(lsn)                                                                \
    "{\"name\":\"n3\",\"state\":\"replica\",\"role\":\"replica\",\"pg_queries_ok\":true," \
    "\"pg_running\":true,\"priority\":100,\"receive_lsn\":\"" lsn "\",\"replay_lsn\":\"" lsn "\"}"

/* Issue 16: decisions that let two writers run or lose acknowledged writes, and wedges. */
static const case_t safety_cases[] = {
    {.name = "16.3/16.9: restart with standby data while the leader key names this node: start as "
             "a standby (a promotion needs an election of this run)",
     .me = "n1",
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_START_REPLICA,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "16.9: status names this node (restored from a backup) but its data is a standby: no "
             "start as primary",
     .me = "n1",
     .have_data = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_START_REPLICA,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "16.9: a leader key this run did not take names this standby: drop it, no promotion",
     .me = "n2",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .leader_stale = true,
     .kv = {{"initialize", INIT_111}, LEADER("n2"), {"status", STATUS_N1}},
     .want_action = MG_HA_ACTION_DROP_LEADER,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "16.6b: restart during a switchover while holding the leader key: finish the "
             "demotion, never start as primary",
     .me = "n1",
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"status", STATUS_N1_CATCHUP}},
     .want_action = MG_HA_ACTION_DEMOTE,
     .want_state = MG_HA_STATE_DEMOTED},
    {.name = "16.15: a replica whose data directory is gone re-clones",
     .me = "n2",
     .state = MG_HA_STATE_REPLICA,
     .kv = {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
     .want_action = MG_HA_ACTION_RECLONE,
     .want_state = MG_HA_STATE_WAIT_PRIMARY},
    {.name = "16.11: switchover --to a nofailover node is refused",
     .me = "n1",
     .state = MG_HA_STATE_PRIMARY,
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111},
            LEADER("n1"),
            {"status", STATUS_N1},
            {"switchover", SPEC_SWITCH_TO_N2},
            {"nodes/n2", N2_REPLICA_NOFAILOVER}},
     .want_action = MG_HA_ACTION_SWITCHOVER_BEGIN,
     .want_state = MG_HA_STATE_PRIMARY,
     .want_peer = "",
     .want_in_reason = "nofailover"},
    {.name = "16.11: hand-off to a target that died: after 2 x switchover_timeout the old primary "
             "retakes the key",
     .me = "n1",
     .state = MG_HA_STATE_DEMOTED,
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .wall_ms = 1000 + 60001,
     .kv = {{"initialize", INIT_111}, {"status", STATUS_N1_HANDED_TO_N2}},
     .want_action = MG_HA_ACTION_START_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY,
     .want_in_reason = "lapsed"},
    {.name = "16.11: hand-off to a nofailover target: the old primary retakes the key in time",
     .me = "n1",
     .state = MG_HA_STATE_DEMOTED,
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .wall_ms = 1000 + 60001,
     .kv = {{"initialize", INIT_111},
            {"status", STATUS_N1_HANDED_TO_N2},
            {"nodes/n2", N2_REPLICA_NOFAILOVER}},
     .want_action = MG_HA_ACTION_START_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "16.2: a replica outside the primary's failsafe set never takes the leader key by "
             "failover (it promised nothing), however advanced",
     .me = "n3",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111},
            {"status", STATUS_N1_MEMBERS_N1_N2},
            {"nodes/n2", N2_REPLICA_AT("0/3000000")},
            {"nodes/n3", N3_REPLICA_AT("0/5000000")}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "16.2: the member is the candidate when the more advanced node is no member",
     .me = "n2",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111},
            {"status", STATUS_N1_MEMBERS_N1_N2},
            {"nodes/n2", N2_REPLICA_AT("0/3000000")},
            {"nodes/n3", N3_REPLICA_AT("0/5000000")}},
     .want_action = MG_HA_ACTION_PROMOTE,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "16.9: status wiped (or restored) while the old primary still reports itself "
             "primary: replicas wait, they do not promote beside it",
     .me = "n2",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111},
            {"nodes/n1", N1_PRIMARY_RUNNING},
            {"nodes/n2", N2_REPLICA_AT("0/3000000")}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_REPLICA,
     .want_in_reason = "n1"},
    {.name = "16.13: reports are fresh by when this node saw them change, not by the other "
             "node's wall clock (100 s behind here)",
     .me = "n3",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .now_ms = 50000,
     .wall_ms = 100000,
     .fresh_ms = 2000,
     .seen_ms = 49900,
     .kv = {{"initialize", INIT_111},
            {"status", STATUS_N1},
            {"nodes/n2", N2_REPLICA_AT("0/3000000")},
            {"nodes/n3", N3_REPLICA_AT("0/5000000")}},
     .want_action = MG_HA_ACTION_PROMOTE,
     .want_state = MG_HA_STATE_PRIMARY},
    {.name = "16.13: a report not seen to change since this node started is not fresh",
     .me = "n3",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .now_ms = 50000,
     .wall_ms = 0,
     .fresh_ms = 2000,
     .seen_ms = -1,
     .kv = {{"initialize", INIT_111},
            {"status", STATUS_N1},
            {"nodes/n2", N2_REPLICA_AT("0/3000000")},
            {"nodes/n3", N3_REPLICA_AT("0/5000000")}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "16.17: the primary runs synchronous mode (status says so): a replica whose own "
             "setting is off still promotes only a sync member",
     .me = "n3",
     .state = MG_HA_STATE_REPLICA,
     .have_data = true,
     .local_sysid = "111",
     .pg_running = true,
     .kv = {{"initialize", INIT_111},
            {"status", STATUS_N1_SYNC_N2},
            {"nodes/n2", N2_REPLICA_AT("0/3000000")},
            {"nodes/n3", N3_REPLICA_AT("0/5000000")}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_REPLICA},
    {.name = "hand-off lapsed to a target outside the failsafe set (no failover candidate "
             "ever): the old primary retakes the key (the property test found the wedge)",
     .me = "n1",
     .state = MG_HA_STATE_DEMOTED,
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .wall_ms = 1000 + 60001,
     .kv = {{"initialize", INIT_111},
            {"status", STATUS_N1_MEMBERS_N1_N3_HANDED_TO_N2},
            {"nodes/n2", N2_REPLICA_AT("0/3000028")}},
     .want_action = MG_HA_ACTION_START_PRIMARY,
     .want_state = MG_HA_STATE_PRIMARY,
     .want_in_reason = "lapsed"},
    {.name = "16.11: hand-off not lapsed yet: the old primary waits",
     .me = "n1",
     .state = MG_HA_STATE_DEMOTED,
     .have_data = true,
     .data_is_primary = true,
     .local_sysid = "111",
     .wall_ms = 1000 + 60000,
     .kv = {{"initialize", INIT_111}, {"status", STATUS_N1_HANDED_TO_N2}},
     .want_action = MG_HA_ACTION_WAIT,
     .want_state = MG_HA_STATE_DEMOTED},
};

/* test_safety_decisions: the issue 16 cases, with a switchover_timeout of 30 s. */
static void
test_safety_decisions(void **state)
{
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(safety_cases) / sizeof(safety_cases[0]); i++) {
        const case_t *c = &safety_cases[i];
        mg_ha_self_t self = {.name = c->me,
                             .max_nodes = 5,
                             .join_timeout_ms = 300000,
                             .switchover_timeout_ms = 30000,
                             .fresh_ms = c->fresh_ms,
                             .can_failover = true};

        failed += !check_case(c, &self);
    }
    assert_int_equal(failed, 0);
}

/* test_action_table: one row per action in enum order; refused allows nothing but none. */
static void
test_action_table(void **state)
{
    size_t n;
    const mg_ha_action_row_t *a = mg_ha_actions(&n);

    (void)state;
    assert_int_equal(n, MG_HA_ACTION_COUNT_);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal((int)a[i].action, (int)i);
        assert_non_null(a[i].name);
        assert_string_equal(mg_ha_action_name(a[i].action), a[i].name);
        assert_true(strlen(a[i].comment) > 0);
        assert_true(a[i].from_states != 0);
        if (a[i].action != MG_HA_ACTION_NONE)
            assert_false(a[i].from_states & MG_HA_STATE_BIT(MG_HA_STATE_REFUSED));
    }
    /* only a replica promotes; only a primary keeps the leader key and status */
    assert_int_equal(a[MG_HA_ACTION_PROMOTE].from_states, MG_HA_STATE_BIT(MG_HA_STATE_REPLICA));
    assert_int_equal(a[MG_HA_ACTION_MAINTAIN_PRIMARY].from_states,
                     MG_HA_STATE_BIT(MG_HA_STATE_PRIMARY));
    assert_string_equal(mg_ha_action_name((mg_ha_action_t)99), "unknown");
}

static void
test_names(void **state)
{
    mg_ha_state_t s;
    mg_ha_failover_t f;

    for (int i = 0; i < MG_HA_STATE_COUNT_; i++) {
        assert_true(mg_ha_state_parse(mg_ha_state_name((mg_ha_state_t)i), &s));
        assert_int_equal((int)s, i);
    }
    for (int i = 0; i < MG_HA_FAILOVER_COUNT_; i++) {
        assert_true(mg_ha_failover_parse(mg_ha_failover_name((mg_ha_failover_t)i), &f));
        assert_int_equal((int)f, i);
    }
    assert_string_equal(mg_ha_failover_name(MG_HA_FAILOVER_WAITING_FOR_CATCHUP),
                        "waiting_for_catchup");
    assert_false(mg_ha_state_parse("Primary", &s));
    assert_string_equal(mg_ha_state_name((mg_ha_state_t)99), "unknown");
}

#define N1_DEMOTED_DOWN \
    "{\"name\":\"n1\",\"state\":\"demoted\",\"role\":\"unknown\",\"pg_running\":false}"
#define STATUS_N1_TO_N2_SYNC                                                        \
    "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"promoting_new_primary\","  \
    "\"target_primary\":\"n2\",\"synchronous_mode\":true,\"sync_members\":[\"n2\"," \
    "\"n3\"]}"

/* promotion_names loads kv, sets n3's seen_ms and returns the sync list of n2's promotion. */
static const char *
promotion_names(const fake_kv_t *kv, int64_t n3_seen_ms, bool switchover, char *out, size_t outsz)
{
    case_t c = {.name = "promotion", .me = "n2", .state = MG_HA_STATE_REPLICA, .seen_ms = 9500};
    mg_ha_self_t self = {.name = "n2", .fresh_ms = 2000};
    mg_ha_view_t view;

    for (size_t i = 0; i < 8 && kv[i].key != NULL; i++)
        c.kv[i] = kv[i];
    fake_kv_load(&c, &view);
    view.now_ms = 10000;
    for (size_t i = 0; i < view.nnodes; i++)
        if (strcmp(view.nodes[i].name, "n3") == 0)
            view.nodes[i].seen_ms = n3_seen_ms;
    mg_ha_promotion_sync_names(&self, &view, switchover, out, outsz);
    return out;
}

/*
 * test_promotion_sync_names (issue 16, finding 14): the standbys a node
 * being promoted in synchronous mode waits for, and etcd's sync set with
 * them, leave out the dead old primary (and any node whose Postgres is down
 * or whose report is stale): every sync member must report before the next
 * failover may choose, so a dead one would make it need allow_data_loss.
 * The code before the fix took every other node of the view.
 */
static void
test_promotion_sync_names(void **state)
{
    char out[256];
    const fake_kv_t failover[] = {{"initialize", INIT_111},
                                  {"status", STATUS_N1_SYNC_N2},
                                  {"nodes/n1", N1_DEMOTED_DOWN},
                                  {"nodes/n2", N2_REPLICA_AT("0/3000000")},
                                  {"nodes/n3", N3_REPLICA_AT("0/3000000")},
                                  {NULL, NULL}};
    const fake_kv_t handed[] = {{"initialize", INIT_111},
                                {"status", STATUS_N1_TO_N2_SYNC},
                                {"nodes/n1", N1_DEMOTED_DOWN},
                                {"nodes/n2", N2_REPLICA_AT("0/3000000")},
                                {"nodes/n3", N3_REPLICA_AT("0/3000000")},
                                {NULL, NULL}};
    const fake_kv_t alone[] = {{"initialize", INIT_111},
                               {"status", STATUS_N1_TO_N2_SYNC},
                               {"nodes/n1", N1_DEMOTED_DOWN},
                               {"nodes/n2", N2_REPLICA_AT("0/3000000")},
                               {NULL, NULL}};

    (void)state;
    /* failover: the old primary's Postgres is down (start_timeout released it): left out */
    assert_string_equal(promotion_names(failover, 9500, false, out, sizeof(out)), "n3");
    /* a node whose report is stale (died with the old primary) is left out too */
    assert_string_equal(promotion_names(failover, 1000, false, out, sizeof(out)), "");
    assert_string_equal(promotion_names(failover, -1, false, out, sizeof(out)), "");
    /* switchover: the old primary, stopped on purpose, only when no other node runs */
    assert_string_equal(promotion_names(handed, 9500, true, out, sizeof(out)), "n3");
    assert_string_equal(promotion_names(handed, 1000, true, out, sizeof(out)), "n1");
    assert_string_equal(promotion_names(alone, 0, true, out, sizeof(out)), "n1");
    /* after a failover with nobody running: asynchronous (empty), never the dead node */
    assert_string_equal(promotion_names(alone, 0, false, out, sizeof(out)), "");
}

#define REPLICA_OF(name, up, lsn, extra)                                                        \
    "{\"name\":\"" name "\",\"state\":\"replica\",\"role\":\"replica\",\"pg_queries_ok\":true," \
    "\"pg_running\":true,\"priority\":100,\"upstream\":\"" up "\",\"receive_lsn\":\"" lsn       \
    "\",\"replay_lsn\":\"" lsn "\"" extra "}"
#define STATUS_N1_ASYNC "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"stable\"}"

/* candidate_of loads kv (leader key free) and returns n2's choice ("" = none) and why. */
static const char *
candidate_of(const fake_kv_t *kv, char *why, size_t whysz)
{
    case_t c = {.name = "candidate", .me = "n2", .state = MG_HA_STATE_REPLICA};
    mg_ha_self_t self = {.name = "n2", .max_lag_bytes = 1024 * 1024, .can_failover = true};
    mg_ha_view_t view;
    const mg_ha_node_t *n;

    for (size_t i = 0; i < 8 && kv[i].key != NULL; i++)
        c.kv[i] = kv[i];
    fake_kv_load(&c, &view);
    n = mg_ha_failover_candidate(&self, &view, why, whysz);
    return n != NULL ? n->name : "";
}

/*
 * test_lag_against_freshest_position (issue 16, finding 18): the lag limit
 * of an asynchronous failover is measured against the freshest position of
 * the lost primary anyone published — optime, the primary's last report,
 * what its replicas received — not against optime alone, which the
 * primary publishes only now and then. Here optime is 5 MB old: the old
 * code promoted n2 although n3 (nofailover) had received 5 MB more, all of
 * which a promotion of n2 would lose.
 */
static void
test_lag_against_freshest_position(void **state)
{
    char why[256], source[96];
    const fake_kv_t ahead[] = {
        {"initialize", INIT_111},
        {"status", STATUS_N1_ASYNC},
        {"optime", "0/3000000"},
        {"nodes/n2", REPLICA_OF("n2", "n1", "0/3000000", "")},
        {"nodes/n3", REPLICA_OF("n3", "n1", "0/3500000", ",\"nofailover\":true,\"priority\":0")},
        {NULL, NULL}};
    const fake_kv_t elsewhere[] = {
        {"initialize", INIT_111},
        {"status", STATUS_N1_ASYNC},
        {"optime", "0/3000000"},
        {"nodes/n2", REPLICA_OF("n2", "n1", "0/3000000", "")},
        {"nodes/n3", REPLICA_OF("n3", "n9", "0/3500000", ",\"nofailover\":true,\"priority\":0")},
        {NULL, NULL}};
    const fake_kv_t reported[] = {{"initialize", INIT_111},
                                  {"status", STATUS_N1_ASYNC},
                                  {"optime", "0/2000000"},
                                  {"nodes/n1", N1_PRIMARY_RUNNING},
                                  {"nodes/n2", REPLICA_OF("n2", "n1", "0/2E00000", "")},
                                  {NULL, NULL}};
    const fake_kv_t close[] = {
        {"initialize", INIT_111},
        {"status", STATUS_N1_ASYNC},
        {"optime", "0/3000000"},
        {"nodes/n2", REPLICA_OF("n2", "n1", "0/3000000", "")},
        {"nodes/n3", REPLICA_OF("n3", "n1", "0/3080000", ",\"nofailover\":true,\"priority\":0")},
        {NULL, NULL}};
    mg_ha_view_t view;
    case_t c = {.name = "position", .me = "n2", .state = MG_HA_STATE_REPLICA};

    (void)state;
    assert_string_equal(candidate_of(ahead, why, sizeof(why)), "");
    assert_non_null(strstr(why, "0/3500000"));
    if (strstr(why, "received by n3") == NULL)
        fail_msg("why: %s", why);
    /* a node following another upstream says nothing about this primary */
    assert_string_equal(candidate_of(elsewhere, why, sizeof(why)), "n2");
    /* the primary's own last report counts: optime (0/2000000) lags it by 16 MB */
    assert_string_equal(candidate_of(reported, why, sizeof(why)), "");
    for (size_t i = 0; i < 8 && reported[i].key != NULL; i++)
        c.kv[i] = reported[i];
    fake_kv_load(&c, &view);
    assert_int_equal(mg_ha_primary_position(&view, source, sizeof(source)), 0x3000000);
    /* within the limit of the freshest position: promoted */
    assert_string_equal(candidate_of(close, why, sizeof(why)), "n2");
    for (size_t i = 0; i < 8 && close[i].key != NULL; i++)
        c.kv[i] = close[i];
    fake_kv_load(&c, &view);
    assert_int_equal(mg_ha_primary_position(&view, source, sizeof(source)), 0x3080000);
    assert_string_equal(source, "what was received by n3");
}

/* decide_at runs mg_ha_decide on a fake KV with the start_timeout inputs set. */
static mg_ha_decision_t
decide_at(const case_t *c, int64_t start_timeout_ms, int64_t down_since_ms, int64_t hold_until_ms,
          bool queries_ok)
{
    mg_ha_self_t self = {.name = c->me, .max_nodes = 5, .join_timeout_ms = 300000};
    mg_ha_view_t view;
    mg_ha_decision_t d;
    mg_error_t error;

    self.start_timeout_ms = start_timeout_ms;
    fake_kv_load(c, &view);
    view.pg_queries_ok = queries_ok;
    view.primary_down_since_ms = down_since_ms;
    view.start_hold_until_ms = hold_until_ms;
    if (!mg_ha_decide(&self, &view, &d, &error))
        fail_msg("case \"%s\": %s", c->name, error.message);
    assert_non_null(mg_ha_transition_find(c->state, d.next_state));
    return d;
}

#define ASSERT_DECISION(d, want_action, want_state)                                         \
    do {                                                                                    \
        if ((d).action != (want_action) || (d).next_state != (want_state))                  \
            fail_msg("line %d: got %s -> %s (%s)", __LINE__, mg_ha_action_name((d).action), \
                     mg_ha_state_name((d).next_state), (d).reason);                         \
    } while (0)

/*
 * test_start_timeout: a primary (or a node restarting as one) whose
 * Postgres has not been writable for start_timeout releases the leader
 * key; after that it does not retake a free key while the hold lasts.
 */
static void
test_start_timeout(void **state)
{
    const int64_t T = 60000, NOW = 1000000;
    case_t down = {.name = "primary, Postgres down",
                   .me = "n1",
                   .state = MG_HA_STATE_PRIMARY,
                   .have_data = true,
                   .data_is_primary = true,
                   .local_sysid = "111",
                   .kv = {{"initialize", INIT_111}, LEADER("n1"), {"status", STATUS_N1}},
                   .now_ms = NOW};
    mg_ha_decision_t d;

    (void)state;
    /* not down (yet), or down for less than the timeout: start it again */
    d = decide_at(&down, T, 0, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY);
    d = decide_at(&down, T, NOW - T + 1, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY);
    /* down for start_timeout: release the key */
    d = decide_at(&down, T, NOW - T, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_RELEASE_LEADER, MG_HA_STATE_DEMOTED);
    assert_non_null(strstr(d.reason, "start_timeout"));
    assert_string_equal(d.peer, "n1");
    /* 0 = never give up */
    d = decide_at(&down, 0, 1, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY);
    /* running but not writable (crash recovery that does not end) counts too */
    down.pg_running = true;
    d = decide_at(&down, T, NOW - T, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_RELEASE_LEADER, MG_HA_STATE_DEMOTED);
    d = decide_at(&down, T, 0, 0, true);
    ASSERT_DECISION(d, MG_HA_ACTION_MAINTAIN_PRIMARY, MG_HA_STATE_PRIMARY);
    down.pg_running = false;
    /* the key held by another node: the ordinary demotion, not a release */
    down.kv[1] = (fake_kv_t)LEADER("n3");
    d = decide_at(&down, T, NOW - T, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_DEMOTE, MG_HA_STATE_DEMOTED);
    /* daemon restarted while the key still names it: same bound */
    down.kv[1] = (fake_kv_t)LEADER("n1");
    down.state = MG_HA_STATE_INIT;
    d = decide_at(&down, T, NOW - T, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_RELEASE_LEADER, MG_HA_STATE_DEMOTED);
    d = decide_at(&down, T, NOW - 1, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY);
    /* after the release: the key is free and status still names us; hold, then retry */
    down.state = MG_HA_STATE_DEMOTED;
    down.kv[1] = (fake_kv_t){"status", STATUS_N1};
    down.kv[2] = (fake_kv_t){NULL, NULL};
    d = decide_at(&down, T, 0, NOW + 1, false);
    ASSERT_DECISION(d, MG_HA_ACTION_WAIT, MG_HA_STATE_DEMOTED);
    assert_non_null(strstr(d.reason, "gave up"));
    d = decide_at(&down, T, 0, NOW, false);
    ASSERT_DECISION(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY);
    down.state = MG_HA_STATE_INIT; /* restarted during the hold: the hold is in memory only */
    d = decide_at(&down, T, 0, NOW + 1, false);
    ASSERT_DECISION(d, MG_HA_ACTION_WAIT, MG_HA_STATE_INIT);
    /* bootstrap: nobody could take over, keep trying */
    down.state = MG_HA_STATE_BOOTSTRAP;
    down.kv[0] = (fake_kv_t){"initialize", INIT_EMPTY};
    down.kv[1] = (fake_kv_t)LEADER("n1");
    d = decide_at(&down, T, 1, 0, false);
    ASSERT_DECISION(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY);
}

/* test_sweep: every combination of local facts and etcd contents decides within the table. */
static void
test_sweep(void **state)
{
    static const fake_kv_t kvsets[][5] = {
        {{NULL, NULL}},
        {{"initialize", INIT_EMPTY}},
        {{"initialize", INIT_111}},
        {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_WITH_N2_SLOT}},
        {{"initialize", INIT_111}, LEADER("n1"), {"nodes/n1", N1_PRIMARY_BROKEN}},
        {{"initialize", INIT_111}, {"status", STATUS_N1}},
        {{"initialize", INIT_111}, LEADER("n3"), {"status", STATUS_N3}},
    };
    static const char *const mes[] = {"n1", "n2"};
    static const char *const sysids[] = {"", "111", "222"};
    size_t count = 0;

    for (int st = 0; st < MG_HA_STATE_COUNT_; st++)
        for (size_t k = 0; k < sizeof(kvsets) / sizeof(kvsets[0]); k++)
            for (int m = 0; m < 2; m++)
                for (int flags = 0; flags < 16; flags++)
                    for (int s = 0; s < 3; s++) {
                        case_t c = {.name = "sweep", .me = mes[m], .state = (mg_ha_state_t)st};
                        mg_ha_self_t self = {
                            .name = mes[m], .max_nodes = 5, .join_timeout_ms = 1000};
                        mg_ha_view_t view;
                        mg_ha_decision_t d;
                        mg_error_t error;

                        memcpy(c.kv, kvsets[k], sizeof(kvsets[k]));
                        c.have_data = flags & 1;
                        c.pg_running = flags & 2;
                        c.now_ms = (flags & 4) ? 5000 : 0;
                        c.local_sysid = sysids[s];
                        fake_kv_load(&c, &view);
                        if (flags & 8) { /* start_timeout expired and a hold in force */
                            self.start_timeout_ms = 1000;
                            view.primary_down_since_ms = 1;
                            view.start_hold_until_ms = c.now_ms + 1;
                        }
                        if (!mg_ha_decide(&self, &view, &d, &error))
                            fail_msg("state %s kvset %zu flags %d: %s",
                                     mg_ha_state_name((mg_ha_state_t)st), k, flags, error.message);
                        assert_non_null(mg_ha_transition_find(view.state, d.next_state));
                        count++;
                    }
    assert_true(count > 1000);
}

/* load_one loads one key (relative to PREFIX) with value into view; the load never fails. */
static void
load_one(mg_ha_view_t *view, const char *rel, const char *value, size_t len)
{
    char key[256];
    mg_etcd_kv_t kv;
    mg_error_t error;

    snprintf(key, sizeof(key), PREFIX "%s", rel);
    kv = (mg_etcd_kv_t){key, strlen(key), (char *)value, len, 2, 7, 1, 0};
    memset(view, 0, sizeof(*view));
    assert_true(mg_ha_view_load(view, PREFIX, &kv, 1, &error));
}

/*
 * test_view_bad_values (issue 16, finding 15; issue 17, items 2 and 9): one
 * malformed, oversized, deeply nested or hostile key costs only that key,
 * named in view->bad; the rest of the view loads. Before, any of them made
 * the whole view fail to load (no failover while it existed), and a deep
 * array overflowed the stack of every daemon.
 */
static void
test_view_bad_values(void **state)
{
    mg_ha_view_t *view = calloc(1, sizeof(*view));
    static const char hostile_host[] =
        "{\"name\":\"n1\",\"state\":\"primary\",\"role\":\"primary\",\"pg_queries_ok\":true,"
        "\"host\":\"x' work_mem='77MB\",\"pg_port\":5432}";
    static const char hostile_sync[] =
        "{\"primary\":\"n1\",\"term\":3,\"failover_state\":\"stable\",\"sync_members\":"
        "[\"n2\",\"x'\\nrestore_command='touch /tmp/owned'\\n#\"]}";
    size_t deep_len = 1024 * 1024;
    char *deep = malloc(deep_len);
    mg_etcd_kv_t kvs[2];
    char k1[] = PREFIX "nodes/n1", k2[] = PREFIX "nodes/n3";
    char bad[] = "{\"name\": ";
    mg_error_t error;

    (void)state;
    assert_non_null(view);
    assert_non_null(deep);
    memset(deep, '[', deep_len);
    /* a malformed node next to a good one: only the bad one is skipped */
    kvs[0] = (mg_etcd_kv_t){k1, strlen(k1), bad, strlen(bad), 2, 2, 1, 0};
    kvs[1] = (mg_etcd_kv_t){k2, strlen(k2), (char *)N3_REPLICA, strlen(N3_REPLICA), 3, 3, 1, 0};
    memset(view, 0, sizeof(*view));
    assert_true(mg_ha_view_load(view, PREFIX, kvs, 2, &error));
    assert_int_equal(view->nnodes, 1);
    assert_string_equal(view->nodes[0].name, "n3");
    assert_int_equal(view->nbad, 1);
    assert_non_null(strstr(view->bad[0].key, "nodes/n1"));
    /* 1 MB of '[': refused before the recursive parser sees it */
    load_one(view, "nodes/n1", deep, deep_len);
    assert_int_equal(view->nnodes, 0);
    assert_int_equal(view->nbad, 1);
    assert_non_null(strstr(view->bad[0].why, "nested"));
    /* a host that would write a setting into primary_conninfo: skipped */
    load_one(view, "nodes/n1", hostile_host, strlen(hostile_host));
    assert_int_equal(view->nnodes, 0);
    assert_non_null(strstr(view->bad[0].why, "host"));
    /* a record under another node's key: skipped */
    load_one(view, "nodes/n2", N3_REPLICA, strlen(N3_REPLICA));
    assert_int_equal(view->nnodes, 0);
    /* a status with an unknown state exists but names nobody; a hostile member is dropped */
    load_one(view, "status", "{\"primary\":\"n1\",\"failover_state\":\"exploded\"}", 44);
    assert_true(view->status.exists);
    assert_string_equal(view->status.primary, "");
    assert_non_null(strstr(view->bad[0].why, "exploded"));
    load_one(view, "status", hostile_sync, strlen(hostile_sync));
    assert_string_equal(view->status.primary, "n1");
    assert_int_equal(view->status.nsync_members, 1);
    assert_string_equal(view->status.sync_members[0], "n2");
    assert_int_equal(view->nbad, 1);
    /* a leader key that holds no node name is held by nobody known */
    load_one(view, "leader", "n1\n", 3);
    assert_string_equal(view->leader, MG_HA_LEADER_INVALID);
    assert_int_equal(view->nbad, 1);
    /* an optime that is no LSN is ignored */
    load_one(view, "optime", "0/ZZ", 4);
    assert_string_equal(view->optime, "");
    assert_int_equal(view->nbad, 1);
    free(deep);
    free(view);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decisions),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_action_table),
        cmocka_unit_test(test_safety_decisions),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_view_bad_values),
        cmocka_unit_test(test_start_timeout),
        cmocka_unit_test(test_promotion_sync_names),
        cmocka_unit_test(test_lag_against_freshest_position),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
