/*
 * tests/unit/ha/test_election.c - property test of election and failover:
 * mg_ha_decide driven by a fake etcd (CAS, leases, expiry) and a fake
 * clock through thousands of seeded random schedules of crashes, pauses,
 * etcd partitions, wall-clock steps, writes, replication and switchover
 * requests. Property: at no instant do two nodes run a Postgres that takes
 * writes; after the faults heal, the cluster has a primary again.
 *
 * The node model mirrors ha_daemon.c: a loop is two steps that a pause can
 * split (read + decide, then act); the lease renewal time is when the
 * request was sent; a primary fences at lease + ttl - margin; the watchdog
 * (a separate process, not paused with the daemon, surviving its crash)
 * fences at lease + ttl - margin/2; a node becomes primary only through the
 * leader key, after may_become_primary's check. Seeds are replayable:
 * MG_HA_PROP_SEED=N runs one schedule, MG_HA_PROP_SCHEDULES=N sets the count.
 */
#include <setjmp.h> /* cmocka */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mg/ha.h"

#define NNODES   3
#define TTL      5000
#define LOOP     500
#define MARGIN   1500 /* retry_timeout */
#define STEPS    600
#define NO_LEASE 0

/* ---- fake etcd -------------------------------------------------------- */

typedef struct {
    int64_t id;
    int64_t expires; /* fake time */
} lease_t;

typedef struct {
    bool exists;
    char value[MG_HA_NAME_SIZE];
    int64_t lease;
    int64_t mod;
} leader_key_t;

typedef struct {
    int64_t revision;
    lease_t leases[64];
    size_t nleases;
    int64_t next_lease;
    leader_key_t leader;
    mg_ha_cluster_status_t status;
    mg_ha_spec_t spec;
    char optime[MG_HA_LSN_SIZE];
    bool node_exists[NNODES];
    int64_t node_lease[NNODES];
    mg_ha_node_t node[NNODES];
} fake_etcd_t;

/* ---- nodes ------------------------------------------------------------ */

typedef struct {
    char name[MG_HA_NAME_SIZE];
    bool daemon_up;   /* process exists */
    bool paused;      /* SIGSTOP */
    bool cut;         /* cannot reach etcd */
    int64_t wall_off; /* wall clock = now + wall_off */
    int phase;        /* 0: read + decide next; 1: act next */
    mg_ha_state_t state;
    int64_t lease;
    int64_t lease_ok; /* when the last successful renewal was sent */
    int64_t key_ok;   /* ... of the lease that holds the leader key for this node */
    mg_ha_decision_t dec;
    mg_ha_view_t *view;
    bool view_ok;
    char upstream[MG_HA_NAME_SIZE];
    /* Postgres */
    bool pg_running;
    bool pg_primary; /* running (or last ran) as primary: takes writes when running */
    uint64_t lsn;
    /* watchdogs: the current daemon's and one of a crashed daemon */
    int64_t wd, wd_old;
} node_t;

/* what the schedules exercised, so a vacuous run fails */
static struct {
    uint64_t promotions, handoffs, daemon_fences, watchdog_fences, two_leader_attempts;
} cover;

typedef struct {
    uint64_t rng;
    int64_t now;
    fake_etcd_t etcd;
    node_t nodes[NNODES];
    uint64_t primary_lsn_max;
    char trace[65536];
    size_t tracelen;
} world_t;

static uint64_t
rnd(world_t *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static int64_t
rnd_in(world_t *w, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd(w) % (uint64_t)(hi - lo + 1));
}

static void note(world_t *w, const char *fmt, ...) MG_PRINTF(2, 3);

static void
note(world_t *w, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (w->tracelen > sizeof(w->trace) - 200)
        w->tracelen = 0; /* keep the tail */
    n = snprintf(w->trace + w->tracelen, sizeof(w->trace) - w->tracelen, "t=%lld ",
                 (long long)w->now);
    w->tracelen += (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(w->trace + w->tracelen, sizeof(w->trace) - w->tracelen, fmt, ap);
    va_end(ap);
    w->tracelen += (size_t)n;
    w->trace[w->tracelen++] = '\n';
    w->trace[w->tracelen] = '\0';
}

static void
lsn_text(uint64_t lsn, char *out, size_t outsz)
{
    snprintf(out, outsz, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

static lease_t *
find_lease(world_t *w, int64_t id)
{
    for (size_t i = 0; i < w->etcd.nleases; i++)
        if (w->etcd.leases[i].id == id && w->etcd.leases[i].expires > w->now)
            return &w->etcd.leases[i];
    return NULL;
}

/* expire drops keys whose lease is gone (etcd's lessor). */
static void
expire(world_t *w)
{
    if (w->etcd.leader.exists && find_lease(w, w->etcd.leader.lease) == NULL) {
        w->etcd.leader.exists = false;
        w->etcd.revision++;
        note(w, "etcd: leader key of %s expired", w->etcd.leader.value);
    }
    for (int i = 0; i < NNODES; i++)
        if (w->etcd.node_exists[i] && find_lease(w, w->etcd.node_lease[i]) == NULL)
            w->etcd.node_exists[i] = false;
}

static int
primaries_now(const world_t *w)
{
    int n = 0;

    for (int i = 0; i < NNODES; i++)
        if (w->nodes[i].pg_running && w->nodes[i].pg_primary)
            n++;
    return n;
}

/* ---- the daemon model ------------------------------------------------- */

static int64_t
writable_until(const node_t *n)
{
    return mg_ha_fence_deadline(n->key_ok, 0, TTL, MARGIN);
}

static bool
renew(world_t *w, node_t *n)
{
    lease_t *l;

    if (n->cut)
        return false;
    l = n->lease != NO_LEASE ? find_lease(w, n->lease) : NULL;
    if (l != NULL && strcmp(n->view->leader, n->name) == 0 && n->view->leader_lease == n->lease)
        n->key_ok = w->now; /* keepalive of the lease that holds our key (last read) */
    if (l == NULL) {
        if (w->etcd.nleases >= sizeof(w->etcd.leases) / sizeof(w->etcd.leases[0])) {
            /* recycle expired slots */
            size_t k = 0;

            for (size_t i = 0; i < w->etcd.nleases; i++)
                if (w->etcd.leases[i].expires > w->now)
                    w->etcd.leases[k++] = w->etcd.leases[i];
            w->etcd.nleases = k;
        }
        l = &w->etcd.leases[w->etcd.nleases++];
        l->id = ++w->etcd.next_lease;
        n->lease = l->id;
    }
    l->expires = w->now + TTL;
    n->lease_ok = w->now;
    return true;
}

/* take_leader: create-only, or already ours (value == me), put under our lease. */
static bool
take_leader(world_t *w, node_t *n)
{
    if (n->cut || find_lease(w, n->lease) == NULL)
        return false;
    if (w->etcd.leader.exists && strcmp(w->etcd.leader.value, n->name) != 0) {
        cover.two_leader_attempts++;
        return false;
    }
    w->etcd.leader.exists = true;
    snprintf(w->etcd.leader.value, sizeof(w->etcd.leader.value), "%s", n->name);
    w->etcd.leader.lease = n->lease;
    w->etcd.leader.mod = ++w->etcd.revision;
    n->key_ok = n->lease_ok;
    memcpy(n->view->leader, n->name, sizeof(n->view->leader));
    n->view->leader_lease = n->lease;
    return true;
}

static bool
cas_status(world_t *w, node_t *n, const mg_ha_cluster_status_t *s)
{
    if (n->cut || w->etcd.status.mod_revision != n->view->status.mod_revision)
        return false;
    w->etcd.status = *s;
    w->etcd.status.exists = true;
    w->etcd.status.mod_revision = ++w->etcd.revision;
    n->view->status = w->etcd.status;
    return true;
}

static void
publish(world_t *w, int i)
{
    node_t *n = &w->nodes[i];
    mg_ha_node_t *r = &w->etcd.node[i];

    if (n->cut || find_lease(w, n->lease) == NULL)
        return;
    memset(r, 0, offsetof(mg_ha_node_t, slots));
    memcpy(r->name, n->name, sizeof(r->name));
    r->state = n->state;
    snprintf(r->role, sizeof(r->role), "%s",
             !n->pg_running  ? "unknown"
             : n->pg_primary ? "primary"
                             : "replica");
    r->pg_running = r->pg_reachable = r->pg_queries_ok = n->pg_running;
    r->priority = 100;
    if (n->pg_running && n->pg_primary)
        lsn_text(n->lsn, r->current_lsn, sizeof(r->current_lsn));
    else if (n->pg_running) {
        lsn_text(n->lsn, r->receive_lsn, sizeof(r->receive_lsn));
        lsn_text(n->lsn, r->replay_lsn, sizeof(r->replay_lsn));
        r->streaming = true;
    }
    r->nslots = r->nreplication = 0;
    r->updated_ms = w->now + n->wall_off;
    r->create_revision = i + 1;
    w->etcd.node_exists[i] = true;
    w->etcd.node_lease[i] = n->lease;
}

static void
build_view(world_t *w, node_t *n)
{
    mg_ha_view_t *v = n->view;

    v->have_initialize = true;
    snprintf(v->init_sysid, sizeof(v->init_sysid), "1");
    snprintf(v->init_node, sizeof(v->init_node), "n0");
    if (w->etcd.leader.exists)
        memcpy(v->leader, w->etcd.leader.value, sizeof(v->leader));
    else
        v->leader[0] = '\0';
    v->leader_mod_revision = w->etcd.leader.exists ? w->etcd.leader.mod : 0;
    v->leader_lease = w->etcd.leader.exists ? w->etcd.leader.lease : 0;
    v->status = w->etcd.status;
    v->spec = w->etcd.spec;
    memcpy(v->optime, w->etcd.optime, sizeof(v->optime));
    v->nnodes = 0;
    for (int i = 0; i < NNODES; i++)
        if (w->etcd.node_exists[i]) {
            memcpy(&v->nodes[v->nnodes], &w->etcd.node[i], offsetof(mg_ha_node_t, slots));
            v->nodes[v->nnodes].nslots = v->nodes[v->nnodes].nreplication = 0;
            v->nodes[v->nnodes].updated_ms = w->etcd.node[i].updated_ms;
            v->nodes[v->nnodes].create_revision = w->etcd.node[i].create_revision;
            v->nodes[v->nnodes].priority = 100;
            v->nnodes++;
        }
    v->revision = w->etcd.revision;
    v->state = n->state;
    v->have_data = true;
    snprintf(v->local_sysid, sizeof(v->local_sysid), "1");
    v->pg_running = n->pg_running;
    v->pg_queries_ok = n->pg_running;
    v->pg_in_recovery = n->pg_running && !n->pg_primary;
    snprintf(v->upstream, sizeof(v->upstream), "%s", n->upstream);
    v->failsafe_primary_heard = false;
    v->rewind_failures = 0;
    v->data_is_primary = n->pg_primary;
    v->replica_stalled = false;
    v->now_ms = w->now;
    v->wall_ms = w->now + n->wall_off;
    v->join_started_ms = w->now;
}

static void
arm(node_t *n)
{
    n->wd = n->state == MG_HA_STATE_PRIMARY && writable_until(n) > 0
                ? writable_until(n) + MARGIN / 2
                : 0;
}

static void
fence_if_due(world_t *w, node_t *n)
{
    if (n->state == MG_HA_STATE_PRIMARY && w->now >= writable_until(n)) {
        if (n->pg_running && n->pg_primary)
            note(w, "%s: daemon fences its primary", n->name), cover.daemon_fences++;
        n->pg_running = false;
        n->state = MG_HA_STATE_DEMOTED;
    }
}

/* may_become_primary: lease inside its write window; arm the watchdog first. */
static bool
may_become_primary(world_t *w, node_t *n)
{
    int64_t until = writable_until(n);

    if (until <= 0 || w->now >= until)
        return false;
    n->wd = until + MARGIN / 2;
    return true;
}

static mg_ha_self_t
self_of(const node_t *n)
{
    mg_ha_self_t s;

    memset(&s, 0, sizeof(s));
    s.name = n->name;
    s.max_nodes = 5;
    s.join_timeout_ms = 1000000000;
    s.max_lag_bytes = 1 << 20;
    s.fresh_ms = 2 * LOOP + MARGIN;
    s.switchover_timeout_ms = 10000;
    s.rewind_attempts = 0;
    s.can_failover = true;
    return s;
}

/* phase0: fence check, renew, read, decide. */
static void
phase0(world_t *w, node_t *n)
{
    mg_ha_self_t me = self_of(n);
    mg_error_t error;

    fence_if_due(w, n);
    n->view_ok = renew(w, n) && !n->cut;
    if (!n->view_ok) {
        fence_if_due(w, n);
        arm(n);
        return;
    }
    build_view(w, n);
    arm(n);
    if (!mg_ha_decide(&me, n->view, &n->dec, &error))
        fail_msg("mg_ha_decide failed: %s\n%s", error.message, w->trace);
    n->phase = 1;
}

static bool
start_primary(world_t *w, node_t *n)
{
    if (!take_leader(w, n) || !may_become_primary(w, n))
        return false;
    n->pg_running = true;
    n->pg_primary = true;
    n->upstream[0] = '\0';
    if (!n->view->status.exists || strcmp(n->view->status.primary, n->name) != 0) {
        mg_ha_cluster_status_t s = n->view->status;

        s.term++;
        snprintf(s.primary, sizeof(s.primary), "%s", n->name);
        s.failover = MG_HA_FAILOVER_STABLE;
        (void)cas_status(w, n, &s);
    }
    note(w, "%s: primary (start)", n->name);
    return true;
}

/* phase1: act on the decision of phase0 (maybe much later: a pause in between). */
static void
phase1(world_t *w, node_t *n)
{
    const mg_ha_decision_t *d = &n->dec;
    mg_ha_cluster_status_t s = n->view->status;
    bool acted = true;

    n->phase = 0;
    if (n->cut && d->action != MG_HA_ACTION_NONE && d->action != MG_HA_ACTION_WAIT &&
        d->action != MG_HA_ACTION_MAINTAIN_REPLICA)
        return; /* every other action talks to etcd first */
    switch (d->action) {
    case MG_HA_ACTION_START_PRIMARY:
        acted = start_primary(w, n);
        break;
    case MG_HA_ACTION_MAINTAIN_PRIMARY:
        acted = take_leader(w, n);
        if (acted && n->pg_running && n->pg_primary)
            lsn_text(n->lsn, w->etcd.optime, sizeof(w->etcd.optime));
        if (acted && strcmp(s.primary, n->name) != 0) { /* ensure_status */
            s.term++;
            snprintf(s.primary, sizeof(s.primary), "%s", n->name);
            s.failover = MG_HA_FAILOVER_STABLE;
            (void)cas_status(w, n, &s);
        }
        break;
    case MG_HA_ACTION_PROMOTE:
        acted = take_leader(w, n) && may_become_primary(w, n);
        if (acted) {
            n->pg_primary = true;
            n->pg_running = true;
            n->upstream[0] = '\0';
            s.term++;
            snprintf(s.primary, sizeof(s.primary), "%s", n->name);
            s.failover = MG_HA_FAILOVER_RECONFIGURING_REPLICAS;
            s.target_primary[0] = '\0';
            s.writes_resumed_ms = w->now + n->wall_off;
            (void)cas_status(w, n, &s);
            note(w, "%s: promoted (%s)", n->name, d->reason);
            cover.promotions++;
        }
        break;
    case MG_HA_ACTION_START_REPLICA:
    case MG_HA_ACTION_FOLLOW:
        if (!n->pg_running || n->pg_primary) {
            /* a diverged primary may not start as a standby without a rewind */
            if (n->pg_primary)
                n->lsn = n->lsn < w->primary_lsn_max ? n->lsn : w->primary_lsn_max;
            n->pg_running = true;
            n->pg_primary = false;
        }
        snprintf(n->upstream, sizeof(n->upstream), "%s", d->peer);
        break;
    case MG_HA_ACTION_DEMOTE:
        if (strcmp(n->view->leader, n->name) == 0 && strcmp(s.primary, n->name) == 0 &&
            (s.failover == MG_HA_FAILOVER_INITIATED ||
             s.failover == MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY)) {
            s.failover = MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY;
            s.writes_stopped_ms = w->now + n->wall_off;
            if (!cas_status(w, n, &s)) {
                acted = false;
                break;
            }
            n->pg_running = false;
            lsn_text(n->lsn, s.final_lsn, sizeof(s.final_lsn));
            s.failover = MG_HA_FAILOVER_WAITING_FOR_CATCHUP;
            acted = cas_status(w, n, &s);
        } else {
            n->pg_running = false;
        }
        break;
    case MG_HA_ACTION_REJOIN:
        /* pg_rewind: back to the new primary's history, then a standby */
        n->lsn = n->lsn < w->primary_lsn_max ? n->lsn : w->primary_lsn_max;
        n->pg_running = true;
        n->pg_primary = false;
        snprintf(n->upstream, sizeof(n->upstream), "%s", d->peer);
        break;
    case MG_HA_ACTION_SWITCHOVER_BEGIN:
        s.switchover_id = n->view->spec.switchover_id;
        if (d->peer[0] != '\0') {
            s.failover = MG_HA_FAILOVER_INITIATED;
            snprintf(s.target_primary, sizeof(s.target_primary), "%s", d->peer);
        }
        acted = cas_status(w, n, &s);
        break;
    case MG_HA_ACTION_HANDOFF:
        acted = w->etcd.leader.exists && strcmp(w->etcd.leader.value, n->name) == 0 &&
                w->etcd.status.mod_revision == s.mod_revision;
        if (acted) {
            w->etcd.leader.exists = false;
            n->key_ok = 0;
            s.failover = MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY;
            snprintf(s.target_primary, sizeof(s.target_primary), "%s", d->peer);
            w->etcd.status = s;
            w->etcd.status.mod_revision = ++w->etcd.revision;
            note(w, "%s: hand-off to %s", n->name, d->peer);
            cover.handoffs++;
        }
        break;
    case MG_HA_ACTION_ABORT_SWITCHOVER:
        s.failover = MG_HA_FAILOVER_STABLE;
        s.target_primary[0] = '\0';
        acted = cas_status(w, n, &s) && start_primary(w, n);
        break;
    case MG_HA_ACTION_FINISH_FAILOVER:
        s.failover = MG_HA_FAILOVER_STABLE;
        acted = cas_status(w, n, &s);
        break;
    default:
        break;
    }
    if (acted)
        n->state = d->next_state;
    arm(n);
    publish(w, (int)(n - w->nodes));
}

/* ---- the world -------------------------------------------------------- */

static void
world_init(world_t *w, uint64_t seed, mg_ha_view_t *views)
{
    memset(w, 0, sizeof(*w));
    w->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    w->now = 1000000;
    for (int i = 0; i < NNODES; i++) {
        node_t *n = &w->nodes[i];

        snprintf(n->name, sizeof(n->name), "n%d", i);
        n->daemon_up = true;
        n->view = &views[i];
        n->view->leader[0] = '\0'; /* views are reused across schedules */
        n->view->leader_lease = 0;
        n->view->status.mod_revision = 0;
        n->lsn = 0x1000000;
        n->state = i == 0 ? MG_HA_STATE_PRIMARY : MG_HA_STATE_REPLICA;
        n->pg_running = true;
        n->pg_primary = i == 0;
        renew(w, n);
        if (i != 0)
            snprintf(n->upstream, sizeof(n->upstream), "n0");
    }
    w->etcd.leader.exists = true;
    snprintf(w->etcd.leader.value, sizeof(w->etcd.leader.value), "n0");
    w->etcd.leader.lease = w->nodes[0].lease;
    w->nodes[0].key_ok = w->nodes[0].lease_ok;
    memcpy(views[0].leader, "n0", 3);
    views[0].leader_lease = w->nodes[0].lease;
    w->etcd.status.exists = true;
    snprintf(w->etcd.status.primary, sizeof(w->etcd.status.primary), "n0");
    w->etcd.status.term = 1;
    w->etcd.status.mod_revision = ++w->etcd.revision;
    w->primary_lsn_max = 0x1000000;
    for (int i = 0; i < NNODES; i++) {
        arm(&w->nodes[i]);
        publish(w, i);
    }
}

/* watchdogs: separate processes, never paused with the daemon */
static void
watchdogs(world_t *w)
{
    for (int i = 0; i < NNODES; i++) {
        node_t *n = &w->nodes[i];

        if ((n->wd != 0 && w->now >= n->wd) || (n->wd_old != 0 && w->now >= n->wd_old)) {
            if (n->pg_running && n->pg_primary)
                note(w, "%s: watchdog fences", n->name), cover.watchdog_fences++;
            n->pg_running = false;
            if (n->wd != 0 && w->now >= n->wd)
                n->wd = 0;
            if (n->wd_old != 0 && w->now >= n->wd_old)
                n->wd_old = 0;
        }
    }
}

static void
check(world_t *w, uint64_t seed)
{
    expire(w);
    watchdogs(w);
    if (primaries_now(w) > 1)
        fail_msg("seed %llu: two writable primaries at t=%lld\n%s", (unsigned long long)seed,
                 (long long)w->now, w->trace);
}

static void
random_event(world_t *w, uint64_t seed)
{
    int i = (int)(rnd(w) % NNODES);
    node_t *n = &w->nodes[i];
    uint64_t r = rnd(w) % 100;

    if (r < 35) {
        w->now += rnd_in(w, 1, LOOP);
    } else if (r < 70) {
        if (n->daemon_up && !n->paused)
            n->phase == 0 ? phase0(w, n) : phase1(w, n);
    } else if (r < 76) {
        /* writes on a primary; replication to a running standby */
        for (int k = 0; k < NNODES; k++)
            if (w->nodes[k].pg_running && w->nodes[k].pg_primary) {
                w->nodes[k].lsn += (uint64_t)rnd_in(w, 100, 200000);
                if (w->nodes[k].lsn > w->primary_lsn_max)
                    w->primary_lsn_max = w->nodes[k].lsn;
            }
        for (int k = 0; k < NNODES; k++)
            if (w->nodes[k].pg_running && !w->nodes[k].pg_primary && rnd(w) % 2)
                w->nodes[k].lsn = w->primary_lsn_max;
    } else if (r < 80) {
        if (n->daemon_up) {
            n->daemon_up = false; /* kill -9: Postgres and the watchdog live on */
            if (n->wd != 0 && (n->wd_old == 0 || n->wd < n->wd_old))
                n->wd_old = n->wd; /* the earliest of the orphaned watchdogs fences first */
            n->wd = 0;
            note(w, "%s: daemon killed", n->name);
        } else {
            n->daemon_up = true; /* restart: fresh state, no lease */
            n->paused = false;
            n->phase = 0;
            n->state = MG_HA_STATE_INIT;
            n->lease = NO_LEASE;
            n->lease_ok = n->key_ok = 0;
            n->upstream[0] = '\0';
            n->view->leader[0] = '\0';
            note(w, "%s: daemon restarted", n->name);
        }
    } else if (r < 85) {
        n->paused = !n->paused;
        note(w, "%s: %s", n->name, n->paused ? "SIGSTOP" : "SIGCONT");
    } else if (r < 90) {
        n->cut = !n->cut;
        note(w, "%s: etcd %s", n->name, n->cut ? "cut" : "reachable");
    } else if (r < 93) {
        n->pg_running = false; /* kill -9 of the postmaster */
        note(w, "%s: postmaster killed", n->name);
    } else if (r < 96) {
        n->wall_off += rnd_in(w, -30000, 30000); /* wall clock step */
    } else if (r < 98) {
        w->now += rnd_in(w, TTL, 3 * TTL); /* a long quiet period */
    } else {
        w->etcd.spec.switchover_id++;
        if (rnd(w) % 2)
            w->etcd.spec.switchover_to[0] = '\0';
        else
            memcpy(w->etcd.spec.switchover_to, w->nodes[rnd(w) % NNODES].name,
                   sizeof(w->etcd.spec.switchover_to));
        note(w, "operator: switchover %lld to \"%s\"", (long long)w->etcd.spec.switchover_id,
             w->etcd.spec.switchover_to);
    }
    check(w, seed);
}

/* heal: every fault ends; the loops run; a primary must appear. */
static void
heal_and_expect_primary(world_t *w, uint64_t seed)
{
    for (int i = 0; i < NNODES; i++) {
        node_t *n = &w->nodes[i];

        n->paused = n->cut = false;
        n->wall_off = 0;
        if (!n->daemon_up) {
            n->daemon_up = true;
            n->phase = 0;
            n->state = MG_HA_STATE_INIT;
            n->lease = NO_LEASE;
            n->lease_ok = n->key_ok = 0;
            n->upstream[0] = '\0';
            n->view->leader[0] = '\0';
        }
    }
    w->etcd.spec.switchover_id = w->etcd.status.switchover_id; /* no pending request */
    for (int round = 0; round < 400; round++) {
        for (int i = 0; i < NNODES; i++) {
            phase0(w, &w->nodes[i]);
            check(w, seed);
            if (w->nodes[i].phase == 1)
                phase1(w, &w->nodes[i]);
            check(w, seed);
        }
        w->now += LOOP;
        check(w, seed);
        if (primaries_now(w) == 1 && w->etcd.leader.exists &&
            w->etcd.status.failover == MG_HA_FAILOVER_STABLE) {
            int replicas = 0;

            for (int i = 0; i < NNODES; i++)
                replicas += w->nodes[i].pg_running && !w->nodes[i].pg_primary &&
                            w->nodes[i].state == MG_HA_STATE_REPLICA;
            if (replicas == NNODES - 1)
                return;
        }
    }
    for (int i = 0; i < NNODES; i++)
        note(w, "%s: state %s, pg %s %s, last decision %s: %s", w->nodes[i].name,
             mg_ha_state_name(w->nodes[i].state), w->nodes[i].pg_running ? "running" : "stopped",
             w->nodes[i].pg_primary ? "primary" : "standby",
             mg_ha_action_name(w->nodes[i].dec.action), w->nodes[i].dec.reason);
    fprintf(stderr, "%s\n", w->trace + (w->tracelen > 6000 ? w->tracelen - 6000 : 0));
    fail_msg("seed %llu: no stable primary with %d replicas after the faults healed "
             "(leader \"%s\", failover %s)\n%s",
             (unsigned long long)seed, NNODES - 1, w->etcd.leader.value,
             mg_ha_failover_name(w->etcd.status.failover),
             w->trace + (w->tracelen > 3000 ? w->tracelen - 3000 : 0));
}

static void
run_schedule(uint64_t seed, mg_ha_view_t *views)
{
    world_t *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    world_init(w, seed, views);
    for (int s = 0; s < STEPS; s++)
        random_event(w, seed);
    heal_and_expect_primary(w, seed);
    free(w);
}

static void
test_at_most_one_writable_primary(void **state)
{
    mg_ha_view_t *views = calloc(NNODES, sizeof(*views));
    const char *one = getenv("MG_HA_PROP_SEED");
    const char *count = getenv("MG_HA_PROP_SCHEDULES");
    uint64_t n = count ? strtoull(count, NULL, 10) : 5000;

    (void)state;
    assert_non_null(views);
    if (one != NULL) {
        run_schedule(strtoull(one, NULL, 10), views);
    } else {
        for (uint64_t seed = 1; seed <= n; seed++)
            run_schedule(seed, views);
        fprintf(stderr,
                "%llu schedules: %llu promotions, %llu switchover hand-offs, %llu daemon fences, "
                "%llu watchdog fences, %llu refused leader-key takes\n",
                (unsigned long long)n, (unsigned long long)cover.promotions,
                (unsigned long long)cover.handoffs, (unsigned long long)cover.daemon_fences,
                (unsigned long long)cover.watchdog_fences,
                (unsigned long long)cover.two_leader_attempts);
        /* the schedules reach the situations the property is about */
        assert_true(cover.promotions > n / 2);
        assert_true(cover.handoffs > n / 50);
        assert_true(cover.daemon_fences + cover.watchdog_fences > n / 10);
        assert_true(cover.two_leader_attempts > n / 20);
    }
    free(views);
}

/* The fence deadline: the lease margin, or a later failsafe grant. */
static void
test_fence_deadline(void **state)
{
    (void)state;
    assert_int_equal(mg_ha_fence_deadline(1000, 0, 10000, 3000), 8000);
    assert_int_equal(mg_ha_fence_deadline(1000, 9500, 10000, 3000), 9500);
    assert_int_equal(mg_ha_fence_deadline(1000, 5000, 10000, 3000), 8000);
    assert_int_equal(mg_ha_fence_deadline(0, 0, 10000, 3000), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fence_deadline),
        cmocka_unit_test(test_at_most_one_writable_primary),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
