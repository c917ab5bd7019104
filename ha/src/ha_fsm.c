/*
 * ha/src/ha_fsm.c - the node state machine: canonical names, the one
 * transition table, and mg_ha_decide, the pure function from a view (etcd
 * contents + local facts + clock) to this node's next action.
 */
#include "mg/ha.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const state_names[MG_HA_STATE_COUNT_] = {
    "init", "bootstrap", "wait_primary", "clone", "primary", "replica", "refused",
};

static const char *const failover_names[MG_HA_FAILOVER_COUNT_] = {
    "stable",
    "initiated",
    "waiting_for_catchup",
    "demoting_old_primary",
    "promoting_new_primary",
    "reconfiguring_replicas",
};

static const char *const action_names[MG_HA_ACTION_COUNT_] = {
    "none",  "wait",          "claim_initialize", "initdb",           "start_primary",
    "clone", "start_replica", "maintain_primary", "maintain_replica", "refuse",
};

const char *
mg_ha_state_name(mg_ha_state_t state)
{
    return (unsigned)state < MG_HA_STATE_COUNT_ ? state_names[state] : "unknown";
}

bool
mg_ha_state_parse(const char *name, mg_ha_state_t *state)
{
    for (int i = 0; i < MG_HA_STATE_COUNT_; i++)
        if (name != NULL && strcmp(name, state_names[i]) == 0) {
            *state = (mg_ha_state_t)i;
            return true;
        }
    return false;
}

const char *
mg_ha_failover_name(mg_ha_failover_t failover)
{
    return (unsigned)failover < MG_HA_FAILOVER_COUNT_ ? failover_names[failover] : "unknown";
}

bool
mg_ha_failover_parse(const char *name, mg_ha_failover_t *failover)
{
    for (int i = 0; i < MG_HA_FAILOVER_COUNT_; i++)
        if (name != NULL && strcmp(name, failover_names[i]) == 0) {
            *failover = (mg_ha_failover_t)i;
            return true;
        }
    return false;
}

const char *
mg_ha_action_name(mg_ha_action_t action)
{
    return (unsigned)action < MG_HA_ACTION_COUNT_ ? action_names[action] : "unknown";
}

/*
 * The transition table: every state change the daemon may make. A decision
 * whose (state, next_state) is not a row here is a bug. Staying in a state
 * is a row too, so "nothing changes" is also checked.
 */
static const mg_ha_transition_t transitions[] = {
    {MG_HA_STATE_INIT, MG_HA_STATE_INIT, "etcd unreachable or nothing decided yet"},
    {MG_HA_STATE_INIT, MG_HA_STATE_BOOTSTRAP, "won the create-only initialize txn"},
    {MG_HA_STATE_INIT, MG_HA_STATE_WAIT_PRIMARY, "cluster exists, no data: join it"},
    {MG_HA_STATE_INIT, MG_HA_STATE_CLONE, "no data, primary already has our slot: clone"},
    {MG_HA_STATE_INIT, MG_HA_STATE_PRIMARY, "restart: own data, we were the primary"},
    {MG_HA_STATE_INIT, MG_HA_STATE_REPLICA, "restart: own data, another node is primary"},
    {MG_HA_STATE_INIT, MG_HA_STATE_REFUSED, "foreign system identifier or too many nodes"},
    {MG_HA_STATE_BOOTSTRAP, MG_HA_STATE_BOOTSTRAP, "initdb failed: retry"},
    {MG_HA_STATE_BOOTSTRAP, MG_HA_STATE_PRIMARY, "initdb done: start as primary"},
    {MG_HA_STATE_BOOTSTRAP, MG_HA_STATE_REFUSED, "data dir does not match initialize"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_WAIT_PRIMARY, "no primary or no slot yet"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_CLONE, "primary created our slot: clone"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_REPLICA, "own data and a primary to follow"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_PRIMARY, "own data, leader free, we are the primary"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_REFUSED, "join timeout or too many nodes"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_CLONE, "clone failed: retry"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_WAIT_PRIMARY, "clone failed and the primary went away"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_REPLICA, "clone done: start as standby"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_REFUSED, "cloned data does not match initialize"},
    {MG_HA_STATE_PRIMARY, MG_HA_STATE_PRIMARY, "keep the leader key, slots and status"},
    {MG_HA_STATE_PRIMARY, MG_HA_STATE_REFUSED, "data dir does not match initialize"},
    {MG_HA_STATE_REPLICA, MG_HA_STATE_REPLICA, "keep following the primary"},
    {MG_HA_STATE_REPLICA, MG_HA_STATE_REFUSED, "data dir does not match initialize"},
    {MG_HA_STATE_REFUSED, MG_HA_STATE_REFUSED, "terminal"},
};

const mg_ha_transition_t *
mg_ha_transitions(size_t *count)
{
    *count = sizeof(transitions) / sizeof(transitions[0]);
    return transitions;
}

const mg_ha_transition_t *
mg_ha_transition_find(mg_ha_state_t from, mg_ha_state_t to)
{
    for (size_t i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++)
        if (transitions[i].from == from && transitions[i].to == to)
            return &transitions[i];
    return NULL;
}

const mg_ha_node_t *
mg_ha_view_find_node(const mg_ha_view_t *view, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return NULL;
    for (size_t i = 0; i < view->nnodes; i++)
        if (strcmp(view->nodes[i].name, name) == 0)
            return &view->nodes[i];
    return NULL;
}

static void set(mg_ha_decision_t *d, mg_ha_action_t action, mg_ha_state_t next, const char *peer,
                const char *fmt, ...) MG_PRINTF(5, 6);

static void
set(mg_ha_decision_t *d, mg_ha_action_t action, mg_ha_state_t next, const char *peer,
    const char *fmt, ...)
{
    va_list ap;

    d->action = action;
    d->next_state = next;
    snprintf(d->peer, sizeof(d->peer), "%s", peer ? peer : "");
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

/* healthy_primary returns the node that holds `leader` and reports itself primary. */
static const mg_ha_node_t *
healthy_primary(const mg_ha_view_t *view)
{
    const mg_ha_node_t *n = mg_ha_view_find_node(view, view->leader);

    if (n == NULL || n->state != MG_HA_STATE_PRIMARY || strcmp(n->role, "primary") != 0 ||
        !n->pg_queries_ok)
        return NULL;
    return n;
}

static bool
has_slot(const mg_ha_node_t *primary, const char *slot)
{
    for (size_t i = 0; i < primary->nslots; i++)
        if (strcmp(primary->slots[i], slot) == 0)
            return true;
    return false;
}

/* registered_before counts other nodes whose key was created before ours. */
static size_t
registered_before(const mg_ha_self_t *self, const mg_ha_view_t *view)
{
    const mg_ha_node_t *me = mg_ha_view_find_node(view, self->name);
    size_t n = 0;

    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *o = &view->nodes[i];

        if (strcmp(o->name, self->name) == 0 || o->state == MG_HA_STATE_REFUSED)
            continue;
        if (me == NULL || o->create_revision < me->create_revision)
            n++;
    }
    return n;
}

/* decide_with_data: own data dir matching the cluster; which role to start in. */
static void
decide_with_data(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d)
{
    const char *me = self->name;

    if (strcmp(view->leader, me) == 0) {
        set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
            "this node holds the leader key");
    } else if (view->leader[0] == '\0' && view->status.exists &&
               strcmp(view->status.primary, me) == 0) {
        set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
            "leader key free and status names this node primary (term %lld)",
            (long long)view->status.term);
    } else if (view->leader[0] == '\0' && !view->status.exists &&
               strcmp(view->init_node, me) == 0) {
        set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
            "this node initialized the cluster and no status exists yet");
    } else if (healthy_primary(view) != NULL) {
        set(d, MG_HA_ACTION_START_REPLICA, MG_HA_STATE_REPLICA, view->leader,
            "primary %s is up: follow it", view->leader);
    } else {
        set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_WAIT_PRIMARY, view->leader,
            "no healthy primary to follow (leader \"%s\", status primary \"%s\")", view->leader,
            view->status.primary);
    }
}

/* decide_join: no data yet; wait for a primary and our slot, then clone. */
static void
decide_join(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d)
{
    const mg_ha_node_t *primary = healthy_primary(view);
    size_t before = registered_before(self, view);
    char slot[MG_HA_NAME_SIZE];

    if ((int64_t)before + 1 > self->max_nodes) {
        set(d, MG_HA_ACTION_REFUSE, MG_HA_STATE_REFUSED, NULL,
            "node %s refused: the cluster already has %zu nodes and max_nodes is %lld", self->name,
            before, (long long)self->max_nodes);
        return;
    }
    if (view->now_ms - view->join_started_ms > self->join_timeout_ms) {
        set(d, MG_HA_ACTION_REFUSE, MG_HA_STATE_REFUSED, NULL,
            "node %s refused: could not join within join_timeout %lldms (%s)", self->name,
            (long long)self->join_timeout_ms,
            primary == NULL ? "no healthy primary" : "no replication slot");
        return;
    }
    if (primary == NULL) {
        set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_WAIT_PRIMARY, NULL,
            view->init_sysid[0] == '\0' ? "cluster is being initialized by %s"
                                        : "waiting for a primary (initialized by %s)",
            view->init_node);
        return;
    }
    mg_ha_slot_name(self->name, slot, sizeof(slot));
    if (!has_slot(primary, slot)) {
        set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_WAIT_PRIMARY, primary->name,
            "waiting for primary %s to create slot %s", primary->name, slot);
        return;
    }
    set(d, MG_HA_ACTION_CLONE, MG_HA_STATE_CLONE, primary->name,
        "primary %s has slot %s: clone with pg_basebackup", primary->name, slot);
}

bool
mg_ha_decide(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d,
             mg_error_t *error)
{
    const char *me = self->name;

    memset(d, 0, sizeof(*d));
    if (view->state == MG_HA_STATE_REFUSED) {
        set(d, MG_HA_ACTION_NONE, MG_HA_STATE_REFUSED, NULL, "refused earlier");
    } else if (view->have_initialize && view->init_sysid[0] != '\0' && view->have_data &&
               view->local_sysid[0] != '\0' && strcmp(view->init_sysid, view->local_sysid) != 0) {
        set(d, MG_HA_ACTION_REFUSE, MG_HA_STATE_REFUSED, NULL,
            "node %s refused: data dir has system identifier %s but the cluster was initialized "
            "with %s",
            me, view->local_sysid, view->init_sysid);
    } else {
        switch (view->state) {
        case MG_HA_STATE_INIT:
            if (!view->have_initialize)
                set(d, MG_HA_ACTION_CLAIM_INITIALIZE, MG_HA_STATE_BOOTSTRAP, me,
                    view->have_data ? "no cluster in etcd: claim it with the existing data dir"
                                    : "no cluster in etcd: claim initialize and run initdb");
            else if (view->init_sysid[0] == '\0' && strcmp(view->init_node, me) == 0)
                set(d, view->have_data ? MG_HA_ACTION_START_PRIMARY : MG_HA_ACTION_INITDB,
                    view->have_data ? MG_HA_STATE_PRIMARY : MG_HA_STATE_BOOTSTRAP, me,
                    "resuming the bootstrap this node claimed");
            else if (view->have_data && view->init_sysid[0] != '\0')
                decide_with_data(self, view, d);
            else if (view->have_data)
                set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_WAIT_PRIMARY, view->init_node,
                    "cluster is being initialized by %s", view->init_node);
            else
                decide_join(self, view, d);
            break;
        case MG_HA_STATE_BOOTSTRAP:
            if (!view->have_data)
                set(d, MG_HA_ACTION_INITDB, MG_HA_STATE_BOOTSTRAP, me, "run initdb");
            else
                set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
                    "data dir ready: start as primary");
            break;
        case MG_HA_STATE_WAIT_PRIMARY:
            if (view->have_data && view->init_sysid[0] != '\0')
                decide_with_data(self, view, d);
            else
                decide_join(self, view, d);
            break;
        case MG_HA_STATE_CLONE:
            if (view->have_data)
                set(d, MG_HA_ACTION_START_REPLICA, MG_HA_STATE_REPLICA, view->leader,
                    "clone done: start as standby of %s", view->leader);
            else
                decide_join(self, view, d);
            break;
        case MG_HA_STATE_PRIMARY:
            if (view->leader[0] != '\0' && strcmp(view->leader, me) != 0)
                set(d, MG_HA_ACTION_NONE, MG_HA_STATE_PRIMARY, view->leader,
                    "leader key held by %s: not serving writes", view->leader);
            else if (!view->pg_running)
                set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
                    "Postgres is not running: start it");
            else
                set(d, MG_HA_ACTION_MAINTAIN_PRIMARY, MG_HA_STATE_PRIMARY, me, "primary running");
            break;
        case MG_HA_STATE_REPLICA: {
            const char *peer = view->leader[0] ? view->leader : view->status.primary;

            if (!view->pg_running)
                set(d, MG_HA_ACTION_START_REPLICA, MG_HA_STATE_REPLICA, peer,
                    "Postgres is not running: start the standby");
            else
                set(d, MG_HA_ACTION_MAINTAIN_REPLICA, MG_HA_STATE_REPLICA, peer, "standby running");
            break;
        }
        default:
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                "invalid node state %d", (int)view->state);
        }
    }
    if (mg_ha_transition_find(view->state, d->next_state) == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "invariant violated: no transition %s -> %s in the table (action %s)",
                            mg_ha_state_name(view->state), mg_ha_state_name(d->next_state),
                            mg_ha_action_name(d->action));
    return true;
}
