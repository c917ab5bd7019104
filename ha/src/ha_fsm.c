/*
 * ha/src/ha_fsm.c - the node state machine: canonical names, the one
 * transition table, and mg_ha_decide, the pure function from a view (etcd
 * contents + local facts + clock) to this node's next action.
 */
#include "mg/ha.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

static const char *const state_names[MG_HA_STATE_COUNT_] = {
    "init", "bootstrap", "wait_primary", "clone", "primary", "replica", "refused", "demoted",
};

static const char *const failover_names[MG_HA_FAILOVER_COUNT_] = {
    "stable",
    "initiated",
    "waiting_for_catchup",
    "demoting_old_primary",
    "promoting_new_primary",
    "reconfiguring_replicas",
};

#define B(s) MG_HA_STATE_BIT(MG_HA_STATE_##s)
#define ANY_BUT_REFUSED \
    (B(INIT) | B(BOOTSTRAP) | B(WAIT_PRIMARY) | B(CLONE) | B(PRIMARY) | B(REPLICA) | B(DEMOTED))

/*
 * The action table: what each action does and the states it may be decided
 * in, beside the transition table below (the daemon binds each row to its
 * function in ha_actions.c, in this order). mg_ha_decide checks every
 * decision against both tables.
 */
static const mg_ha_action_row_t actions[] = {
    {MG_HA_ACTION_NONE, "none", B(REFUSED), "nothing (refused earlier)"},
    {MG_HA_ACTION_WAIT, "wait", B(INIT) | B(WAIT_PRIMARY) | B(CLONE) | B(REPLICA) | B(DEMOTED),
     "nothing this round: wait for a primary, a slot, initialize, a catch-up or a hold"},
    {MG_HA_ACTION_CLAIM_INITIALIZE, "claim_initialize", B(INIT), "create-only txn on initialize"},
    {MG_HA_ACTION_INITDB, "initdb", B(INIT) | B(BOOTSTRAP),
     "initdb --data-checksums, then the system identifier into initialize"},
    {MG_HA_ACTION_START_PRIMARY, "start_primary",
     B(INIT) | B(BOOTSTRAP) | B(WAIT_PRIMARY) | B(PRIMARY) | B(DEMOTED),
     "take the leader key, arm the fence, start Postgres as primary, status names us"},
    {MG_HA_ACTION_CLONE, "clone", B(INIT) | B(WAIT_PRIMARY) | B(CLONE),
     "check our slot on the primary, pg_basebackup -S slot"},
    {MG_HA_ACTION_START_REPLICA, "start_replica", B(INIT) | B(WAIT_PRIMARY) | B(CLONE) | B(REPLICA),
     "standby configuration, start Postgres"},
    {MG_HA_ACTION_MAINTAIN_PRIMARY, "maintain_primary", B(PRIMARY),
     "keep the leader key, status, optime, synchronous standbys and slots"},
    {MG_HA_ACTION_MAINTAIN_REPLICA, "maintain_replica", B(REPLICA), "nothing: the standby runs"},
    {MG_HA_ACTION_REFUSE, "refuse", ANY_BUT_REFUSED, "record ha.refused; the daemon exits 1"},
    {MG_HA_ACTION_PROMOTE, "promote", B(REPLICA),
     "take the leader key (create-only), arm the fence, pg_promote, status term + 1"},
    {MG_HA_ACTION_FOLLOW, "follow", B(REPLICA),
     "point primary_conninfo at the new primary, reload"},
    {MG_HA_ACTION_DEMOTE, "demote", B(INIT) | B(WAIT_PRIMARY) | B(PRIMARY) | B(DEMOTED),
     "stop writes: /primary 503, stop Postgres; in a switchover record the final LSN"},
    {MG_HA_ACTION_REJOIN, "rejoin", B(REPLICA) | B(DEMOTED),
     "CHECKPOINT on the primary, pg_rewind, standby configuration, start"},
    {MG_HA_ACTION_RECLONE, "reclone", B(REPLICA) | B(DEMOTED),
     "remove the data dir; join again with pg_basebackup"},
    {MG_HA_ACTION_SWITCHOVER_BEGIN, "switchover_begin", B(PRIMARY),
     "status initiated with a target, or the request refused"},
    {MG_HA_ACTION_HANDOFF, "handoff", B(DEMOTED),
     "one txn: delete leader, status promoting_new_primary"},
    {MG_HA_ACTION_ABORT_SWITCHOVER, "abort_switchover", B(DEMOTED),
     "status stable, start Postgres as primary again"},
    {MG_HA_ACTION_FINISH_FAILOVER, "finish_failover", B(PRIMARY), "status stable"},
    {MG_HA_ACTION_RELEASE_LEADER, "release_leader",
     B(INIT) | B(WAIT_PRIMARY) | B(PRIMARY) | B(DEMOTED),
     "stop Postgres, delete the leader key (start_timeout), hold off retaking it"},
    {MG_HA_ACTION_DROP_LEADER, "drop_leader", B(REPLICA) | B(DEMOTED),
     "delete a leader key naming this standby that this run did not take; the election runs"},
};

_Static_assert(sizeof(actions) / sizeof(actions[0]) == MG_HA_ACTION_COUNT_, "one row per action");

#undef B
#undef ANY_BUT_REFUSED

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
    return (unsigned)action < MG_HA_ACTION_COUNT_ ? actions[action].name : "unknown";
}

const mg_ha_action_row_t *
mg_ha_actions(size_t *count)
{
    *count = sizeof(actions) / sizeof(actions[0]);
    return actions;
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
    {MG_HA_STATE_INIT, MG_HA_STATE_DEMOTED,
     "restart: own data was a primary, another leads; or start_timeout: release leader"},
    {MG_HA_STATE_INIT, MG_HA_STATE_REFUSED, "foreign system identifier or too many nodes"},
    {MG_HA_STATE_BOOTSTRAP, MG_HA_STATE_BOOTSTRAP, "initdb failed: retry"},
    {MG_HA_STATE_BOOTSTRAP, MG_HA_STATE_PRIMARY, "initdb done: start as primary"},
    {MG_HA_STATE_BOOTSTRAP, MG_HA_STATE_REFUSED, "data dir does not match initialize"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_WAIT_PRIMARY, "no primary or no slot yet"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_CLONE, "primary created our slot: clone"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_REPLICA, "own data and a primary to follow"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_PRIMARY, "own data, leader free, we are the primary"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_DEMOTED, "own data was a primary, another leads"},
    {MG_HA_STATE_WAIT_PRIMARY, MG_HA_STATE_REFUSED, "join timeout or too many nodes"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_CLONE, "clone failed: retry"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_WAIT_PRIMARY, "clone failed and the primary went away"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_REPLICA, "clone done: start as standby"},
    {MG_HA_STATE_CLONE, MG_HA_STATE_REFUSED, "cloned data does not match initialize"},
    {MG_HA_STATE_PRIMARY, MG_HA_STATE_PRIMARY, "keep the leader key, slots and status"},
    {MG_HA_STATE_PRIMARY, MG_HA_STATE_DEMOTED,
     "leader key lost, switchover, or no Postgres within start_timeout: stop writes"},
    {MG_HA_STATE_PRIMARY, MG_HA_STATE_REFUSED, "data dir does not match initialize"},
    {MG_HA_STATE_REPLICA, MG_HA_STATE_REPLICA, "keep following the primary"},
    {MG_HA_STATE_REPLICA, MG_HA_STATE_PRIMARY, "leader key won by create-only txn: promote"},
    {MG_HA_STATE_REPLICA, MG_HA_STATE_WAIT_PRIMARY, "cannot catch up: re-clone"},
    {MG_HA_STATE_REPLICA, MG_HA_STATE_REFUSED, "data dir does not match initialize"},
    {MG_HA_STATE_DEMOTED, MG_HA_STATE_DEMOTED, "waiting: catch-up, hand-off or a new primary"},
    {MG_HA_STATE_DEMOTED, MG_HA_STATE_PRIMARY, "switchover aborted or leader key still ours"},
    {MG_HA_STATE_DEMOTED, MG_HA_STATE_REPLICA, "rewound: follow the new primary"},
    {MG_HA_STATE_DEMOTED, MG_HA_STATE_WAIT_PRIMARY, "rewind failed too often: re-clone"},
    {MG_HA_STATE_DEMOTED, MG_HA_STATE_REFUSED, "data dir does not match initialize"},
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

bool
mg_ha_lsn_parse(const char *text, uint64_t *lsn)
{
    unsigned int hi, lo;
    char extra;

    if (text == NULL || sscanf(text, "%X/%X%c", &hi, &lo, &extra) != 2)
        return false;
    *lsn = ((uint64_t)hi << 32) | lo;
    return true;
}

int64_t
mg_ha_fence_deadline(int64_t lease_ok_ms, int64_t failsafe_until_ms, int64_t ttl_ms,
                     int64_t margin_ms)
{
    int64_t lease_until = lease_ok_ms > 0 ? lease_ok_ms + ttl_ms - margin_ms : 0;

    return failsafe_until_ms > lease_until ? failsafe_until_ms : lease_until;
}

/* node_lsn is the most WAL a replica has: max(receive, replay); 0 when unknown. */
static uint64_t
node_lsn(const mg_ha_node_t *n)
{
    uint64_t r = 0, p = 0;

    (void)mg_ha_lsn_parse(n->receive_lsn, &r);
    (void)mg_ha_lsn_parse(n->replay_lsn, &p);
    return r > p ? r : p;
}

static bool
fresh(const mg_ha_self_t *self, const mg_ha_view_t *view, const mg_ha_node_t *n)
{
    if (self->fresh_ms <= 0)
        return true;
    if (n->seen_ms != 0) /* observed by this node: no other clock involved */
        return n->seen_ms > 0 && view->now_ms - n->seen_ms <= self->fresh_ms;
    return view->wall_ms - n->updated_ms <= self->fresh_ms;
}

static bool
in_sync_set(const mg_ha_view_t *view, const char *name)
{
    for (size_t i = 0; i < view->status.nsync_members; i++)
        if (strcmp(view->status.sync_members[i], name) == 0)
            return true;
    return false;
}

/* better says whether a beats b: LSN, then priority, then the smaller name. */
static bool
better(const mg_ha_node_t *a, const mg_ha_node_t *b)
{
    uint64_t la = node_lsn(a), lb = node_lsn(b);

    if (la != lb)
        return la > lb;
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return strcmp(a->name, b->name) < 0;
}

/* raise_to raises *max to the LSN in text (when it parses and is higher); true when it did. */
static bool
raise_to(uint64_t *max, const char *text)
{
    uint64_t lsn = 0;

    if (!mg_ha_lsn_parse(text, &lsn) || lsn <= *max)
        return false;
    *max = lsn;
    return true;
}

uint64_t
mg_ha_primary_position(const mg_ha_view_t *view, char *source, size_t sourcesz)
{
    const char *primary = view->status.primary;
    uint64_t max = 0;

    if (source != NULL && sourcesz > 0)
        source[0] = '\0';
    if (raise_to(&max, view->optime) && source != NULL)
        snprintf(source, sourcesz, "optime");
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *n = &view->nodes[i];
        bool raised = false;

        if (primary[0] == '\0')
            break;
        if (strcmp(n->name, primary) == 0)
            raised = raise_to(&max, n->current_lsn);
        else if (n->state == MG_HA_STATE_REPLICA && strcmp(n->upstream, primary) == 0)
            raised = raise_to(&max, n->receive_lsn) | raise_to(&max, n->replay_lsn);
        if (raised && source != NULL)
            snprintf(source, sourcesz, "%s %s",
                     strcmp(n->name, primary) == 0 ? "the last report of" : "what was received by",
                     n->name);
    }
    return max;
}

const mg_ha_node_t *
mg_ha_failover_candidate(const mg_ha_self_t *self, const mg_ha_view_t *view, char *why,
                         size_t whysz)
{
    const mg_ha_node_t *best = NULL;
    char source[MG_HA_NAME_SIZE + 32];
    /* the freshest position of the lost primary anyone published (issue 16, finding 18) */
    uint64_t optime = mg_ha_primary_position(view, source, sizeof(source));
    bool have_optime = optime > 0;
    /* the primary's setting counts too (recorded in status): a rolling change stays safe */
    bool sync =
        (self->synchronous_mode || view->status.synchronous_mode) && view->status.nsync_members > 0;
    size_t lagging = 0;

    snprintf(why, whysz, "no healthy replica to promote");
    if (sync) {
        /* every sync member must have reported: the acknowledged commits are on one of them */
        for (size_t i = 0; i < view->status.nsync_members; i++) {
            const mg_ha_node_t *m = mg_ha_view_find_node(view, view->status.sync_members[i]);

            if (strcmp(view->status.sync_members[i], view->status.primary) == 0)
                continue;
            if ((m == NULL || !fresh(self, view, m) || !m->pg_queries_ok) &&
                !view->spec.allow_data_loss) {
                snprintf(why, whysz,
                         "synchronous mode: sync member %s has not reported fresh LSNs (override "
                         "with allow_data_loss)",
                         view->status.sync_members[i]);
                return NULL;
            }
        }
    }
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *n = &view->nodes[i];
        uint64_t lsn = node_lsn(n);

        if (n->state != MG_HA_STATE_REPLICA || !n->pg_queries_ok ||
            strcmp(n->role, "replica") != 0 || !fresh(self, view, n) || n->nofailover ||
            n->priority <= 0 || lsn == 0)
            continue;
        if (sync && !in_sync_set(view, n->name) && !view->spec.allow_data_loss)
            continue;
        /* not in the primary's failsafe set: it may not have promised, so it may not promote */
        if (!mg_ha_status_is_member(&view->status, n->name))
            continue;
        if (!sync && have_optime && optime > lsn && optime - lsn > (uint64_t)self->max_lag_bytes &&
            !view->spec.allow_data_loss) {
            lagging++;
            continue;
        }
        if (best == NULL || better(n, best))
            best = n;
    }
    if (best == NULL && lagging > 0)
        snprintf(why, whysz,
                 "%zu replica(s) lag the primary's last known LSN %X/%X (%s) by more than %lld "
                 "bytes (override with allow_data_loss)",
                 lagging, (unsigned)(optime >> 32), (unsigned)optime, source,
                 (long long)self->max_lag_bytes);
    return best;
}

void
mg_ha_promotion_sync_names(const mg_ha_self_t *self, const mg_ha_view_t *view, bool switchover,
                           char *out, size_t outsz)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *x = &view->nodes[i];

        if (strcmp(x->name, self->name) == 0 || x->state == MG_HA_STATE_REFUSED || !x->pg_running ||
            !fresh(self, view, x))
            continue;
        n += (size_t)snprintf(out + n, outsz > n ? outsz - n : 0, "%s%s", n ? ", " : "", x->name);
    }
    if (n == 0 && switchover && view->status.primary[0] != '\0' &&
        strcmp(view->status.primary, self->name) != 0)
        snprintf(out, outsz, "%s", view->status.primary); /* it rejoins: wait for it */
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

static bool
switchover_in_progress(const mg_ha_view_t *view)
{
    mg_ha_failover_t f = view->status.failover;

    return f == MG_HA_FAILOVER_INITIATED || f == MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY ||
           f == MG_HA_FAILOVER_WAITING_FOR_CATCHUP;
}

/* decide_with_data: own data dir matching the cluster; which role to start in. */
static void
decide_with_data(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d)
{
    const char *me = self->name;

    if (strcmp(view->leader, me) == 0 && !view->data_is_primary) {
        /* a standby becomes primary only by an election of this run (issue 16, 3 and 9) */
        set(d, MG_HA_ACTION_START_REPLICA, MG_HA_STATE_REPLICA, "",
            "the leader key names this node but its data is a standby: start it as a standby; "
            "the key is dropped and the election decides");
    } else if (strcmp(view->leader, me) == 0 && switchover_in_progress(view) &&
               strcmp(view->status.primary, me) == 0) {
        /* restarted while handing over: never take writes the hand-off would lose (16.6) */
        set(d, MG_HA_ACTION_DEMOTE, MG_HA_STATE_DEMOTED, view->status.target_primary,
            "restarted during a switchover to %s (%s): finish the demotion",
            view->status.target_primary, mg_ha_failover_name(view->status.failover));
    } else if (strcmp(view->leader, me) == 0) {
        set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
            "this node holds the leader key");
    } else if (view->leader[0] == '\0' && view->status.exists && view->data_is_primary &&
               strcmp(view->status.primary, me) == 0 &&
               view->status.failover != MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY) {
        set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
            "leader key free and status names this node primary (term %lld)",
            (long long)view->status.term);
    } else if (view->leader[0] == '\0' && !view->status.exists && view->data_is_primary &&
               strcmp(view->init_node, me) == 0) {
        set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
            "this node initialized the cluster and no status exists yet");
    } else if (view->data_is_primary && view->leader[0] != '\0') {
        set(d, MG_HA_ACTION_DEMOTE, MG_HA_STATE_DEMOTED, view->leader,
            "own data dir was a primary and %s holds the leader key: rewind before following",
            view->leader);
    } else if (healthy_primary(view) != NULL) {
        set(d, MG_HA_ACTION_START_REPLICA, MG_HA_STATE_REPLICA, view->leader,
            "primary %s is up: follow it", view->leader);
    } else if (view->leader[0] == '\0' && view->data_is_primary && view->status.exists) {
        set(d, MG_HA_ACTION_DEMOTE, MG_HA_STATE_DEMOTED, view->status.primary,
            "own data dir was a primary but status names %s: wait as demoted",
            view->status.primary);
    } else if (view->leader[0] == '\0' && !view->data_is_primary && view->status.exists) {
        set(d, MG_HA_ACTION_START_REPLICA, MG_HA_STATE_REPLICA, view->status.primary,
            "no primary: start the standby and take part in the election");
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

/* replicas_follow says whether every other live node streams from primary me. */
static bool
replicas_follow(const mg_ha_view_t *view, const char *me)
{
    const mg_ha_node_t *p = mg_ha_view_find_node(view, me);

    if (p == NULL)
        return false;
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *n = &view->nodes[i];
        bool streams = false;

        if (strcmp(n->name, me) == 0 || n->state == MG_HA_STATE_REFUSED)
            continue;
        for (size_t j = 0; j < p->nreplication; j++)
            if (strcmp(p->replication[j].application_name, n->name) == 0 &&
                strcmp(p->replication[j].state, "streaming") == 0)
                streams = true;
        if (n->state != MG_HA_STATE_REPLICA || !streams)
            return false;
    }
    return true;
}

/* decide_primary: keep the lease, or hand over (switchover) or step down. */
static void
decide_primary(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d)
{
    const char *me = self->name;
    char why[160];

    if (view->leader[0] != '\0' && strcmp(view->leader, me) != 0) {
        set(d, MG_HA_ACTION_DEMOTE, MG_HA_STATE_DEMOTED, view->leader,
            "leader key held by %s: stop writes and rejoin", view->leader);
    } else if (switchover_in_progress(view) && strcmp(view->status.primary, me) == 0 &&
               strcmp(view->status.target_primary, me) != 0) {
        set(d, MG_HA_ACTION_DEMOTE, MG_HA_STATE_DEMOTED, view->status.target_primary,
            "switchover to %s: demoting the old primary", view->status.target_primary);
    } else if (!view->pg_running) {
        set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
            "Postgres is not running: start it");
    } else if (view->spec.switchover_id > view->status.switchover_id &&
               view->status.failover == MG_HA_FAILOVER_STABLE && strcmp(view->leader, me) == 0) {
        const mg_ha_node_t *t = NULL;

        if (view->spec.switchover_to[0] != '\0') {
            const mg_ha_node_t *n = mg_ha_view_find_node(view, view->spec.switchover_to);

            if (n != NULL && n->state == MG_HA_STATE_REPLICA && n->pg_queries_ok &&
                strcmp(n->name, me) != 0 && !n->nofailover && n->priority > 0)
                t = n;
            snprintf(why, sizeof(why),
                     "node %s is not a healthy replica that may be promoted (nofailover or "
                     "priority 0 refuse it)",
                     view->spec.switchover_to);
        } else {
            mg_ha_self_t any = *self;

            any.max_lag_bytes = INT64_MAX / 2; /* the catch-up wait bounds a switchover */
            t = mg_ha_failover_candidate(&any, view, why, sizeof(why));
        }
        if (t != NULL)
            set(d, MG_HA_ACTION_SWITCHOVER_BEGIN, MG_HA_STATE_PRIMARY, t->name,
                "switchover requested (id %lld): target %s", (long long)view->spec.switchover_id,
                t->name);
        else
            set(d, MG_HA_ACTION_SWITCHOVER_BEGIN, MG_HA_STATE_PRIMARY, "",
                "switchover request %lld refused: %s", (long long)view->spec.switchover_id, why);
    } else if (view->status.failover == MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY &&
               strcmp(view->leader, me) == 0) {
        set(d, MG_HA_ACTION_FINISH_FAILOVER, MG_HA_STATE_PRIMARY, me,
            "hand-off to %s lapsed: this node holds the leader key", view->status.target_primary);
    } else if (view->status.failover == MG_HA_FAILOVER_RECONFIGURING_REPLICAS &&
               strcmp(view->status.primary, me) == 0 &&
               (replicas_follow(view, me) ||
                view->wall_ms - view->status.writes_resumed_ms > self->switchover_timeout_ms)) {
        set(d, MG_HA_ACTION_FINISH_FAILOVER, MG_HA_STATE_PRIMARY, me,
            "replicas follow this node: failover complete");
    } else {
        set(d, MG_HA_ACTION_MAINTAIN_PRIMARY, MG_HA_STATE_PRIMARY, me, "primary running");
    }
}

/*
 * old_primary_alive: the node status names primary still reports (it may
 * retake the key), or any other node reports a running primary, whatever
 * status says: a status wiped or restored from a backup must not remove
 * the wait (issue 16, finding 9).
 */
static const mg_ha_node_t *
old_primary_alive(const mg_ha_self_t *self, const mg_ha_view_t *view)
{
    const mg_ha_node_t *p = mg_ha_view_find_node(view, view->status.primary);

    if (p != NULL && strcmp(p->name, self->name) != 0 &&
        (p->state == MG_HA_STATE_PRIMARY || p->state == MG_HA_STATE_DEMOTED) &&
        fresh(self, view, p) && p->pg_running)
        return p;
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *n = &view->nodes[i];

        if (strcmp(n->name, self->name) != 0 && fresh(self, view, n) && n->pg_running &&
            (n->state == MG_HA_STATE_PRIMARY || strcmp(n->role, "primary") == 0))
            return n;
    }
    return NULL;
}

/*
 * handoff_lapsed: a switchover handed the leader key to a target that has
 * not taken it within twice switchover_timeout of the old primary stopping
 * writes (it died, or may not be promoted): the hand-off is given up and
 * the cluster fails over as if the leader lease had lapsed (issue 16, 11).
 */
static bool
handoff_lapsed(const mg_ha_self_t *self, const mg_ha_view_t *view)
{
    const mg_ha_cluster_status_t *st = &view->status;

    return st->failover == MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY && view->leader[0] == '\0' &&
           self->switchover_timeout_ms > 0 && st->writes_stopped_ms > 0 &&
           view->wall_ms - st->writes_stopped_ms > 2 * self->switchover_timeout_ms;
}

/*
 * target_can_take_over: the hand-off target still reports as a replica that
 * may be promoted, also by a failover: one outside the failsafe set never
 * is a failover candidate, so once the hand-off lapsed nobody would be
 * promoted while the old primary waited for it.
 */
static bool
target_can_take_over(const mg_ha_view_t *view)
{
    const mg_ha_node_t *t = mg_ha_view_find_node(view, view->status.target_primary);

    return t != NULL && t->state == MG_HA_STATE_REPLICA && !t->nofailover && t->priority > 0 &&
           mg_ha_status_is_member(&view->status, t->name);
}

/* decide_replica: follow the leader; when the leader key is free, maybe promote. */
static void
decide_replica(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d)
{
    const char *me = self->name;
    const char *peer = view->leader[0] ? view->leader : view->status.primary;
    char why[200];

    if (!view->have_data) {
        /* the data directory is gone (wiped): starting the standby again cannot work (16.15) */
        set(d, MG_HA_ACTION_RECLONE, MG_HA_STATE_WAIT_PRIMARY, view->leader,
            "the data directory is gone: join again with pg_basebackup");
    } else if (strcmp(view->leader, me) == 0 && view->leader_stale) {
        set(d, MG_HA_ACTION_DROP_LEADER, MG_HA_STATE_REPLICA, me,
            "the leader key names this standby but this run did not take it (an earlier run, or "
            "etcd restored from a backup): drop it and let the election decide");
    } else if (strcmp(view->leader, me) == 0) {
        set(d, MG_HA_ACTION_PROMOTE, MG_HA_STATE_PRIMARY, me,
            "this node holds the leader key: finish the promotion");
    } else if (view->leader[0] != '\0') {
        if (!view->pg_running)
            set(d, MG_HA_ACTION_START_REPLICA, MG_HA_STATE_REPLICA, peer,
                "Postgres is not running: start the standby");
        else if (view->replica_stalled && healthy_primary(view) != NULL &&
                 self->rewind_attempts > 0 && view->rewind_failures >= self->rewind_attempts)
            set(d, MG_HA_ACTION_RECLONE, MG_HA_STATE_WAIT_PRIMARY, view->leader,
                "standby cannot catch up with %s after %d rejoins: re-clone", view->leader,
                view->rewind_failures);
        else if (view->replica_stalled && healthy_primary(view) != NULL)
            set(d, MG_HA_ACTION_REJOIN, MG_HA_STATE_REPLICA, view->leader,
                "standby does not stream from %s: rewind and rejoin", view->leader);
        else if (strcmp(view->upstream, view->leader) != 0 && healthy_primary(view) != NULL)
            set(d, MG_HA_ACTION_FOLLOW, MG_HA_STATE_REPLICA, view->leader,
                "new primary %s reports itself primary: follow it (was %s)", view->leader,
                view->upstream);
        else
            set(d, MG_HA_ACTION_MAINTAIN_REPLICA, MG_HA_STATE_REPLICA, peer, "standby running");
    } else if (view->status.failover == MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY &&
               strcmp(view->status.target_primary, me) == 0 && !handoff_lapsed(self, view)) {
        if (self->can_failover)
            set(d, MG_HA_ACTION_PROMOTE, MG_HA_STATE_PRIMARY, me,
                "switchover: the old primary handed over to this node");
        else
            set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_REPLICA, peer, "switchover target is nofailover");
    } else if (view->status.failover == MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY &&
               mg_ha_view_find_node(view, view->status.target_primary) != NULL &&
               !handoff_lapsed(self, view)) {
        set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_REPLICA, peer, "switchover: %s is being promoted",
            view->status.target_primary);
    } else if (view->failsafe_primary_heard) {
        set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_REPLICA, peer,
            "leader key free but the primary keeps writing in failsafe mode (UDP heartbeat)");
    } else if (old_primary_alive(self, view) != NULL) {
        set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_REPLICA, peer,
            "leader key free; old primary %s still reports: let it retake the key",
            old_primary_alive(self, view)->name);
    } else if (!view->pg_running || !view->pg_queries_ok) {
        set(d, view->pg_running ? MG_HA_ACTION_WAIT : MG_HA_ACTION_START_REPLICA,
            MG_HA_STATE_REPLICA, peer, "leader key free and the local standby is not healthy");
    } else {
        const mg_ha_node_t *c = mg_ha_failover_candidate(self, view, why, sizeof(why));

        if (c != NULL && strcmp(c->name, me) == 0 && self->can_failover)
            set(d, MG_HA_ACTION_PROMOTE, MG_HA_STATE_PRIMARY, me,
                "leader lease lapsed: this node is the most advanced candidate (%s%s%s)",
                c->receive_lsn, view->optime[0] ? ", primary last at " : "", view->optime);
        else if (c != NULL)
            set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_REPLICA, c->name,
                "leader lease lapsed: %s is the candidate", c->name);
        else
            set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_REPLICA, peer, "leader lease lapsed: %s", why);
    }
}

/* decide_demoted: wait for catch-up and hand over, abort, retake, or rejoin. */
static void
decide_demoted(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d)
{
    const char *me = self->name;
    const mg_ha_cluster_status_t *st = &view->status;

    if (strcmp(view->leader, me) == 0) {
        if (st->failover == MG_HA_FAILOVER_INITIATED ||
            st->failover == MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY) {
            set(d, MG_HA_ACTION_DEMOTE, MG_HA_STATE_DEMOTED, st->target_primary,
                "switchover: finish the demotion");
        } else if (st->failover == MG_HA_FAILOVER_WAITING_FOR_CATCHUP) {
            const mg_ha_node_t *t = mg_ha_view_find_node(view, st->target_primary);
            uint64_t want = 0, have = 0;

            if (t != NULL)
                (void)mg_ha_lsn_parse(t->replay_lsn, &have);
            if (t != NULL && t->pg_queries_ok && mg_ha_lsn_parse(st->final_lsn, &want) &&
                have >= want)
                set(d, MG_HA_ACTION_HANDOFF, MG_HA_STATE_DEMOTED, t->name,
                    "switchover: %s replayed up to %s (final LSN %s): hand over", t->name,
                    t->replay_lsn, st->final_lsn);
            else if (view->wall_ms - st->writes_stopped_ms > self->switchover_timeout_ms)
                set(d, MG_HA_ACTION_ABORT_SWITCHOVER, MG_HA_STATE_PRIMARY, me,
                    "switchover to %s aborted: no catch-up to %s within %lldms (at %s)",
                    st->target_primary, st->final_lsn, (long long)self->switchover_timeout_ms,
                    t ? t->replay_lsn : "gone");
            else
                set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_DEMOTED, st->target_primary,
                    "switchover: waiting for %s to replay up to %s", st->target_primary,
                    st->final_lsn);
        } else if (!view->data_is_primary) {
            set(d, MG_HA_ACTION_DROP_LEADER, MG_HA_STATE_DEMOTED, me,
                "the leader key names this node but its data is a standby: drop the key");
        } else {
            set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
                "leader key still held by this node: start as primary");
        }
    } else if (view->leader[0] == '\0') {
        /* nobody was promoted since (the key is free and no hand-off is under way) */
        if (st->failover != MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY && strcmp(st->primary, me) == 0 &&
            view->have_data && view->data_is_primary)
            set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
                "leader key free and this node was the primary: retake it");
        else if (handoff_lapsed(self, view) && strcmp(st->primary, me) == 0 && view->have_data &&
                 view->data_is_primary && !target_can_take_over(view))
            /* the target replayed our final LSN and never became primary: nothing is lost */
            set(d, MG_HA_ACTION_START_PRIMARY, MG_HA_STATE_PRIMARY, me,
                "hand-off to %s lapsed (%s): this node retakes the leader key", st->target_primary,
                mg_ha_view_find_node(view, st->target_primary) ? "it may not be promoted"
                                                               : "it is gone");
        else
            set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_DEMOTED, NULL,
                "waiting for a new primary (failover %s)", mg_ha_failover_name(st->failover));
    } else if (healthy_primary(view) == NULL) {
        set(d, MG_HA_ACTION_WAIT, MG_HA_STATE_DEMOTED, view->leader,
            "waiting for %s to report itself primary", view->leader);
    } else if (!view->have_data ||
               (self->rewind_attempts > 0 && view->rewind_failures >= self->rewind_attempts)) {
        set(d, MG_HA_ACTION_RECLONE, MG_HA_STATE_WAIT_PRIMARY, view->leader,
            "pg_rewind failed %d times: re-clone from %s", view->rewind_failures, view->leader);
    } else {
        set(d, MG_HA_ACTION_REJOIN, MG_HA_STATE_REPLICA, view->leader,
            "new primary %s: rewind and follow it", view->leader);
    }
}

/*
 * limit_primary_start bounds how long a node keeps the leader key without a
 * Postgres that takes writes (starts that fail, a crash recovery that does
 * not end): once primary_down_since_ms is start_timeout old, it releases
 * the key so a replica can take over; while start_hold_until_ms lasts it
 * does not retake a free key. Applied to the decision of every state.
 */
static void
limit_primary_start(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *d)
{
    const char *me = self->name;
    bool holds = strcmp(view->leader, me) == 0;

    if (view->state == MG_HA_STATE_BOOTSTRAP || view->state == MG_HA_STATE_REFUSED ||
        !view->status.exists)
        return; /* nobody else could take over before the first primary ran */
    if (d->action == MG_HA_ACTION_START_PRIMARY && !holds && view->state != MG_HA_STATE_PRIMARY &&
        view->start_hold_until_ms > view->now_ms) {
        set(d, MG_HA_ACTION_WAIT, view->state, NULL,
            "gave up starting as primary: leaving the free leader key to a replica for %lldms",
            (long long)(view->start_hold_until_ms - view->now_ms));
        return;
    }
    if (self->start_timeout_ms > 0 && view->primary_down_since_ms > 0 &&
        view->now_ms - view->primary_down_since_ms >= self->start_timeout_ms &&
        (holds || view->leader[0] == '\0') &&
        (d->action == MG_HA_ACTION_START_PRIMARY || d->action == MG_HA_ACTION_MAINTAIN_PRIMARY))
        set(d, MG_HA_ACTION_RELEASE_LEADER, MG_HA_STATE_DEMOTED, me,
            "Postgres has not run as a writable primary for %lldms (start_timeout %lldms): "
            "release the leader key so a replica can take over",
            (long long)(view->now_ms - view->primary_down_since_ms),
            (long long)self->start_timeout_ms);
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
            decide_primary(self, view, d);
            break;
        case MG_HA_STATE_REPLICA:
            decide_replica(self, view, d);
            break;
        case MG_HA_STATE_DEMOTED:
            decide_demoted(self, view, d);
            break;
        default:
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                "invalid node state %d", (int)view->state);
        }
        limit_primary_start(self, view, d);
    }
    if (mg_ha_transition_find(view->state, d->next_state) == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "invariant violated: no transition %s -> %s in the table (action %s)",
                            mg_ha_state_name(view->state), mg_ha_state_name(d->next_state),
                            mg_ha_action_name(d->action));
    if ((unsigned)d->action >= MG_HA_ACTION_COUNT_ ||
        (actions[d->action].from_states & MG_HA_STATE_BIT(view->state)) == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "invariant violated: action %s may not be decided in state %s",
                            mg_ha_action_name(d->action), mg_ha_state_name(view->state));
    return true;
}
