/*
 * tests/unit/ha/test_election.c - property test of election, failover,
 * failsafe and synchronous replication: mg_ha_decide driven by a fake etcd
 * (CAS, leases, expiry) and a fake clock through thousands of seeded random
 * schedules of crashes, pauses, etcd partitions, graceful stops, wall-clock
 * steps, writes, replication and switchover requests. Properties, after
 * every event: at no instant do two nodes run a Postgres that takes writes;
 * in synchronous mode no acknowledged write is lost (every write a client
 * got an acknowledgement for while the status key promised synchronous
 * replication is in the history of every Postgres that becomes a writable
 * primary afterwards); a node that may not fail over (nofailover, priority
 * 0) is never promoted, and a failover promotes no candidate that another
 * eligible one beats by LSN, then priority. After the faults heal, the
 * cluster has a primary with two streaming replicas again.
 *
 * The node model is the daemon (ha_loop.c, ha_actions.c) with its I/O
 * simulated: a loop is two steps that a pause can split (read + decide,
 * then act); the lease renewal time is when the request was sent; the
 * watchdog (a separate process, not paused with the daemon, surviving its
 * crash until a new daemon adopts its deadline) fences half a margin after
 * the write deadline; a node becomes primary only through the leader key,
 * after may_become_primary's check. Every decision is the product's own
 * function, not a copy: mg_ha_decide, and the rules of ha/src/ha_rules.c -
 * the failsafe (the member set, who promises, the grant from the acks, the
 * promise a restarted daemon keeps), synchronous mode (mg_ha__sync_plan,
 * the set a promotion and a restart run with), when a writable Postgres is
 * fenced and the watchdog armed, what SIGTERM stops, when a switchover may
 * hand over. What is simulated is only what talks to etcd, Postgres and the
 * network.
 *
 * Schedule classes: `classes` must hold. `known_failing` are classes that
 * fail because of a known bug (each names it); they run only with
 * MG_HA_PROP_KNOWN=1 (or MG_HA_PROP_CLASS=<name>) and move to `classes`
 * once it is fixed. Replay: MG_HA_PROP_CLASS=<name> MG_HA_PROP_SEED=N runs
 * one schedule; MG_HA_PROP_SCHEDULES=N sets how many per class.
 */
#include <setjmp.h> /* cmocka */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ha_daemon.h" /* the daemon's pure rules (ha_rules.c) */
#include "mg/ha.h"

#define NNODES   3
#define TTL      5000
#define LOOP     500
#define MARGIN   1500 /* retry_timeout */
#define STEPS    600
#define NO_LEASE 0
#define MAXW     400 /* writes in one node's history */
#define LSN0     0x1000000ULL

/* ---- schedule classes ------------------------------------------------- */

enum {
    F_KILL = 1 << 0,        /* daemon kill -9 and start again */
    F_PAUSE = 1 << 1,       /* SIGSTOP / SIGCONT */
    F_CUT_ANY = 1 << 2,     /* etcd partitions of any node */
    F_CUT_PRIMARY = 1 << 3, /* etcd partitions of the node that runs the primary only */
    F_PGKILL = 1 << 4,      /* postmaster kill -9 */
    F_CLOCK = 1 << 5,       /* wall-clock steps */
    F_SWITCH = 1 << 6,      /* operator switchovers */
    F_WRITES = 1 << 7,      /* client writes and replication */
    F_PRIO = 1 << 8,        /* random priorities and nofailover */
    F_FAILSAFE = 1 << 9,    /* cluster_secret set: the UDP failsafe */
    F_SYNC = 1 << 10,       /* synchronous_mode */
    F_STOP = 1 << 11,       /* SIGTERM with on_stop: leave */
    F_NODE = 1 << 12,       /* node loss: daemon, Postgres and watchdog */
    F_SO_ANY = 1 << 13,     /* switchover --to any node, also one that may not fail over */
    F_DURABLE = 1 << 14,    /* assert: no acknowledged write lost (synchronous mode) */
    F_ETCD_DOWN = 1 << 15,  /* etcd unreachable for every node at once, and back */
    F_UNTRACKED = 1 << 16,  /* the status starts without a failsafe set (new or older cluster) */
};

typedef struct {
    const char *name;
    const char *what; /* what it exercises; for known_failing: the findings */
    unsigned flags;
} prop_class_t;

/* must hold */
static const prop_class_t classes[] = {
    {"lease", "etcd lease and fencing: kills, pauses, etcd cuts, postmaster kills, clock steps",
     F_KILL | F_PAUSE | F_CUT_ANY | F_PGKILL | F_CLOCK | F_SWITCH | F_WRITES | F_PRIO},
    {"sync-election",
     "synchronous mode: sync members as the only candidates, through kills, "
     "pauses, etcd cuts and switchovers (one writer; durability is in known_failing)",
     F_SYNC | F_KILL | F_PAUSE | F_CUT_ANY | F_PGKILL | F_SWITCH | F_WRITES | F_PRIO},
    /* the next five failed before issue 16's fixes (they were known_failing) */
    {"failsafe-etcd-down",
     "issue 16 #7: etcd down for every node at once; a promotion whose status write fails "
     "leaves a writable Postgres outside state primary: the watchdog and the fence still hold it; "
     "no grant before a primary wrote the failsafe set",
     F_FAILSAFE | F_ETCD_DOWN | F_PGKILL | F_SWITCH | F_WRITES | F_PRIO | F_UNTRACKED},
    {"failsafe-primary",
     "issue 16 #2: the primary cut from etcd; its grant needs every member of the failsafe set "
     "(none while the set is untracked), a node outside it is never promoted",
     F_FAILSAFE | F_CUT_PRIMARY | F_PGKILL | F_SWITCH | F_WRITES | F_PRIO | F_UNTRACKED},
    {"failsafe-all",
     "issue 16 #2: the failsafe grant over the member set, the promise kept across restarts",
     F_FAILSAFE | F_KILL | F_PAUSE | F_CUT_ANY | F_PGKILL | F_SWITCH | F_WRITES | F_PRIO},
    {"stop-leave",
     "issue 16 #1: SIGTERM with on_stop leave never leaves a writable primary (also a daemon "
     "stopped before its first loop that adopted a killed daemon's watchdog)",
     F_STOP | F_KILL | F_WRITES},
    {"switchover-ineligible",
     "issue 16 #11: switchover --to a nofailover or priority-0 node is refused; a hand-off that "
     "lapsed does not wedge promoting_new_primary",
     F_SWITCH | F_SO_ANY | F_PRIO | F_KILL | F_PAUSE},
};

/* fail because of a known bug; run with MG_HA_PROP_KNOWN=1; move to classes once fixed */
static const prop_class_t known_failing[] = {
    {"sync-durability",
     "model FIX_SYNC_PLSN, not in the code: a promotion replaces the sync set with the other "
     "running nodes, before they have the promoted node's WAL; when it is lost, one of them is "
     "promoted without writes it acknowledged (seeds 270, 360, 687)",
     F_SYNC | F_DURABLE | F_WRITES | F_NODE | F_PGKILL | F_PRIO},
    {"sync-switchover",
     "model FIX_SYNC_BEST and FIX_SYNC_PLSN, not in the code: a sync member with more WAL that "
     "may not be promoted (priority 0, nofailover) is passed over for a less advanced one "
     "(seed 20); the promotion's sync set as in sync-durability (seed 25)",
     F_SYNC | F_DURABLE | F_SWITCH | F_WRITES | F_PRIO | F_PGKILL},
};

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
    char upstream[MG_HA_NAME_SIZE];
    int64_t priority;
    bool nofailover;
    /* failsafe (the daemon's memory) */
    int64_t fs_until;                    /* peers' grant (failsafe_until_ms) */
    int64_t fs_heard, promise_ms;        /* promise to a failsafe primary (failsafe_heard_ms) */
    mg_ha_peer_t peers[MG_HA_MAX_NODES]; /* acked_sent_ms, gone_since_ms */
    size_t npeers;
    unsigned known;         /* nodes whose address it learnt from a view (heartbeats go there) */
    int64_t write_deadline; /* write_deadline_ms */
    /* synchronous replication */
    char sync_names[MG_HA_MAX_NODES * (MG_HA_NAME_SIZE + 4)]; /* pg.sync_names */
    unsigned pg_sync;                                         /* what Postgres uses */
    uint64_t loops, sync_changed_loop, sync_narrow_lsn;
    mg_ha_replication_t rep[NNODES]; /* pg_stat_replication at the last collect */
    size_t nrep;
    char current_lsn[MG_HA_LSN_SIZE];
    bool clean;   /* data directory stopped cleanly (shutdown checkpoint) since Postgres last ran */
    bool pg_ours; /* this daemon process started it (pg.child) */
    /* Postgres */
    bool pg_running;
    bool pg_primary; /* running (or last ran) as primary: takes writes when running */
    uint32_t wal[MAXW];
    size_t nwal;
    /* watchdogs: the current daemon's and one of a crashed daemon */
    int64_t wd, wd_old;
} node_t;

/* what the schedules exercised, so a vacuous run fails */
typedef struct {
    uint64_t promotions, handoffs, daemon_fences, watchdog_fences, two_leader_attempts;
    uint64_t failsafe_grants, acked, protected_acked, durability_checks, ranked, stops;
} cover_t;

static cover_t cover;

typedef struct {
    uint64_t rng;
    uint64_t seed;
    const prop_class_t *cls;
    int64_t now;
    fake_etcd_t etcd;
    node_t nodes[NNODES];
    uint32_t next_write;
    uint32_t acked[4096]; /* protected acknowledged writes */
    size_t nacked;
    char trace[65536];
    size_t tracelen;
} world_t;

#define HAS(w, f) (((w)->cls->flags & (f)) != 0)

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

    if (w->tracelen > sizeof(w->trace) - 400) {
        /* keep the newer half */
        memmove(w->trace, w->trace + sizeof(w->trace) / 2, w->tracelen - sizeof(w->trace) / 2);
        w->tracelen -= sizeof(w->trace) / 2;
    }
    n = snprintf(w->trace + w->tracelen, sizeof(w->trace) - w->tracelen, "t=%lld ",
                 (long long)w->now);
    w->tracelen += (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(w->trace + w->tracelen, sizeof(w->trace) - w->tracelen, fmt, ap);
    va_end(ap);
    w->tracelen += (size_t)n;
    w->trace[w->tracelen++] = '\n';
    w->trace[w->tracelen] = '\0';
    if (getenv("MG_HA_PROP_TRACE"))
        fprintf(stderr, "%.*s", n + 1, w->trace + w->tracelen - (size_t)n - 1);
}

/* prop_fail reports the class, seed, how to replay it, and the tail of the trace. */
static void prop_fail(world_t *w, const char *fmt, ...) MG_PRINTF(2, 3);

static void
prop_fail(world_t *w, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", w->trace + (w->tracelen > 8000 ? w->tracelen - 8000 : 0));
    fail_msg("class %s, seed %llu: %s at t=%lld\nreplay: MG_HA_PROP_CLASS=%s MG_HA_PROP_SEED=%llu "
             "build/tests/unit/ha/test_ha_election",
             w->cls->name, (unsigned long long)w->seed, what, (long long)w->now, w->cls->name,
             (unsigned long long)w->seed);
}

static uint64_t
lsn_of(const node_t *n)
{
    return LSN0 + (uint64_t)n->nwal * 0x100;
}

static void
lsn_text(uint64_t lsn, char *out, size_t outsz)
{
    snprintf(out, outsz, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

static int
index_of(const world_t *w, const char *name)
{
    for (int i = 0; i < NNODES; i++)
        if (strcmp(w->nodes[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- histories (what each Postgres holds) ------------------------------ */

static bool
wal_prefix(const node_t *a, const node_t *b)
{
    return a->nwal <= b->nwal && memcmp(a->wal, b->wal, a->nwal * sizeof(a->wal[0])) == 0;
}

static void
wal_copy(node_t *dst, const node_t *src)
{
    memcpy(dst->wal, src->wal, src->nwal * sizeof(src->wal[0]));
    dst->nwal = src->nwal;
}

/* wal_truncate_common keeps the part of dst's history it shares with src (pg_rewind). */
static void
wal_truncate_common(node_t *dst, const node_t *src)
{
    size_t k = 0;

    while (k < dst->nwal && k < src->nwal && dst->wal[k] == src->wal[k])
        k++;
    dst->nwal = k;
}

static bool
wal_has(const node_t *n, uint32_t id)
{
    for (size_t i = 0; i < n->nwal; i++)
        if (n->wal[i] == id)
            return true;
    return false;
}

/* streams says whether standby s streams from p: running, following p, on p's history */
static bool
streams(const world_t *w, const node_t *s, const node_t *p)
{
    (void)w;
    return s != p && s->pg_running && !s->pg_primary && p->pg_running && p->pg_primary &&
           strcmp(s->upstream, p->name) == 0 && wal_prefix(s, p);
}

/* ---- fake etcd operations ---------------------------------------------- */

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

static void
etcd_revoke(world_t *w, int64_t id)
{
    for (size_t i = 0; i < w->etcd.nleases; i++)
        if (w->etcd.leases[i].id == id)
            w->etcd.leases[i].expires = 0;
    expire(w);
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
writable_until(const world_t *w, const node_t *n)
{
    return mg_ha_fence_deadline(n->key_ok, HAS(w, F_FAILSAFE) ? n->fs_until : 0, TTL, MARGIN);
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
sync_to_status(const world_t *w, unsigned set, mg_ha_cluster_status_t *s)
{
    s->nsync_members = 0;
    for (int i = 0; i < NNODES; i++)
        if (set & (1u << i))
            snprintf(s->sync_members[s->nsync_members++], MG_HA_NAME_SIZE, "%s", w->nodes[i].name);
}

static unsigned
status_sync(const world_t *w, const mg_ha_cluster_status_t *s)
{
    unsigned set = 0;

    for (size_t i = 0; i < s->nsync_members; i++) {
        int k = index_of(w, s->sync_members[i]);

        if (k >= 0)
            set |= 1u << k;
    }
    return set;
}

/* names_mask: the nodes of a synchronous_standby_names list "a, b" */
static unsigned
names_mask(const world_t *w, const char *names)
{
    mg_ha_cluster_status_t s;

    memset(&s, 0, sizeof(s));
    mg_ha__names_to_status(names, &s);
    return status_sync(w, &s);
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
    r->nofailover = n->nofailover;
    r->priority = n->nofailover ? 0 : n->priority;
    if (n->pg_running && n->pg_primary)
        lsn_text(lsn_of(n), r->current_lsn, sizeof(r->current_lsn));
    else if (n->pg_running) {
        const int u = index_of(w, n->upstream);

        lsn_text(lsn_of(n), r->receive_lsn, sizeof(r->receive_lsn));
        lsn_text(lsn_of(n), r->replay_lsn, sizeof(r->replay_lsn));
        r->streaming = u >= 0 && streams(w, n, &w->nodes[u]);
    }
    r->nslots = r->nreplication = 0;
    r->updated_ms = w->now + n->wall_off;
    r->create_revision = i + 1;
    r->mod_revision = ++w->etcd.revision;
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
            v->nodes[v->nnodes].priority = w->etcd.node[i].priority;
            v->nodes[v->nnodes].nofailover = w->etcd.node[i].nofailover;
            v->nodes[v->nnodes].mod_revision = w->etcd.node[i].mod_revision;
            v->nnodes++;
            n->known |= 1u << i; /* mg_ha__peers_learn: its address */
        }
    v->revision = w->etcd.revision;
    v->state = n->state;
    v->have_data = true;
    snprintf(v->local_sysid, sizeof(v->local_sysid), "1");
    v->pg_running = n->pg_running;
    v->pg_queries_ok = n->pg_running;
    v->pg_in_recovery = n->pg_running && !n->pg_primary;
    snprintf(v->upstream, sizeof(v->upstream), "%s", n->upstream);
    mg_ha__peers_seen(v, n->peers, &n->npeers, w->now);
    v->failsafe_primary_heard = mg_ha__promise_holds(n->fs_heard, n->promise_ms, w->now);
    v->rewind_failures = 0;
    v->data_is_primary = n->pg_primary;
    v->replica_stalled = false;
    v->now_ms = w->now;
    v->wall_ms = w->now + n->wall_off;
    v->join_started_ms = w->now;
}

/* may_write: Postgres may take writes (state primary, or it runs on a data directory no standby's)
 */
static bool
may_write(const node_t *n)
{
    return n->state == MG_HA_STATE_PRIMARY || (n->pg_running && n->pg_primary);
}

/* arm (mg_ha__arm_watchdog) */
static void
arm(world_t *w, node_t *n)
{
    const bool mw = may_write(n);
    const int64_t until = writable_until(w, n);

    n->wd = mg_ha__watchdog_deadline(mw, until, n->wd, MARGIN);
    n->write_deadline = mg_ha__write_deadline(mw, until, n->write_deadline);
}

/* fence_if_due (mg_ha__fence_if_due): an immediate stop */
static void
fence_if_due(world_t *w, node_t *n)
{
    if (!mg_ha__fence_due(may_write(n), writable_until(w, n), n->write_deadline, w->now))
        return;
    if (n->pg_running && n->pg_primary)
        note(w, "%s: daemon fences its primary", n->name), cover.daemon_fences++;
    n->pg_running = false;
    n->clean = false;
    if (n->state == MG_HA_STATE_PRIMARY)
        n->state = MG_HA_STATE_DEMOTED;
    n->write_deadline = 0;
}

/* may_become_primary: lease inside its write window; arm the watchdog first. */
static bool
may_become_primary(world_t *w, node_t *n)
{
    int64_t until = writable_until(w, n);

    if (until <= 0 || w->now >= until)
        return false;
    n->write_deadline = until;
    n->wd = until + MARGIN / 2;
    return true;
}

/* became_writer: a Postgres now takes writes; it must hold every protected acknowledged write */
static void
became_writer(world_t *w, node_t *n)
{
    note(w, "%s: Postgres takes writes (%zu writes in its history, sync set %x)", n->name, n->nwal,
         n->pg_sync);
    if (primaries_now(w) > 1)
        prop_fail(w, "two writable primaries (%s became one)", n->name);
    if (!HAS(w, F_DURABLE))
        return;
    cover.durability_checks++;
    for (size_t i = 0; i < w->nacked; i++)
        if (!wal_has(n, w->acked[i])) {
            for (int k = 0; k < NNODES; k++) /* who holds it */
                note(w, "  %s: has %d nofailover %d prio %lld pg %d/%d state %s sync %d",
                     w->nodes[k].name, wal_has(&w->nodes[k], w->acked[i]), w->nodes[k].nofailover,
                     (long long)w->nodes[k].priority, w->nodes[k].pg_running,
                     w->nodes[k].pg_primary, mg_ha_state_name(w->nodes[k].state),
                     (status_sync(w, &w->etcd.status) >> k) & 1);
            prop_fail(w, "acknowledged write %u lost: %s takes writes without it", w->acked[i],
                      n->name);
        }
}

/* failsafe_grant (mg_ha__failsafe_grant): every member acked, from the oldest send */
static int64_t
failsafe_grant(node_t *n)
{
    char set[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nset = mg_ha__failsafe_set(n->view, set);

    return mg_ha__grant_until(set, nset, n->name, n->peers, n->npeers, TTL, MARGIN);
}

/*
 * send_failsafe_heartbeats (mg_ha__send_heartbeats(failsafe)): to the nodes
 * of the last view and the members of the failsafe set whose address it
 * knows; a peer that runs answers with an ACK when mg_ha__promise_ok lets it
 * promise, and keeps the promise (mg_ha__promise_give).
 */
static void
send_failsafe_heartbeats(world_t *w, node_t *n)
{
    char set[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nset = mg_ha__failsafe_set(n->view, set);
    unsigned to = 0;

    for (size_t i = 0; i < n->view->nnodes; i++)
        if (index_of(w, n->view->nodes[i].name) >= 0)
            to |= 1u << index_of(w, n->view->nodes[i].name);
    for (size_t i = 0; i < nset; i++)
        if (index_of(w, set[i]) >= 0 && (n->known & (1u << index_of(w, set[i]))))
            to |= 1u << index_of(w, set[i]);
    for (int i = 0; i < NNODES; i++) {
        node_t *p = &w->nodes[i];
        mg_ha_peer_t *peer;

        if (p == n || !(to & (1u << i)) || !p->daemon_up || p->paused ||
            !mg_ha__promise_ok(p->state, p->view, p->name, n->name))
            continue;
        mg_ha__promise_give(w->now, mg_ha__promise_ttl(p->view, n->name, TTL), &p->fs_heard,
                            &p->promise_ms);
        peer = mg_ha__peer_find(n->peers, &n->npeers, p->name);
        if (peer != NULL && w->now > peer->acked_sent_ms)
            peer->acked_sent_ms = w->now;
    }
}

/* collect (mg_ha__collect_local): the primary's LSN and pg_stat_replication */
static void
collect(world_t *w, node_t *n)
{
    n->current_lsn[0] = '\0';
    n->nrep = 0;
    if (!n->pg_running || !n->pg_primary)
        return;
    lsn_text(lsn_of(n), n->current_lsn, sizeof(n->current_lsn));
    for (int i = 0; i < NNODES; i++)
        if (streams(w, &w->nodes[i], n)) {
            mg_ha_replication_t *r = &n->rep[n->nrep++];

            memset(r, 0, sizeof(*r));
            snprintf(r->application_name, sizeof(r->application_name), "%s", w->nodes[i].name);
            snprintf(r->state, sizeof(r->state), "streaming");
            lsn_text(lsn_of(&w->nodes[i]), r->flush_lsn, sizeof(r->flush_lsn));
        }
}

static mg_ha_self_t
self_of(const world_t *w, const node_t *n)
{
    mg_ha_self_t s;

    memset(&s, 0, sizeof(s));
    s.name = n->name;
    s.max_nodes = 5;
    s.join_timeout_ms = 1000000000;
    s.max_lag_bytes = 1 << 20;
    s.synchronous_mode = HAS(w, F_SYNC);
    s.fresh_ms = 2 * LOOP + MARGIN;
    s.switchover_timeout_ms = 10000;
    s.rewind_attempts = 0;
    s.can_failover = !n->nofailover && n->priority > 0;
    return s;
}

/* phase0: fence check, renew, read, decide (or, without etcd, the failsafe round). */
static void
phase0(world_t *w, node_t *n)
{
    mg_ha_self_t me = self_of(w, n);
    mg_error_t error;

    n->loops++;
    fence_if_due(w, n);
    collect(w, n);
    if (!renew(w, n) || n->cut) {
        if (HAS(w, F_FAILSAFE) && n->state == MG_HA_STATE_PRIMARY) {
            int64_t grant = failsafe_grant(n);

            if (grant > n->fs_until && grant > w->now) {
                cover.failsafe_grants++;
                note(w, "%s: failsafe grant until %lld", n->name, (long long)grant);
            }
            n->fs_until = grant;
            send_failsafe_heartbeats(w, n);
        }
        fence_if_due(w, n);
        arm(w, n);
        return;
    }
    for (size_t i = 0; i < n->npeers; i++)
        n->peers[i].acked_sent_ms = 0; /* etcd answers: a grant runs out */
    build_view(w, n);
    arm(w, n);
    if (!mg_ha_decide(&me, n->view, &n->dec, &error))
        prop_fail(w, "mg_ha_decide failed: %s", error.message);
    n->phase = 1;
}

/* pg_start: Postgres starts on its data directory (not cleanly stopped any more once it ran) */
static void
pg_start(node_t *n, bool primary)
{
    n->pg_ours = true;
    n->pg_running = true;
    n->pg_primary = primary;
    n->clean = false;
}

/*
 * become_primary: a standby data directory is started as a standby if it
 * is not running (pg_configure: no sync standbys), gets sync_names applied
 * and is promoted; a primary's directory starts with sync_names (already
 * running: as it is).
 */
static void
become_primary(world_t *w, node_t *n)
{
    const bool was_writer = n->pg_running && n->pg_primary;

    if (!n->pg_primary) {
        if (!n->pg_running) {
            pg_start(n, false);
            n->sync_names[0] = '\0';
        }
        n->pg_sync = names_mask(w, n->sync_names);
        n->pg_primary = true;
    } else if (!n->pg_running) {
        pg_start(n, true);
        n->pg_sync = names_mask(w, n->sync_names);
    }
    n->upstream[0] = '\0';
    if (!was_writer)
        became_writer(w, n);
}

/* ensure_status (mg_ha__ensure_status): the status names this node primary */
static bool
ensure_status(world_t *w, node_t *n)
{
    mg_ha_cluster_status_t s = n->view->status;

    if (s.exists && strcmp(s.primary, n->name) == 0)
        return true;
    s.term = s.exists ? s.term + 1 : 1;
    snprintf(s.primary, sizeof(s.primary), "%s", n->name);
    s.failover = MG_HA_FAILOVER_STABLE;
    return cas_status(w, n, &s);
}

/* start_primary (do_start_primary) */
static bool
start_primary(world_t *w, node_t *n)
{
    const mg_ha_cluster_status_t *st = &n->view->status;

    if (!take_leader(w, n))
        return false;
    if (HAS(w, F_SYNC) && n->sync_names[0] == '\0' && strcmp(st->primary, n->name) == 0)
        mg_ha__status_sync_names(st, n->name, n->sync_names, sizeof(n->sync_names));
    n->upstream[0] = '\0';
    if (!may_become_primary(w, n))
        return false;
    become_primary(w, n);
    if (!ensure_status(w, n))
        return false;
    note(w, "%s: primary (start)", n->name);
    return true;
}

/* manage_sync: the step mg_ha__sync_plan picks, done */
static void
manage_sync(world_t *w, node_t *n)
{
    mg_ha_cluster_status_t s;
    mg_ha_sync_in_t in;
    char want[sizeof(n->sync_names)];

    memset(&in, 0, sizeof(in));
    in.view = n->view;
    in.self = n->name;
    in.rep = n->rep;
    in.nrep = n->nrep;
    in.pg_names = n->sync_names;
    in.current_lsn = n->current_lsn;
    in.changed_this_round = n->loops <= n->sync_changed_loop;
    in.narrow_lsn = n->sync_narrow_lsn;
    switch (mg_ha__sync_plan(&in, want, sizeof(want), &s, &n->sync_narrow_lsn)) {
    case MG_HA_SYNC_WIDEN:
        (void)cas_status(w, n, &s);
        break;
    case MG_HA_SYNC_NARROW:
        if (cas_status(w, n, &s) && s.nsync_members == 0 && w->nacked > 0) {
            /* the documented degrade (no standby runs): what was acknowledged before is on
               this node alone from here on; the status no longer promises it */
            note(w, "%s: degraded to asynchronous; %zu earlier writes no longer promised", n->name,
                 w->nacked);
            w->nacked = 0;
        }
        break;
    case MG_HA_SYNC_APPLY: /* pgdaemon.sync.conf written, reloaded when Postgres runs */
        snprintf(n->sync_names, sizeof(n->sync_names), "%s", want);
        if (n->pg_running)
            n->pg_sync = names_mask(w, want);
        n->sync_changed_loop = n->loops;
        n->sync_narrow_lsn = 0;
        break;
    default:
        break;
    }
}

/* maintain_primary (do_maintain_primary): the key, the status, the failsafe set, optime, sync */
static bool
maintain_primary(world_t *w, node_t *n)
{
    mg_ha_cluster_status_t s;
    bool sync_changed;

    if (!take_leader(w, n) || !ensure_status(w, n))
        return false;
    s = n->view->status;
    sync_changed = s.synchronous_mode != HAS(w, F_SYNC);
    s.synchronous_mode = HAS(w, F_SYNC);
    if ((mg_ha__members_update_at(&s, n->view, n->name, n->peers, &n->npeers, w->now, TTL) ||
         sync_changed) &&
        !cas_status(w, n, &s))
        return false;
    if (n->pg_running && n->pg_primary)
        lsn_text(lsn_of(n), w->etcd.optime, sizeof(w->etcd.optime));
    if (HAS(w, F_SYNC))
        manage_sync(w, n);
    return true;
}

/* check_promotion: who may be promoted, and the ranking of a failover */
static void
check_promotion(world_t *w, node_t *n)
{
    const mg_ha_self_t me = self_of(w, n);
    const mg_ha_view_t *v = n->view;
    const mg_ha_node_t *self = mg_ha_view_find_node(v, n->name);
    uint64_t mine = 0, theirs = 0;

    if (strstr(n->dec.reason, "leader lease lapsed") == NULL)
        return; /* a switchover, or finishing one this node already holds the key for */
    if (!me.can_failover)
        prop_fail(w, "%s promoted although it may not fail over (nofailover %d, priority %lld)",
                  n->name, n->nofailover, (long long)n->priority);
    if (self == NULL)
        return;
    (void)mg_ha_lsn_parse(self->replay_lsn, &mine);
    cover.ranked++;
    for (size_t i = 0; i < v->nnodes; i++) {
        const mg_ha_node_t *o = &v->nodes[i];

        if (o == self || o->state != MG_HA_STATE_REPLICA || !o->pg_queries_ok ||
            strcmp(o->role, "replica") != 0 || o->nofailover || o->priority <= 0)
            continue;
        /* fresh as this node sees it: its report changed within fresh_ms (finding 13) */
        if (o->seen_ms != 0 ? o->seen_ms < 0 || v->now_ms - o->seen_ms > me.fresh_ms
                            : v->wall_ms - o->updated_ms > me.fresh_ms)
            continue;
        if (HAS(w, F_SYNC) && v->status.nsync_members > 0 &&
            !(status_sync(w, &v->status) & (1u << index_of(w, o->name))))
            continue;
        if (!mg_ha_status_is_member(&v->status, o->name))
            continue; /* outside the failsafe set: no candidate (it may not have promised) */
        theirs = 0;
        (void)mg_ha_lsn_parse(o->replay_lsn, &theirs);
        if (theirs > mine || (theirs == mine && o->priority > self->priority))
            prop_fail(w,
                      "%s promoted (lsn %llx, priority %lld) although %s ranks higher (lsn %llx, "
                      "priority %lld)",
                      n->name, (unsigned long long)mine, (long long)self->priority, o->name,
                      (unsigned long long)theirs, (long long)o->priority);
    }
}

/* promote (do_promote): the key, mg_ha__promote_plan, the promotion, the status */
static bool
promote(world_t *w, node_t *n, const mg_ha_decision_t *d)
{
    mg_ha_cluster_status_t s;
    char names[sizeof(n->sync_names)];
    const mg_ha_self_t me = self_of(w, n);

    if (!take_leader(w, n))
        return false;
    (void)mg_ha__promote_plan(n->view, &me, HAS(w, F_SYNC), names, sizeof(names), &s);
    if (!may_become_primary(w, n))
        return false;
    check_promotion(w, n);
    if (HAS(w, F_SYNC)) {
        /* applied while still a standby: in force from the first commit on */
        snprintf(n->sync_names, sizeof(n->sync_names), "%s", names);
        if (!n->pg_primary && n->pg_running)
            n->pg_sync = names_mask(w, names);
    }
    become_primary(w, n);
    (void)mg_ha__members_update_at(&s, n->view, n->name, n->peers, &n->npeers, w->now, TTL);
    s.writes_resumed_ms = s.last_failover_ms = w->now + n->wall_off;
    note(w, "%s: promoted (%s)", n->name, d->reason);

    cover.promotions++;
    if (!cas_status(w, n, &s)) {
        /* Postgres is promoted; the state stays: the write deadline still fences it (#7) */
        note(w, "%s: status write failed after the promotion", n->name);
        return false;
    }
    return true;
}

/* abort_switchover: status stable, the old primary keeps the key */
static bool
abort_switchover(world_t *w, node_t *n, const char *why)
{
    mg_ha_cluster_status_t s = n->view->status;

    s.failover = MG_HA_FAILOVER_STABLE;
    s.target_primary[0] = '\0';
    note(w, "%s: switchover aborted: %s", n->name, why);
    return cas_status(w, n, &s);
}

/* demote (do_demote): in a switchover a clean stop and the final LSN; else an immediate stop */
static bool
demote(world_t *w, node_t *n)
{
    mg_ha_cluster_status_t s = n->view->status;

    if (!(strcmp(n->view->leader, n->name) == 0 && strcmp(s.primary, n->name) == 0 &&
          (s.failover == MG_HA_FAILOVER_INITIATED ||
           s.failover == MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY ||
           s.failover == MG_HA_FAILOVER_WAITING_FOR_CATCHUP))) {
        if (n->pg_running)
            n->clean = false; /* immediate stop */
        n->pg_running = false;
        return true;
    }
    if (s.failover == MG_HA_FAILOVER_INITIATED) {
        s.failover = MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY;
        s.writes_stopped_ms = w->now + n->wall_off;
        if (!cas_status(w, n, &s))
            return false;
    }
    if (n->pg_running) {
        /* fast shutdown: the shutdown checkpoint reaches the streaming standbys */
        for (int i = 0; i < NNODES; i++)
            if (streams(w, &w->nodes[i], n))
                wal_copy(&w->nodes[i], n);
        n->pg_running = false;
        n->clean = true;
    }
    if (!n->clean) /* pg_final_lsn: no clean shutdown, no LSN to hand over at (6a) */
        return abort_switchover(w, n, "the old primary did not shut down cleanly"), false;
    lsn_text(lsn_of(n), s.final_lsn, sizeof(s.final_lsn));
    s.failover = MG_HA_FAILOVER_WAITING_FOR_CATCHUP;
    return cas_status(w, n, &s);
}

/* handoff (do_handoff): only from a data directory that still ends at the final LSN */
static bool
handoff(world_t *w, node_t *n, const char *target)
{
    mg_ha_cluster_status_t s = n->view->status;
    char lsn[MG_HA_LSN_SIZE] = "";
    const char *why;

    if (!n->pg_running && n->clean)
        lsn_text(lsn_of(n), lsn, sizeof(lsn));
    why = mg_ha__handoff_refusal(n->pg_running, !n->pg_running && n->clean, lsn, s.final_lsn);
    if (why != NULL) {
        (void)abort_switchover(w, n, why);
        return false;
    }
    if (n->cut || !w->etcd.leader.exists || strcmp(w->etcd.leader.value, n->name) != 0 ||
        w->etcd.status.mod_revision != s.mod_revision)
        return false;
    w->etcd.leader.exists = false;
    w->etcd.revision++;
    n->key_ok = 0;
    s.failover = MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY;
    snprintf(s.target_primary, sizeof(s.target_primary), "%s", target);
    w->etcd.status = s;
    w->etcd.status.mod_revision = ++w->etcd.revision;
    note(w, "%s: hand-off to %s", n->name, target);
    cover.handoffs++;
    return true;
}

/* start_standby: Postgres runs as a standby of peer (a diverged primary rewound first) */
static void
start_standby(world_t *w, node_t *n, const char *peer, bool rewind)
{
    const int up = index_of(w, peer);

    if (rewind && up >= 0)
        wal_copy(n, &w->nodes[up]); /* pg_rewind: back to the new primary's history */
    else if (n->pg_primary && up >= 0)
        wal_truncate_common(n, &w->nodes[up]);
    if (rewind || !n->pg_running || n->pg_primary) {
        pg_start(n, false);
        n->sync_names[0] = '\0'; /* pg_configure(standby): no sync standbys */
        n->pg_sync = 0;
    }
    snprintf(n->upstream, sizeof(n->upstream), "%s", peer);
}

/* phase1: act on the decision of phase0 (maybe much later: a pause in between). */
static void
phase1(world_t *w, node_t *n)
{
    const mg_ha_decision_t *d = &n->dec;
    mg_ha_cluster_status_t s = n->view->status;
    bool acted = true;

    n->phase = 0;
    if (d->action != MG_HA_ACTION_WAIT && d->action != MG_HA_ACTION_NONE &&
        d->action != MG_HA_ACTION_MAINTAIN_REPLICA && d->action != MG_HA_ACTION_MAINTAIN_PRIMARY)
        note(w, "%s: %s -> %s: %s%s", n->name, mg_ha_action_name(d->action),
             mg_ha_state_name(d->next_state), d->reason, n->cut ? " (cut: not done)" : "");
    if (n->cut && d->action != MG_HA_ACTION_NONE && d->action != MG_HA_ACTION_WAIT &&
        d->action != MG_HA_ACTION_MAINTAIN_REPLICA)
        return; /* every other action talks to etcd first */
    switch (d->action) {
    case MG_HA_ACTION_START_PRIMARY:
        acted = start_primary(w, n);
        break;
    case MG_HA_ACTION_MAINTAIN_PRIMARY:
        acted = maintain_primary(w, n);
        break;
    case MG_HA_ACTION_PROMOTE:
        acted = promote(w, n, d);
        break;
    case MG_HA_ACTION_START_REPLICA:
    case MG_HA_ACTION_FOLLOW:
        start_standby(w, n, d->peer, false);
        break;
    case MG_HA_ACTION_DEMOTE:
        acted = demote(w, n);
        break;
    case MG_HA_ACTION_REJOIN:
        start_standby(w, n, d->peer, true);
        break;
    case MG_HA_ACTION_SWITCHOVER_BEGIN:
        s.switchover_id = n->view->spec.switchover_id;
        if (d->peer[0] != '\0') {
            s.failover = MG_HA_FAILOVER_INITIATED;
            snprintf(s.target_primary, sizeof(s.target_primary), "%s", d->peer);
            s.final_lsn[0] = '\0';
            s.writes_stopped_ms = s.writes_resumed_ms = 0;
        }
        acted = cas_status(w, n, &s);
        break;
    case MG_HA_ACTION_HANDOFF:
        acted = handoff(w, n, d->peer);
        break;
    case MG_HA_ACTION_ABORT_SWITCHOVER:
        acted = abort_switchover(w, n, "catch-up timeout") && start_primary(w, n);
        break;
    case MG_HA_ACTION_FINISH_FAILOVER:
        s.failover = MG_HA_FAILOVER_STABLE;
        s.target_primary[0] = '\0';
        acted = cas_status(w, n, &s);
        break;
    default:
        break;
    }
    if (acted)
        n->state = d->next_state;
    arm(w, n);
    publish(w, (int)(n - w->nodes));
}

/* ---- the world -------------------------------------------------------- */

static void
restart_daemon(world_t *w, node_t *n)
{
    n->daemon_up = true; /* a new process: nothing of the old one's memory */
    n->paused = false;
    n->phase = 0;
    n->state = MG_HA_STATE_INIT;
    n->lease = NO_LEASE;
    n->lease_ok = n->key_ok = 0;
    n->upstream[0] = '\0';
    memset(n->view, 0, sizeof(*n->view));
    n->fs_until = 0;
    mg_ha__promise_at_start(HAS(w, F_FAILSAFE), w->now, TTL, &n->fs_heard, &n->promise_ms);
    memset(n->peers, 0, sizeof(n->peers));
    n->npeers = 0;
    n->known = 0;
    n->sync_names[0] = '\0';
    n->loops = n->sync_changed_loop = n->sync_narrow_lsn = 0;
    n->pg_ours = false;
    n->write_deadline = 0;
    /* mg_ha__watchdog_adopt: the new watchdog takes over an orphaned one's deadline */
    n->wd = n->wd_old;
    n->wd_old = 0;
    if (n->wd > 0)
        n->write_deadline = n->wd - MARGIN / 2;
    note(w, "%s: daemon started", n->name);
}

static void
kill_daemon(world_t *w, node_t *n)
{
    n->daemon_up = false; /* kill -9: Postgres and the watchdog live on */
    if (n->wd != 0 && (n->wd_old == 0 || n->wd < n->wd_old))
        n->wd_old = n->wd; /* the earliest of the orphaned watchdogs fences first */
    n->wd = 0;
    note(w, "%s: daemon killed", n->name);
}

static void
world_init(world_t *w, const prop_class_t *cls, uint64_t seed, mg_ha_view_t *views)
{
    memset(w, 0, sizeof(*w));
    w->cls = cls;
    w->seed = seed;
    w->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    w->now = 1000000;
    for (int i = 0; i < NNODES; i++) {
        node_t *n = &w->nodes[i];

        snprintf(n->name, sizeof(n->name), "n%d", i);
        n->daemon_up = true;
        n->view = &views[i];
        memset(n->view, 0, sizeof(*n->view)); /* views are reused across schedules */
        n->state = i == 0 ? MG_HA_STATE_PRIMARY : MG_HA_STATE_REPLICA;
        n->pg_running = true;
        n->pg_primary = i == 0;
        n->pg_ours = true;
        n->priority = 100;
        renew(w, n);
        if (i != 0)
            snprintf(n->upstream, sizeof(n->upstream), "n0");
    }
    if (HAS(w, F_PRIO)) {
        /* priorities among the replicas; at most one of them may not fail over */
        int odd = (int)rnd_in(w, 0, 4);

        for (int i = 1; i < NNODES; i++)
            w->nodes[i].priority = rnd_in(w, 0, 1) ? 100 : 50;
        if (odd == 1)
            w->nodes[1].nofailover = true;
        else if (odd == 2)
            w->nodes[2].priority = 0;
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
    /* a cluster that ran a while: the primary wrote its failsafe set */
    for (int i = 0; i < NNODES && !HAS(w, F_UNTRACKED); i++)
        snprintf(w->etcd.status.members[w->etcd.status.nmembers++], MG_HA_NAME_SIZE, "n%d", i);
    if (HAS(w, F_SYNC)) {
        sync_to_status(w, 6, &w->etcd.status);
        snprintf(w->nodes[0].sync_names, sizeof(w->nodes[0].sync_names), "n1, n2");
        w->nodes[0].pg_sync = 6;
    }
    w->etcd.status.mod_revision = ++w->etcd.revision;
    for (int i = 0; i < NNODES; i++) {
        arm(w, &w->nodes[i]);
        publish(w, i);
        w->nodes[i].known = 7;
        w->nodes[i].promise_ms = TTL;
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
check(world_t *w)
{
    expire(w);
    watchdogs(w);
    if (primaries_now(w) > 1)
        prop_fail(w, "two writable primaries");
}

/* client_write: one write on each Postgres that takes writes; acknowledged per its sync set */
static void
client_write(world_t *w)
{
    for (int k = 0; k < NNODES; k++) {
        node_t *p = &w->nodes[k];
        bool acked = false;
        int s = -1;

        if (!p->pg_running || !p->pg_primary || p->nwal >= MAXW)
            continue;
        if (p->pg_sync != 0) {
            /* ANY 1 (pg_sync): a member that streams from p and has all of p's WAL flushes it */
            int first = (int)rnd_in(w, 0, NNODES - 1);

            for (int j = 0; j < NNODES && s < 0; j++) {
                int c = (first + j) % NNODES;

                if ((p->pg_sync & (1u << c)) && streams(w, &w->nodes[c], p) &&
                    w->nodes[c].nwal == p->nwal)
                    s = c;
            }
        }
        p->wal[p->nwal++] = ++w->next_write;
        if (p->pg_sync == 0) {
            acked = true;
        } else if (s >= 0) {
            w->nodes[s].wal[w->nodes[s].nwal++] = w->next_write;
            acked = true;
        }
        if (!acked)
            continue; /* the commit waits for a standby: not acknowledged */
        note(w, "write %u acknowledged by %s%s%s", w->next_write, p->name, s >= 0 ? " and " : "",
             s >= 0 ? w->nodes[s].name : "");
        cover.acked++;
        if (HAS(w, F_SYNC) && w->etcd.status.nsync_members > 0 &&
            w->nacked < sizeof(w->acked) / sizeof(w->acked[0])) {
            /* the status key promises it survives a failover */
            w->acked[w->nacked++] = w->next_write;
            cover.protected_acked++;
        }
    }
    /* replication: standbys catch up with the primary they stream from */
    for (int k = 0; k < NNODES; k++) {
        node_t *s = &w->nodes[k];
        int u = index_of(w, s->upstream);

        if (u >= 0 && streams(w, s, &w->nodes[u]) && rnd(w) % 2)
            wal_copy(s, &w->nodes[u]);
    }
}

/* cuttable: the node a partition may hit in this class */
static bool
cuttable(world_t *w, const node_t *n)
{
    if (HAS(w, F_CUT_ANY))
        return true;
    if (HAS(w, F_CUT_PRIMARY))
        return n->cut || (n->pg_running && n->pg_primary) ||
               (w->etcd.leader.exists && strcmp(w->etcd.leader.value, n->name) == 0);
    return false;
}

/*
 * sigterm (shutdown_daemon, on_stop: leave): Postgres stops (fast) when
 * mg_ha__stop_stops_pg says so, then the watchdog stops and the lease is
 * revoked (the keys on it go at once).
 */
static void
sigterm(world_t *w, node_t *n)
{
    note(w, "%s: SIGTERM (on_stop leave)", n->name);
    if (mg_ha__stop_stops_pg(MG_HA_ON_STOP_LEAVE, n->state, n->pg_ours, n->wd > 0, n->pg_running,
                             !n->pg_primary)) {
        for (int i = 0; i < NNODES; i++)
            if (streams(w, &w->nodes[i], n))
                wal_copy(&w->nodes[i], n); /* the shutdown checkpoint */
        n->pg_running = false;
        n->clean = true;
        note(w, "%s: Postgres stopped (fast)", n->name);
    }
    n->daemon_up = false;
    n->wd = 0;
    if (!n->cut && n->lease != NO_LEASE)
        etcd_revoke(w, n->lease);
    cover.stops++;
}

static void
random_event(world_t *w)
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
        if (HAS(w, F_WRITES))
            client_write(w);
    } else if (r < 80) {
        if (HAS(w, F_KILL)) {
            if (n->daemon_up)
                kill_daemon(w, n);
            else
                restart_daemon(w, n);
        } else if (HAS(w, F_NODE) && n->daemon_up) {
            kill_daemon(w, n);
            n->pg_running = false;
            n->wd_old = 0; /* node loss: the watchdog is gone too */
            note(w, "%s: node lost", n->name);
        }
    } else if (r < 85) {
        if (HAS(w, F_PAUSE) && (HAS(w, F_CUT_ANY) || cuttable(w, n) || n->paused)) {
            n->paused = !n->paused;
            note(w, "%s: %s", n->name, n->paused ? "SIGSTOP" : "SIGCONT");
        }
    } else if (r < 90) {
        if (HAS(w, F_ETCD_DOWN)) {
            bool down = !w->nodes[0].cut;

            for (int k = 0; k < NNODES; k++)
                w->nodes[k].cut = down;
            note(w, "etcd %s", down ? "down" : "back");
        } else if (cuttable(w, n)) {
            n->cut = !n->cut;
            note(w, "%s: etcd %s", n->name, n->cut ? "cut" : "reachable");
        }
    } else if (r < 93) {
        if (HAS(w, F_PGKILL)) {
            n->pg_running = false; /* kill -9 of the postmaster */
            note(w, "%s: postmaster killed", n->name);
        }
    } else if (r < 96) {
        if (HAS(w, F_CLOCK))
            n->wall_off += rnd_in(w, -30000, 30000); /* wall clock step */
        else if (HAS(w, F_STOP) && n->daemon_up && !n->paused && n->phase == 0)
            sigterm(w, n);
    } else if (r < 98) {
        w->now += rnd_in(w, TTL, 3 * TTL); /* a long quiet period */
    } else if (HAS(w, F_SWITCH)) {
        w->etcd.spec.switchover_id++;
        const node_t *t = &w->nodes[rnd(w) % NNODES];

        if (rnd(w) % 2 || (!HAS(w, F_SO_ANY) && (t->nofailover || t->priority <= 0)))
            w->etcd.spec.switchover_to[0] = '\0';
        else
            memcpy(w->etcd.spec.switchover_to, t->name, sizeof(w->etcd.spec.switchover_to));
        note(w, "operator: switchover %lld to \"%s\"", (long long)w->etcd.spec.switchover_id,
             w->etcd.spec.switchover_to);
    }
    check(w);
}

/* heal: every fault ends; the loops run; a primary must appear, holding every write. */
static void
heal_and_expect_primary(world_t *w)
{
    for (int i = 0; i < NNODES; i++) {
        node_t *n = &w->nodes[i];

        n->paused = n->cut = false;
        n->wall_off = 0;
        if (!n->daemon_up)
            restart_daemon(w, n);
    }
    w->etcd.spec.switchover_id = w->etcd.status.switchover_id; /* no pending request */
    for (int round = 0; round < 400; round++) {
        for (int i = 0; i < NNODES; i++) {
            phase0(w, &w->nodes[i]);
            check(w);
            if (w->nodes[i].phase == 1)
                phase1(w, &w->nodes[i]);
            check(w);
        }
        if (HAS(w, F_WRITES))
            client_write(w);
        w->now += LOOP;
        check(w);
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
    {
        char members[200] = "";

        for (size_t i = 0; i < w->etcd.status.nmembers; i++)
            snprintf(members + strlen(members), sizeof(members) - strlen(members), " %s",
                     w->etcd.status.members[i]);
        note(w, "status: failsafe members:%s; sync members %x", members,
             status_sync(w, &w->etcd.status));
    }
    prop_fail(
        w,
        "no stable primary with %d replicas after the faults healed (leader \"%s\", failover %s)",
        NNODES - 1, w->etcd.leader.value, mg_ha_failover_name(w->etcd.status.failover));
}

static void
run_schedule(const prop_class_t *cls, uint64_t seed, mg_ha_view_t *views)
{
    world_t *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    world_init(w, cls, seed, views);
    for (int s = 0; s < STEPS; s++)
        random_event(w);
    heal_and_expect_primary(w);
    free(w);
}

static uint64_t
schedules(void)
{
    const char *count = getenv("MG_HA_PROP_SCHEDULES");

    return count ? strtoull(count, NULL, 10) : 3000;
}

/* run_class runs the class's schedules (or the one of MG_HA_PROP_SEED) and checks coverage */
static void
run_class(const prop_class_t *cls, bool check_coverage)
{
    mg_ha_view_t *views = calloc(NNODES, sizeof(*views));
    const char *one = getenv("MG_HA_PROP_SEED");
    uint64_t n = schedules();

    assert_non_null(views);
    memset(&cover, 0, sizeof(cover));
    if (one != NULL) {
        run_schedule(cls, strtoull(one, NULL, 10), views);
        free(views);
        return;
    }
    for (uint64_t seed = 1; seed <= n; seed++)
        run_schedule(cls, seed, views);
    fprintf(stderr,
            "class %s: %llu schedules: %llu promotions (%llu ranked), %llu hand-offs, %llu daemon "
            "fences, %llu watchdog fences, %llu refused leader-key takes, %llu failsafe grants, "
            "%llu acknowledged writes (%llu protected, %llu durability checks), %llu stops\n",
            cls->name, (unsigned long long)n, (unsigned long long)cover.promotions,
            (unsigned long long)cover.ranked, (unsigned long long)cover.handoffs,
            (unsigned long long)cover.daemon_fences, (unsigned long long)cover.watchdog_fences,
            (unsigned long long)cover.two_leader_attempts,
            (unsigned long long)cover.failsafe_grants, (unsigned long long)cover.acked,
            (unsigned long long)cover.protected_acked, (unsigned long long)cover.durability_checks,
            (unsigned long long)cover.stops);
    free(views);
    if (!check_coverage)
        return;
    /*
     * the schedules reach the situations the properties are about. A node
     * counts a peer fresh only once it saw its report change (finding 13)
     * and promotes only members of the failsafe set (finding 2), so after
     * the frequent restarts of these schedules a failover waits a round or
     * two: fewer promotions and races than under the old wall-clock rule
     * (measured on 3000 schedules: lease 1828 promotions, 118 refused takes;
     * sync-election 266 promotions (197 ranked), 9 refused takes; failsafe-all 117
     * grants).
     */
    assert_true(cover.promotions > n / ((cls->flags & F_SYNC) ? 20 : 4));
    if (cls->flags & F_SWITCH)
        assert_true(cover.handoffs > n / 50);
    assert_true(cover.daemon_fences + cover.watchdog_fences > n / 20);
    if (cls->flags & (F_KILL | F_CUT_ANY)) /* sync mode has fewer candidates to race */
        assert_true(cover.two_leader_attempts > n / ((cls->flags & F_SYNC) ? 500 : 40));
    if (cls->flags & F_STOP)
        assert_true(cover.stops > n / 10);
    if (cls->flags & F_FAILSAFE)
        assert_true(cover.failsafe_grants > n / 40);
    if (cls->flags & F_WRITES)
        assert_true(cover.acked > n);
    if (cls->flags & F_DURABLE)
        assert_true(cover.protected_acked > n && cover.durability_checks > n / 4);
    if (cls->flags & F_PRIO)
        assert_true(cover.ranked > n / ((cls->flags & F_SYNC) ? 20 : 10));
}

/* class_selected: MG_HA_PROP_CLASS, if set, names the one class to run */
static bool
class_selected(const prop_class_t *cls)
{
    const char *only = getenv("MG_HA_PROP_CLASS");

    return only == NULL || strcmp(only, cls->name) == 0;
}

static void
test_schedules_hold(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
        if (class_selected(&classes[i]))
            run_class(&classes[i], getenv("MG_HA_PROP_SEED") == NULL);
}

/*
 * The classes of known_failing, run only on request: MG_HA_PROP_KNOWN=1 (all
 * of them) or MG_HA_PROP_CLASS=<name>. They fail on today's code (issue 16)
 * and must pass once the fixes land; then move them to `classes`.
 */
static void
test_known_findings(void **state)
{
    const char *all = getenv("MG_HA_PROP_KNOWN");
    const char *only = getenv("MG_HA_PROP_CLASS");
    bool ran = false;

    (void)state;
    for (size_t i = 0; i < sizeof(known_failing) / sizeof(known_failing[0]); i++) {
        const prop_class_t *cls = &known_failing[i];

        if ((all != NULL && strcmp(all, "1") == 0 && only == NULL) ||
            (only != NULL && strcmp(only, cls->name) == 0)) {
            fprintf(stderr, "known-failing class %s (%s)\n", cls->name, cls->what);
            run_class(cls, getenv("MG_HA_PROP_SEED") == NULL);
            ran = true;
        }
    }
    if (!ran)
        skip();
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
        cmocka_unit_test(test_schedules_hold),
        cmocka_unit_test(test_known_findings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
