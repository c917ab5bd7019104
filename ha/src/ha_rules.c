/*
 * ha/src/ha_rules.c - the daemon's decisions that mg_ha_decide does not
 * make, as functions of their inputs with no I/O and no clock of their own:
 * the failsafe (who may promise a primary without etcd not to promote, the
 * primary's grant from its peers' acks, its member set), synchronous mode
 * (the set Postgres waits for and the one etcd promises, on a primary and at
 * a promotion), when a writable Postgres is fenced, what a stopping daemon
 * stops and when a switchover may hand over. The daemon (ha_peers.c,
 * ha_actions.c, ha_fence.c, ha_loop.c) calls them with what it read; the
 * property test (tests/unit/ha/test_election.c) calls the same functions
 * with a simulated cluster, so it checks the product's rules, not a copy.
 */
#include "ha_daemon.h"

#include <stdio.h>
#include <string.h>

/* ---- failsafe ----------------------------------------------------------- */

mg_ha_peer_t *
mg_ha__peer_find(mg_ha_peer_t *peers, size_t *npeers, const char *name)
{
    for (size_t i = 0; i < *npeers; i++)
        if (strcmp(peers[i].name, name) == 0)
            return &peers[i];
    if (*npeers >= MG_HA_MAX_NODES)
        return NULL;
    memset(&peers[*npeers], 0, sizeof(mg_ha_peer_t));
    snprintf(peers[*npeers].name, MG_HA_NAME_SIZE, "%s", name);
    return &peers[(*npeers)++];
}

void
mg_ha__peers_seen(mg_ha_view_t *view, mg_ha_peer_t *peers, size_t *npeers, int64_t now_ms)
{
    for (size_t i = 0; i < view->nnodes; i++) {
        mg_ha_node_t *n = &view->nodes[i];
        mg_ha_peer_t *p = mg_ha__peer_find(peers, npeers, n->name);

        if (p == NULL) {
            n->seen_ms = -1;
            continue;
        }
        /* freshness as this node sees it: when the report last changed (finding 13) */
        if (n->mod_revision != p->seen_revision) {
            p->seen_changed_ms = p->seen_revision == 0 ? -1 : now_ms;
            p->seen_revision = n->mod_revision;
        }
        n->seen_ms = p->seen_changed_ms;
    }
}

size_t
mg_ha__failsafe_set(const mg_ha_view_t *view, char out[][MG_HA_NAME_SIZE])
{
    size_t n = 0;

    /*
     * Untracked (no primary has written a member set yet: a new cluster
     * before its primary's first round, or one from before the set
     * existed): nobody's promise is known to be needed, so no grant. It
     * was the nodes of the last view, and a node whose key had expired
     * meanwhile could come back, promote (untracked, everyone is a
     * candidate) and write beside the failsafe primary (finding 2; the
     * property test found it: classes failsafe-primary, seed 417, and
     * failsafe-etcd-down, seed 2247).
     */
    for (size_t i = 0; i < view->status.nmembers && n < MG_HA_MAX_NODES; i++)
        snprintf(out[n++], MG_HA_NAME_SIZE, "%s", view->status.members[i]);
    return n;
}

int64_t
mg_ha__grant_until(char set[][MG_HA_NAME_SIZE], size_t nset, const char *self,
                   const mg_ha_peer_t *peers, size_t npeers, int64_t ttl_ms, int64_t margin_ms)
{
    int64_t oldest = INT64_MAX;
    size_t others = 0;

    for (size_t i = 0; i < nset; i++) {
        int64_t acked = 0;

        if (strcmp(set[i], self) == 0)
            continue;
        others++;
        for (size_t j = 0; j < npeers; j++)
            if (strcmp(peers[j].name, set[i]) == 0)
                acked = peers[j].acked_sent_ms;
        if (acked == 0)
            return 0;
        if (acked < oldest)
            oldest = acked;
    }
    if (others == 0)
        return 0; /* a lone node has nobody to vouch that no one else promoted */
    return oldest + ttl_ms - margin_ms;
}

bool
mg_ha__promise_ok(mg_ha_state_t state, const mg_ha_view_t *view, const char *self,
                  const char *sender)
{
    if (state == MG_HA_STATE_PRIMARY || strcmp(view->leader, self) == 0)
        return false; /* we write, or are about to: no promise not to */
    if (view->leader[0] != '\0')
        return strcmp(view->leader, sender) == 0;
    return view->status.primary[0] == '\0' || strcmp(view->status.primary, sender) == 0;
}

int64_t
mg_ha__promise_ttl(const mg_ha_view_t *view, const char *sender, int64_t own_ttl_ms)
{
    const mg_ha_node_t *n = mg_ha_view_find_node(view, sender);

    return n != NULL && n->ttl_ms > own_ttl_ms ? n->ttl_ms : own_ttl_ms;
}

void
mg_ha__promise_give(int64_t now_ms, int64_t ttl_ms, int64_t *heard_ms, int64_t *promise_ms)
{
    /* an earlier, longer promise still in force is kept */
    if (*heard_ms == 0 || now_ms - *heard_ms >= *promise_ms || ttl_ms > *promise_ms)
        *promise_ms = ttl_ms;
    *heard_ms = now_ms;
}

void
mg_ha__promise_at_start(bool failsafe_on, int64_t now_ms, int64_t ttl_ms, int64_t *heard_ms,
                        int64_t *promise_ms)
{
    *promise_ms = ttl_ms;
    *heard_ms = failsafe_on ? now_ms : 0;
}

bool
mg_ha__promise_holds(int64_t heard_ms, int64_t promise_ms, int64_t now_ms)
{
    return heard_ms > 0 && now_ms - heard_ms < promise_ms;
}

/* member_index is the index of name in s's failsafe set, or -1. */
static int
member_index(const mg_ha_cluster_status_t *s, const char *name)
{
    for (size_t i = 0; i < s->nmembers; i++)
        if (strcmp(s->members[i], name) == 0)
            return (int)i;
    return -1;
}

bool
mg_ha__members_update_at(mg_ha_cluster_status_t *s, const mg_ha_view_t *view, const char *self,
                         mg_ha_peer_t *peers, size_t *npeers, int64_t now_ms, int64_t ttl_ms)
{
    bool changed = false;

    /* this primary and every node it sees as a replica: added before they count */
    if (member_index(s, self) < 0 && s->nmembers < MG_HA_MAX_NODES) {
        snprintf(s->members[s->nmembers++], MG_HA_NAME_SIZE, "%s", self);
        changed = true;
    }
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *n = &view->nodes[i];

        if (n->state == MG_HA_STATE_REPLICA && member_index(s, n->name) < 0 &&
            s->nmembers < MG_HA_MAX_NODES) {
            snprintf(s->members[s->nmembers++], MG_HA_NAME_SIZE, "%s", n->name);
            changed = true;
        }
    }
    /* a member gone from nodes/ for 2 x ttl leaves; back, it joins again before it counts */
    for (size_t i = 0; i < s->nmembers;) {
        mg_ha_peer_t *p = strcmp(s->members[i], self) == 0
                              ? NULL
                              : mg_ha__peer_find(peers, npeers, s->members[i]);

        if (p == NULL || mg_ha_view_find_node(view, p->name) != NULL) {
            if (p != NULL)
                p->gone_since_ms = 0;
            i++;
            continue;
        }
        if (p->gone_since_ms == 0)
            p->gone_since_ms = now_ms;
        if (now_ms - p->gone_since_ms < 2 * ttl_ms) {
            i++;
            continue;
        }
        memmove(&s->members[i], &s->members[i + 1], (s->nmembers - i - 1) * sizeof(s->members[0]));
        s->nmembers--;
        changed = true;
    }
    return changed;
}

/* ---- synchronous mode --------------------------------------------------- */

void
mg_ha__sync_candidates(const mg_ha_view_t *view, const char *self, const mg_ha_replication_t *rep,
                       size_t nrep, mg_ha_sync_pick_t pick, char *out, size_t outsz)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *x = &view->nodes[i];
        bool take = pick == MG_HA_SYNC_ALL || (pick == MG_HA_SYNC_ALIVE && x->pg_running);

        if (strcmp(x->name, self) == 0 || x->state == MG_HA_STATE_REFUSED)
            continue;
        for (size_t j = 0; j < nrep && pick == MG_HA_SYNC_STREAMING && !take; j++)
            if (strcmp(rep[j].application_name, x->name) == 0 &&
                strcmp(rep[j].state, "streaming") == 0)
                take = true;
        if (!take)
            continue;
        n += (size_t)snprintf(out + n, outsz > n ? outsz - n : 0, "%s%s", n ? ", " : "", x->name);
    }
}

void
mg_ha__names_to_status(const char *names, mg_ha_cluster_status_t *s)
{
    const char *p = names;

    s->nsync_members = 0;
    while (*p != '\0' && s->nsync_members < MG_HA_MAX_NODES) {
        size_t len = strcspn(p, ",");

        snprintf(s->sync_members[s->nsync_members++], MG_HA_NAME_SIZE, "%.*s", (int)len, p);
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
}

static bool
sync_member(const mg_ha_cluster_status_t *s, const char *name)
{
    for (size_t i = 0; i < s->nsync_members; i++)
        if (strcmp(s->sync_members[i], name) == 0)
            return true;
    return false;
}

bool
mg_ha__sync_narrow_ok(const mg_ha_replication_t *rep, size_t nrep, char keep[][MG_HA_NAME_SIZE],
                      size_t nkeep, uint64_t narrow_lsn)
{
    if (narrow_lsn == 0)
        return false;
    for (size_t i = 0; i < nkeep; i++)
        for (size_t j = 0; j < nrep; j++) {
            uint64_t flushed = 0;

            if (strcmp(rep[j].application_name, keep[i]) == 0 &&
                mg_ha_lsn_parse(rep[j].flush_lsn, &flushed) && flushed >= narrow_lsn)
                return true;
        }
    return false;
}

mg_ha_sync_step_t
mg_ha__sync_plan(const mg_ha_sync_in_t *in, char *want, size_t wantsz, mg_ha_cluster_status_t *s,
                 uint64_t *narrow_lsn)
{
    mg_ha_cluster_status_t w;
    bool superset = true;

    *s = in->view->status;
    *narrow_lsn = in->narrow_lsn;
    mg_ha__sync_candidates(in->view, in->self, in->rep, in->nrep, MG_HA_SYNC_STREAMING, want,
                           wantsz);
    memset(&w, 0, sizeof(w));
    mg_ha__names_to_status(want, &w);
    for (size_t i = 0; i < w.nsync_members; i++)
        if (!sync_member(s, w.sync_members[i])) {
            superset = false;
            if (s->nsync_members < MG_HA_MAX_NODES)
                snprintf(s->sync_members[s->nsync_members++], MG_HA_NAME_SIZE, "%s",
                         w.sync_members[i]);
        }
    if (!superset)
        return MG_HA_SYNC_WIDEN; /* etcd first; Postgres changes next round */
    if (strcmp(want, in->pg_names) != 0) {
        if (w.nsync_members == 0 && in->pg_names[0] != '\0') {
            /* keep waiting for a standby rather than degrade while one of them may return */
            for (size_t i = 0; i < in->view->nnodes; i++)
                if (strcmp(in->view->nodes[i].name, in->self) != 0 && in->view->nodes[i].pg_running)
                    return MG_HA_SYNC_KEEP;
        }
        return MG_HA_SYNC_APPLY;
    }
    if (s->nsync_members == w.nsync_members)
        return MG_HA_SYNC_KEEP;
    /*
     * A member leaves etcd's set only once a remaining one holds every commit
     * acknowledged while it was in Postgres' set: the primary's LSN a round
     * after Postgres ran without it (issue 16, finding 5).
     */
    if (in->narrow_lsn == 0) {
        if (!in->changed_this_round)
            (void)mg_ha_lsn_parse(in->current_lsn, narrow_lsn);
        return *narrow_lsn != 0 ? MG_HA_SYNC_MARK : MG_HA_SYNC_KEEP;
    }
    if (!mg_ha__sync_narrow_ok(in->rep, in->nrep, w.sync_members, w.nsync_members, in->narrow_lsn))
        return MG_HA_SYNC_KEEP;
    s->nsync_members = 0;
    for (size_t i = 0; i < w.nsync_members; i++)
        snprintf(s->sync_members[s->nsync_members++], MG_HA_NAME_SIZE, "%s", w.sync_members[i]);
    return MG_HA_SYNC_NARROW;
}

void
mg_ha__status_sync_names(const mg_ha_cluster_status_t *s, const char *self, char *out, size_t outsz)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < s->nsync_members; i++)
        if (strcmp(s->sync_members[i], self) != 0)
            n += (size_t)snprintf(out + n, n < outsz ? outsz - n : 0, "%s%s", n ? ", " : "",
                                  s->sync_members[i]);
}

bool
mg_ha__promote_plan(const mg_ha_view_t *view, const mg_ha_self_t *me, bool synchronous_mode,
                    char *names, size_t namesz, mg_ha_cluster_status_t *s)
{
    const char *self = me->name;
    bool switchover = view->status.failover == MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY &&
                      strcmp(view->status.target_primary, self) == 0;

    *s = view->status;
    names[0] = '\0';
    if (synchronous_mode) {
        /*
         * Commits wait for one of the other nodes from the first one on: the
         * setting is applied (reloaded) while still a standby, so it is in
         * force when pg_promote returns (issue 16, finding 4). A node whose
         * Postgres does not run or whose report is stale (the lost old
         * primary) is left out, so it does not become a sync member that
         * the next failover would wait for (finding 14).
         */
        mg_ha_promotion_sync_names(me, view, switchover, names, namesz);
        mg_ha__names_to_status(names, s);
    } else {
        s->nsync_members = 0;
    }
    s->term = s->exists ? s->term + 1 : 1;
    snprintf(s->primary, sizeof(s->primary), "%s", self);
    s->synchronous_mode = synchronous_mode;
    s->failover = MG_HA_FAILOVER_RECONFIGURING_REPLICAS;
    s->target_primary[0] = '\0';
    snprintf(s->last_failover_reason, sizeof(s->last_failover_reason), "%s",
             switchover ? "switchover" : "leader lease lapsed");
    if (!switchover)
        s->writes_stopped_ms = 0;
    return switchover;
}

/* ---- fencing, stopping, handing over ----------------------------------- */

bool
mg_ha__fence_due(bool may_write, int64_t writable_until, int64_t write_deadline, int64_t now_ms)
{
    /*
     * Also a Postgres made writable outside state primary (a promotion whose
     * status write failed): it stops at the deadline it was made writable
     * under (issue 16, finding 7).
     */
    int64_t until = writable_until > 0 ? writable_until : write_deadline;

    return may_write && until > 0 && now_ms >= until;
}

int64_t
mg_ha__write_deadline(bool may_write, int64_t writable_until, int64_t last)
{
    if (!may_write)
        return 0;
    return writable_until > 0 ? writable_until : last;
}

bool
mg_ha__stop_stops_pg(int on_stop, mg_ha_state_t state, bool pg_child, bool watchdog_armed,
                     bool running, bool standby_dir)
{
    /*
     * Ours: a Postgres this daemon runs (a state that runs one, one it
     * started, or one whose fence it holds: a watchdog deadline adopted from
     * a killed daemon, before the first loop); a refused node never touches
     * a Postgres it did not run.
     */
    bool ours = state == MG_HA_STATE_PRIMARY || state == MG_HA_STATE_REPLICA ||
                state == MG_HA_STATE_BOOTSTRAP || state == MG_HA_STATE_CLONE ||
                state == MG_HA_STATE_DEMOTED || pg_child || watchdog_armed;
    bool standby = state != MG_HA_STATE_PRIMARY && standby_dir;

    /* on_stop leave applies to a standby only (issue 16, finding 1) */
    return ours && running && (on_stop == MG_HA_ON_STOP_FAST || !standby);
}

const char *
mg_ha__handoff_refusal(bool pg_running, bool have_final_lsn, const char *dir_lsn,
                       const char *status_final_lsn)
{
    if (pg_running)
        return "the old primary's Postgres runs again";
    if (!have_final_lsn)
        return "the old primary's data directory has no clean final LSN";
    if (strcmp(dir_lsn, status_final_lsn) != 0)
        return "the old primary's data directory changed after the final LSN";
    return NULL;
}
