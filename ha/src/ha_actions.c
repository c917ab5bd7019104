/*
 * ha/src/ha_actions.c - what the daemon does for each action mg_ha_decide
 * returns: start Postgres as primary or standby, clone, promote, follow,
 * demote, hand off, rejoin with pg_rewind, re-clone, keep the slots and the
 * synchronous standbys of a primary, release the leader key.
 */
#include "ha_daemon.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool
init_marker(mg_ha_daemon_t *d, bool set)
{
    char path[PATH_MAX];

    /* per node: pg_basebackup copies the primary's marker to its replicas */
    snprintf(path, sizeof(path), "%s/pgdaemon.initialized.%s", d->conf->data_dir, d->conf->name);
    if (!set)
        return access(path, F_OK) == 0;
    return mg_ha__write_file(path, "", 0, 0600, &d->pg.runas, NULL);
}

/*
 * become_primary makes the local Postgres a primary that takes writes, with
 * sync_names (NULL: as they are) in force. A standby data directory
 * (standby.signal) becomes one only through pg_promote, which starts a new
 * timeline; when it does not run it is started as a standby first. Removing
 * standby.signal and starting it would run crash recovery on the old
 * timeline, and pg_rewind of the old primary would then find "no rewind
 * required" while its divergent tail survives (issue 16, finding 3). Fails
 * unless Postgres then answers queries out of recovery.
 */
static bool
become_primary(mg_ha_daemon_t *d, const char *sync_names, mg_error_t *error)
{
    bool in_recovery = false;

    if (mg_ha__pg_is_standby_dir(&d->pg)) {
        if (mg_ha__pg_running(&d->pg) <= 0 &&
            (!mg_ha__pg_configure(&d->pg, true, NULL, 0, error) || !mg_ha__pg_start(&d->pg, error)))
            return false;
        /* applied while a standby, so it is in force when the promotion ends (finding 4) */
        if (sync_names != NULL && !mg_ha__pg_apply_sync(&d->pg, sync_names, error))
            return false;
        if (!mg_ha__pg_promote(&d->pg, error))
            return false;
    } else {
        if (sync_names != NULL && sync_names != d->pg.sync_names)
            snprintf(d->pg.sync_names, sizeof(d->pg.sync_names), "%s", sync_names);
        if (!mg_ha__pg_configure(&d->pg, false, NULL, 0, error) || !mg_ha__pg_start(&d->pg, error))
            return false;
    }
    mg_ha__pg_collect(&d->pg, &d->self, &in_recovery);
    d->in_recovery = in_recovery;
    mg_ha__etcd_budget(d); /* Postgres' time was not etcd's */
    if (!d->self.pg_queries_ok || in_recovery)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "Postgres is not a writable primary yet (%s)",
                            in_recovery ? "still in recovery" : d->self.pg_error);
    return true;
}

static bool
do_start_primary(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    bool got = false;

    (void)dec;
    if (d->view.init_sysid[0] == '\0' && d->local_sysid[0] != '\0') {
        bool won = false;

        if (!mg_ha__put_initialize(d, d->view.init_mod_revision, d->local_sysid, &won, error))
            return false;
        if (!won)
            return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                                "initialize changed while this node bootstrapped");
    }
    if (!mg_ha__take_leader(d, &got, error))
        return false;
    if (!got)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "the leader key is held by another node");
    if (d->conf->synchronous_mode && d->pg.sync_names[0] == '\0' &&
        strcmp(d->view.status.primary, d->conf->name) == 0) {
        /* restart: keep waiting for the standbys etcd says may hold commits */
        mg_ha__status_sync_names(&d->view.status, d->conf->name, d->pg.sync_names,
                                 sizeof(d->pg.sync_names));
    }
    d->upstream[0] = '\0';
    if (!mg_ha__may_become_primary(d, error))
        return false;
    if (!become_primary(d, d->pg.sync_names, error) || !mg_ha__pg_ensure_roles(&d->pg, error))
        return false;
    mg_ha__etcd_budget(d);
    if (!mg_ha__ensure_status(d, error))
        return false;
    if (d->conf->primary_init_script != NULL && !init_marker(d, false)) {
        if (!mg_ha__pg_run_init_script(&d->pg, d->conf->primary_init_script, error)) {
            mg_error_prefix(error, "primary init script \"%s\"", d->conf->primary_init_script);
            return false;
        }
    }
    init_marker(d, true);
    return true;
}

static bool
do_start_replica(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    const char *peer = dec->peer;
    const mg_ha_node_t *p = mg_ha_view_find_node(&d->view, peer);
    bool known = p != NULL && p->host[0] != '\0' && p->pg_port > 0;

    /* no primary to stream from yet: a standby in recovery still reports its LSNs */
    if (!mg_ha__pg_configure(&d->pg, true, known ? p->host : NULL, known ? p->pg_port : 0, error) ||
        !mg_ha__pg_start(&d->pg, error))
        return false;
    snprintf(d->upstream, sizeof(d->upstream), "%s", known ? peer : "");
    if (d->conf->replica_init_script != NULL && !init_marker(d, false)) {
        if (!mg_ha__pg_run_init_script(&d->pg, d->conf->replica_init_script, error)) {
            mg_error_prefix(error, "replica init script \"%s\"", d->conf->replica_init_script);
            return false;
        }
    }
    init_marker(d, true);
    return true;
}

static bool
do_clone(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    const char *peer = dec->peer;
    const mg_ha_node_t *p = mg_ha_view_find_node(&d->view, peer);
    char slot[MG_HA_NAME_SIZE];

    if (p == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                            "primary \"%s\" is gone", peer ? peer : "");
    mg_ha_slot_name(d->conf->name, slot, sizeof(slot));
    if (!mg_ha__pg_check_slot(&d->pg, p->host, p->pg_port, slot, error) ||
        !mg_ha__pg_basebackup(&d->pg, p->host, p->pg_port, slot, error))
        return false;
    return mg_ha__pg_read_sysid(&d->pg, d->local_sysid, sizeof(d->local_sysid), error);
}

/*
 * manage_sync applies mg_ha__sync_plan (ha_rules.c): ANY 1 (streaming
 * standbys) in Postgres, the status key's sync_members a superset of every
 * set Postgres may have used. Only sync members are failover candidates in
 * this mode.
 */
static bool
manage_sync(mg_ha_daemon_t *d, mg_error_t *error)
{
    char want[sizeof(d->pg.sync_names)];
    mg_ha_cluster_status_t s;
    mg_ha_sync_in_t in;

    if (!d->conf->synchronous_mode)
        return true;
    memset(&in, 0, sizeof(in));
    in.view = &d->view;
    in.self = d->conf->name;
    in.rep = d->self.replication;
    in.nrep = d->self.nreplication;
    in.pg_names = d->pg.sync_names;
    in.current_lsn = d->self.current_lsn;
    in.changed_this_round = d->loops <= d->sync_changed_loop;
    in.narrow_lsn = d->sync_narrow_lsn;
    switch (mg_ha__sync_plan(&in, want, sizeof(want), &s, &d->sync_narrow_lsn)) {
    case MG_HA_SYNC_WIDEN:
    case MG_HA_SYNC_NARROW:
        return mg_ha__cas_status(d, &s, error);
    case MG_HA_SYNC_APPLY:
        if (!mg_ha__pg_apply_sync(&d->pg, want, error))
            return false;
        d->sync_changed_loop = d->loops;
        d->sync_narrow_lsn = 0;
        MG_LOG_EVENT(
            MG_LOG_NOTICE, MODULE, "ha.sync",
            MG_LOG_FIELDS(MG_LOG_STR("node", d->conf->name), MG_LOG_STR("sync_standbys", want)),
            "synchronous_standby_names = ANY 1 (%s)", want);
        return true;
    case MG_HA_SYNC_MARK:
    case MG_HA_SYNC_KEEP:
    default:
        return true;
    }
}

/*
 * do_promote takes the leader key with a create-only txn (or finds it
 * ours), promotes the local standby, and records the new primary in the
 * status key (term + 1, reconfiguring_replicas) with the decision inputs.
 */
static bool
do_promote(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_cluster_status_t s;
    mg_ha_self_t me;
    bool got = false;
    bool switchover;
    char names[sizeof(d->pg.sync_names)];

    if (!mg_ha__take_leader(d, &got, error))
        return false;
    if (!got)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "another node took the leader key first");
    /* the sync set is applied while still a standby (finding 4); the status after the promotion */
    mg_ha__self_limits(d, &me);
    switchover =
        mg_ha__promote_plan(&d->view, &me, d->conf->synchronous_mode, names, sizeof(names), &s);
    if (!mg_ha__may_become_primary(d, error))
        return false;
    if (!become_primary(d, d->conf->synchronous_mode ? names : NULL, error))
        return false;
    d->upstream[0] = '\0';
    (void)mg_ha__members_update(d, &s);
    s.last_failover_ms = mg_ha__wall_ms();
    s.writes_resumed_ms = s.last_failover_ms;
    if (!mg_ha__cas_status(d, &s, error))
        return false;
    {
        mg_error_t ignored;

        /* pg_control names the new timeline from the next checkpoint on (pg_rewind reads it) */
        if (!mg_ha__pg_checkpoint_remote(&d->pg, d->pg.local_host, d->conf->pg_port, &ignored))
            mg_log_error(MG_LOG_WARNING, MODULE, &ignored);
    }
    mg_ha__status_event(d, "promote", d->conf->name, "%s: %s promoted (term %" PRId64 ")%s%s",
                        switchover ? "switchover" : "failover", d->conf->name, s.term,
                        switchover ? "" : "; ", switchover ? "" : dec->reason);
    mg_ha__wake_all(d);
    return true;
}

/* do_follow points the running standby at the new primary and reloads. */
static bool
do_follow(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    const char *peer = dec->peer;
    const mg_ha_node_t *p = mg_ha_view_find_node(&d->view, peer);

    if (p == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                            "primary \"%s\" has not reported its address", peer);
    if (!mg_ha__pg_configure(&d->pg, true, p->host, p->pg_port, error) ||
        !mg_ha__pg_reload(&d->pg, error))
        return false;
    snprintf(d->upstream, sizeof(d->upstream), "%s", peer);
    return true;
}

/*
 * abort_switchover gives a switchover up before the hand-off: status stable
 * with why as the reason. The node still holds the leader key, so it runs
 * as primary again (at once from do_abort_switchover, else at the next
 * loop). false with error when the status changed meanwhile.
 */
static bool
abort_switchover(mg_ha_daemon_t *d, const char *why, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    char target[MG_HA_NAME_SIZE];

    snprintf(target, sizeof(target), "%s", s.target_primary);
    s.failover = MG_HA_FAILOVER_STABLE;
    s.target_primary[0] = '\0';
    snprintf(s.last_failover_reason, sizeof(s.last_failover_reason),
             "switchover to %.40s aborted: %.70s", target, why);
    if (!mg_ha__cas_status(d, &s, error))
        return false;
    mg_ha__status_event(d, "abort_switchover", target, "%s", s.last_failover_reason);
    return true;
}

/*
 * do_demote stops writes. In a switchover it first marks the status
 * demoting_old_primary (so /primary is 503 everywhere), shuts Postgres down
 * cleanly (the shutdown checkpoint reaches the standbys), and records the
 * final LSN for the catch-up; otherwise it stops Postgres at once.
 */
static bool
do_demote(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    bool switchover = strcmp(d->view.leader, d->conf->name) == 0 &&
                      strcmp(s.primary, d->conf->name) == 0 &&
                      (s.failover == MG_HA_FAILOVER_INITIATED ||
                       s.failover == MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY ||
                       s.failover == MG_HA_FAILOVER_WAITING_FOR_CATCHUP);

    (void)dec;
    mg_ha__stop_writes(d);
    if (!switchover)
        return mg_ha__pg_stop_now(&d->pg, true, error);
    if (s.failover == MG_HA_FAILOVER_INITIATED) {
        s.failover = MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY;
        s.writes_stopped_ms = mg_ha__wall_ms();
        if (!mg_ha__cas_status(d, &s, error))
            return false;
        mg_ha__status_event(d, "demote", s.target_primary, "switchover to %s: writes stopped",
                            s.target_primary);
    }
    if (!mg_ha__pg_stop_now(&d->pg, false, error))
        return false;
    mg_ha__etcd_budget(d);
    if (!mg_ha__pg_final_lsn(&d->pg, s.final_lsn, sizeof(s.final_lsn), error)) {
        mg_error_t ignored;

        /* not a clean shutdown: no LSN to hand over at, so no hand-off (16.6) */
        if (error->domain == MG_ERROR_DOMAIN_PG && error->code == MG_ERROR_CODE_INVALID_ARGUMENT)
            (void)abort_switchover(d, "the old primary did not shut down cleanly", &ignored);
        return false;
    }
    s.failover = MG_HA_FAILOVER_WAITING_FOR_CATCHUP;
    if (!mg_ha__cas_status(d, &s, error))
        return false;
    mg_ha__status_event(d, "demote", s.target_primary, "switchover: old primary stopped at %s",
                        s.final_lsn);
    mg_ha__wake_all(d);
    return true;
}

/* do_handoff releases the leader key and sets promoting_new_primary in one txn. */
static bool
do_handoff(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    const char *target = dec->peer;
    mg_ha_cluster_status_t s = d->view.status;

    char lsn[MG_HA_LSN_SIZE] = "";
    const char *why = NULL;
    mg_error_t ignored;

    /*
     * The target caught up with the final LSN of the status; hand over only
     * if the data directory still ends there: stopped cleanly at that LSN and
     * not started since (a restart that took writes would lose them, 16.6).
     */
    {
        bool running = mg_ha__pg_running(&d->pg) > 0;
        bool have = !running && mg_ha__pg_final_lsn(&d->pg, lsn, sizeof(lsn), error);

        why = mg_ha__handoff_refusal(running, have, lsn, s.final_lsn);
    }
    mg_ha__etcd_budget(d);
    if (why != NULL) {
        (void)abort_switchover(d, why, &ignored);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "switchover aborted before the hand-off: %s (final LSN %s, data "
                            "directory at %s)",
                            why, s.final_lsn, lsn[0] ? lsn : "unknown");
    }
    s.failover = MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY;
    snprintf(s.target_primary, sizeof(s.target_primary), "%s", target);
    if (!mg_ha__handoff_leader(d, &s, error))
        return false;
    mg_ha__keeper_key(d, false, 0); /* no key, no writes */
    mg_ha__status_event(d, "handoff", target, "switchover: leader key released to %s", target);
    mg_ha__wake_all(d);
    return true;
}

/* do_abort_switchover restarts the old primary (it still holds the key), status stable. */
static bool do_abort_switchover(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error);

/* do_switchover_begin accepts (status initiated, target) or refuses a spec request. */
static bool
do_switchover_begin(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;

    s.switchover_id = d->view.spec.switchover_id;
    snprintf(s.last_failover_reason, sizeof(s.last_failover_reason), "%.*s",
             (int)sizeof(s.last_failover_reason) - 1, dec->reason);
    if (dec->peer[0] != '\0') {
        s.failover = MG_HA_FAILOVER_INITIATED;
        snprintf(s.target_primary, sizeof(s.target_primary), "%s", dec->peer);
        s.final_lsn[0] = '\0';
        s.writes_stopped_ms = s.writes_resumed_ms = 0;
    }
    if (!mg_ha__cas_status(d, &s, error))
        return false;
    mg_ha__status_event(d, "switchover_begin", dec->peer, "%s", dec->reason);
    d->woken = true; /* demote now, not a loop later */
    return true;
}

/*
 * do_rejoin makes a stopped or diverged node a standby of peer: stop
 * Postgres, pg_rewind against the primary (a no-op when nothing diverged),
 * configure, start. A failure counts toward the re-clone fallback.
 */
static bool
do_rejoin(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    const char *peer = dec->peer;
    const mg_ha_node_t *p = mg_ha_view_find_node(&d->view, peer);
    char slot[MG_HA_NAME_SIZE];

    if (p == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                            "primary \"%s\" has not reported its address", peer);
    mg_ha_slot_name(d->conf->name, slot, sizeof(slot));
    if (!mg_ha__pg_check_slot(&d->pg, p->host, p->pg_port, slot, error)) {
        /* the primary creates it once it sees our node key: publish it now */
        d->self.state = d->state;
        mg_ha__publish_self(d);
        mg_ha__wake_node(d, p);
        return false;
    }
    if (!mg_ha__pg_checkpoint_remote(&d->pg, p->host, p->pg_port, error) ||
        !mg_ha__pg_stop_now(&d->pg, false, error))
        return false;
    if (d->stalled) {
        /* re-joining because streaming did not resume: counts toward the re-clone */
        d->rewind_failures++;
        d->stalled = false;
        d->not_streaming_since_ms = 0;
    }
    if (!mg_ha__pg_rewind(&d->pg, p->host, p->pg_port, error)) {
        d->rewind_failures++;
        return false;
    }
    if (!mg_ha__pg_configure(&d->pg, true, p->host, p->pg_port, error) ||
        !mg_ha__pg_start(&d->pg, error)) {
        d->rewind_failures++;
        return false;
    }
    snprintf(d->upstream, sizeof(d->upstream), "%s", peer);
    d->not_streaming_since_ms = 0;
    mg_ha__etcd_budget(d);
    {
        mg_ha_event_ctx_t ctx = {mg_ha_state_name(d->state), "replica", "rejoin", peer};
        char msg[200];

        snprintf(msg, sizeof(msg), "rejoined as a standby of %s after pg_rewind", peer);
        mg_ha__event(d, MG_LOG_NOTICE, "ha.rejoin", &ctx, msg);
    }
    return true;
}

/* do_reclone removes the data dir so the node joins again with pg_basebackup. */
static bool
do_reclone(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_event_ctx_t ctx = {mg_ha_state_name(d->state), "wait_primary", "reclone", dec->peer};

    if (!mg_ha__pg_stop_now(&d->pg, false, error))
        return false;
    mg_ha__etcd_budget(d);
    mg_ha__event(d, MG_LOG_WARNING, "ha.reclone", &ctx, dec->reason);
    if (!mg_ha__rmtree(d->conf->data_dir))
        return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, 0, "could not remove \"%s\"",
                            d->conf->data_dir);
    d->local_sysid[0] = '\0';
    d->rewind_failures = 0;
    d->join_started_ms = mg_ha__now_ms();
    return true;
}

/* do_finish_failover: replicas follow the new primary, status stable. */
static bool
do_finish_failover(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;

    (void)dec;
    s.failover = MG_HA_FAILOVER_STABLE;
    s.target_primary[0] = '\0';
    if (!mg_ha__cas_status(d, &s, error))
        return false;
    mg_ha__status_event(d, "finish_failover", d->conf->name,
                        "failover complete: replicas follow %s (write gap %" PRId64 "ms)",
                        s.primary,
                        s.writes_stopped_ms > 0 ? s.writes_resumed_ms - s.writes_stopped_ms : -1);
    return true;
}

/*
 * drop_departed_slots drops our slots (pgdaemon_*) whose node has been
 * missing from nodes/ for slot_ttl, so a departed node cannot hold WAL
 * forever. Timing is per slot, on the monotonic clock.
 */
static void
drop_departed_slots(mg_ha_daemon_t *d)
{
    int64_t now = mg_ha__now_ms();
    mg_ha_absent_slot_t next[MG_HA_MAX_SLOTS];
    size_t nnext = 0;

    for (size_t i = 0; i < d->self.nslots && nnext < MG_HA_MAX_SLOTS; i++) {
        const char *slot = d->self.slots[i];
        int64_t since = now;
        bool present = false;

        if (strncmp(slot, "pgdaemon_", 9) != 0)
            continue; /* not ours */
        for (size_t j = 0; j < d->view.nnodes && !present; j++) {
            char name[MG_HA_NAME_SIZE];

            mg_ha_slot_name(d->view.nodes[j].name, name, sizeof(name));
            present = strcmp(name, slot) == 0;
        }
        if (present)
            continue;
        for (size_t j = 0; j < d->nabsent; j++)
            if (strcmp(d->absent[j].slot, slot) == 0)
                since = d->absent[j].since_ms;
        if (now - since >= d->conf->slot_ttl_ms) {
            mg_ha_event_ctx_t ctx = {NULL, NULL, "drop_slot", NULL};
            char msg[200];
            mg_error_t error;
            bool dropped = false;

            if (!mg_ha__pg_drop_slot(&d->pg, slot, &dropped, &error))
                mg_log_error(MG_LOG_WARNING, "ha", &error);
            if (dropped) {
                snprintf(msg, sizeof(msg),
                         "dropped replication slot %s: its node has been gone for %llds", slot,
                         (long long)((now - since) / 1000));
                mg_ha__event(d, MG_LOG_NOTICE, "ha.slot_dropped", &ctx, msg);
                continue;
            }
        }
        snprintf(next[nnext].slot, MG_HA_NAME_SIZE, "%s", slot);
        next[nnext++].since_ms = since;
    }
    memcpy(d->absent, next, nnext * sizeof(next[0]));
    d->nabsent = nnext;
}

/* maintain_primary keeps the leader key and creates slots for joining nodes. */
static bool
do_maintain_primary(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    char want[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nwant = 0;
    bool got = true;

    (void)dec;
    if (strcmp(d->view.leader, d->conf->name) != 0 || d->view.leader_lease != d->lease) {
        if (!mg_ha__take_leader(d, &got, error))
            return false;
        if (!got)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                "could not take the leader key");
    }
    if (!mg_ha__ensure_status(d, error))
        return false;
    {
        mg_ha_cluster_status_t s = d->view.status;

        bool sync_changed = s.synchronous_mode != d->conf->synchronous_mode;

        /* the failsafe set grows before a new replica counts on it (issue 16, finding 2) */
        s.synchronous_mode = d->conf->synchronous_mode;
        if ((mg_ha__members_update(d, &s) || sync_changed) && !mg_ha__cas_status(d, &s, error))
            return false;
    }
    if (d->self.current_lsn[0] != '\0' && !mg_ha__put_optime(d, d->self.current_lsn, error))
        return false;
    if (!manage_sync(d, error))
        return false;
    for (size_t i = 0; i < d->view.nnodes; i++) {
        const mg_ha_node_t *n = &d->view.nodes[i];
        bool have = false;

        if (strcmp(n->name, d->conf->name) == 0 || n->state == MG_HA_STATE_REFUSED ||
            n->state == MG_HA_STATE_INIT || n->state == MG_HA_STATE_BOOTSTRAP)
            continue;
        mg_ha_slot_name(n->name, want[nwant], MG_HA_NAME_SIZE);
        for (size_t j = 0; j < d->self.nslots; j++)
            if (strcmp(d->self.slots[j], want[nwant]) == 0)
                have = true;
        if (!have) {
            mg_ha_event_ctx_t ctx = {NULL, NULL, "create_slot", n->name};
            char msg[200];

            snprintf(msg, sizeof(msg), "creating replication slot %s for node %s", want[nwant],
                     n->name);
            mg_ha__event(d, MG_LOG_NOTICE, "ha.slot", &ctx, msg);
            nwant++;
        }
    }
    if (!mg_ha__pg_ensure_slots(&d->pg, want, nwant, error))
        return false;
    drop_departed_slots(d);
    if (nwant > 0) {
        bool rec;

        mg_ha__pg_collect(&d->pg, &d->self, &rec);
        mg_ha__publish_self(d);
        for (size_t i = 0; i < d->view.nnodes; i++)
            mg_ha__wake_node(d, &d->view.nodes[i]);
    }
    return true;
}

static bool
do_abort_switchover(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    return abort_switchover(d, "catch-up timeout", error) && do_start_primary(d, dec, error);
}

/*
 * give_up_bootstrap releases `initialize` after initdb failed again and
 * again (only while it still names this node without a system identifier),
 * so another node can bootstrap, and records why.
 */
static void
give_up_bootstrap(mg_ha_daemon_t *d, const mg_error_t *cause)
{
    mg_ha_event_ctx_t ctx = {mg_ha_state_name(d->state), NULL, "initdb", NULL};
    char msg[MG_ERROR_MESSAGE_SIZE + 96];

    mg_ha__release_initialize(d);
    snprintf(msg, sizeof(msg), "bootstrap of node %s abandoned after %d failed initdb runs: %s",
             d->conf->name, d->initdb_failures, cause->message);
    mg_ha__event(d, MG_LOG_FATAL, "ha.bootstrap_failed", &ctx, msg);
}

/* do_refuse records the refusal and makes the daemon exit non-zero. */
static bool
do_refuse(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_event_ctx_t ctx = {mg_ha_state_name(d->state), "refused", "refuse", NULL};

    (void)error;
    mg_ha__event(d, MG_LOG_ERROR, "ha.refused", &ctx, dec->reason);
    d->state = MG_HA_STATE_REFUSED;
    d->exit_code = MG_EXIT_FAILURE;
    d->exiting = true;
    return false;
}

/* do_nothing: none, wait, maintain_replica (the loop reports the node every round anyway). */
static bool
do_nothing(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    (void)d;
    (void)dec;
    (void)error;
    return true;
}

/* do_claim_initialize takes `initialize` by create-only txn; losing the race is no error. */
static bool
do_claim_initialize(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    bool won = false;

    (void)dec;
    if (!mg_ha__put_initialize(d, 0, d->local_sysid, &won, error))
        return false;
    if (!won) {
        MG_LOG(MG_LOG_INFO, MODULE, "another node claimed initialize first");
        mg_error_clear(error);
    }
    return won;
}

/*
 * do_initdb runs initdb and fills the system identifier into `initialize`;
 * after MAX_INITDB_FAILURES in a row it gives up the bootstrap and the
 * daemon exits.
 */
static bool
do_initdb(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_event_ctx_t ctx = {NULL, NULL, "initdb", NULL};
    char msg[160];
    bool won = false;

    (void)dec;
    if (!mg_ha__pg_initdb(&d->pg, error) ||
        !mg_ha__pg_read_sysid(&d->pg, d->local_sysid, sizeof(d->local_sysid), error)) {
        if (++d->initdb_failures >= MAX_INITDB_FAILURES) {
            give_up_bootstrap(d, error);
            d->exit_code = MG_EXIT_FAILURE;
            d->exiting = true;
        }
        return false;
    }
    mg_ha__etcd_budget(d); /* initdb's time was not etcd's */
    if (!mg_ha__put_initialize(d, d->view.init_mod_revision, d->local_sysid, &won, error))
        return false;
    if (!won)
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                            "initialize changed while this node ran initdb");
    snprintf(msg, sizeof(msg), "initialized cluster with system identifier %s", d->local_sysid);
    mg_ha__event(d, MG_LOG_NOTICE, "ha.initialized", &ctx, msg);
    return true;
}

/*
 * do_release_leader gives up the leader key after Postgres did not run as a
 * writable primary within start_timeout: Postgres is stopped (it takes no
 * writes anyway), the key is deleted only while it still names this node,
 * and for start_timeout the node does not retake a free key, so a replica
 * can. The event names the node and the last start error.
 */
static bool
do_release_leader(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_event_ctx_t ctx = {mg_ha_state_name(d->state), "demoted", "release_leader", NULL};
    char msg[MG_ERROR_MESSAGE_SIZE + 400];

    mg_ha__stop_writes(d);
    mg_ha__keeper_key(d, false, 0); /* no writes from here on, whatever etcd says */
    if (!mg_ha__pg_stop_now(&d->pg, true, error))
        return false;
    mg_ha__etcd_budget(d);
    if (strcmp(d->view.leader, d->conf->name) == 0 && !mg_ha__delete_leader(d, error))
        return false;
    d->view.leader[0] = '\0';
    d->start_hold_until_ms = mg_ha__now_ms() + d->conf->start_timeout_ms;
    d->primary_down_since_ms = 0;
    mg_ha__collect_local(d);
    snprintf(msg, sizeof(msg), "node %s released the leader key: %s; last start error: %s",
             d->conf->name, dec->reason,
             d->last_start_error[0] ? d->last_start_error : "none (Postgres not writable)");
    mg_ha__event(d, MG_LOG_WARNING, "ha.start_timeout", &ctx, msg);
    mg_ha__wake_all(d);
    return true;
}

/*
 * do_drop_leader deletes a leader key that names this standby although this
 * run did not take it (a restart, or etcd restored from a backup): a
 * promotion on it would skip the election's lag, sync and failsafe checks.
 */
static bool
do_drop_leader(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_event_ctx_t ctx = {mg_ha_state_name(d->state), mg_ha_state_name(dec->next_state),
                             "drop_leader", NULL};

    if (!mg_ha__delete_leader(d, error))
        return false;
    d->view.leader[0] = '\0';
    mg_ha__event(d, MG_LOG_WARNING, "ha.leader_dropped", &ctx, dec->reason);
    mg_ha__wake_all(d);
    return true;
}

/* ------------------------------------------------------------------------
 * The action table: the function behind each row of the FSM's action table
 * (ha_fsm.c, mg_ha_actions), in the same order
 * ------------------------------------------------------------------------ */

typedef bool (*action_fn_t)(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error);

static const struct {
    mg_ha_action_t action;
    action_fn_t fn;
} action_table[] = {
    {MG_HA_ACTION_NONE, do_nothing},
    {MG_HA_ACTION_WAIT, do_nothing},
    {MG_HA_ACTION_CLAIM_INITIALIZE, do_claim_initialize},
    {MG_HA_ACTION_INITDB, do_initdb},
    {MG_HA_ACTION_START_PRIMARY, do_start_primary},
    {MG_HA_ACTION_CLONE, do_clone},
    {MG_HA_ACTION_START_REPLICA, do_start_replica},
    {MG_HA_ACTION_MAINTAIN_PRIMARY, do_maintain_primary},
    {MG_HA_ACTION_MAINTAIN_REPLICA, do_nothing},
    {MG_HA_ACTION_REFUSE, do_refuse},
    {MG_HA_ACTION_PROMOTE, do_promote},
    {MG_HA_ACTION_FOLLOW, do_follow},
    {MG_HA_ACTION_DEMOTE, do_demote},
    {MG_HA_ACTION_REJOIN, do_rejoin},
    {MG_HA_ACTION_RECLONE, do_reclone},
    {MG_HA_ACTION_SWITCHOVER_BEGIN, do_switchover_begin},
    {MG_HA_ACTION_HANDOFF, do_handoff},
    {MG_HA_ACTION_ABORT_SWITCHOVER, do_abort_switchover},
    {MG_HA_ACTION_FINISH_FAILOVER, do_finish_failover},
    {MG_HA_ACTION_RELEASE_LEADER, do_release_leader},
    {MG_HA_ACTION_DROP_LEADER, do_drop_leader},
};

_Static_assert(sizeof(action_table) / sizeof(action_table[0]) == MG_HA_ACTION_COUNT_,
               "every action has a function");

mg_ha_act_result_t
mg_ha__act(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, int *exit_code, mg_error_t *error)
{
    bool done;

    mg_error_clear(error);
    if ((unsigned)dec->action >= MG_HA_ACTION_COUNT_ ||
        action_table[dec->action].action != dec->action) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                     "invariant violated: action %d has no function in the action table",
                     (int)dec->action);
        mg_log_error(MG_LOG_FATAL, MODULE, error);
        *exit_code = MG_EXIT_INTERNAL;
        return MG_HA_ACT_EXIT;
    }
    done = action_table[dec->action].fn(d, dec, error);
    if (d->exiting) {
        *exit_code = d->exit_code;
        return MG_HA_ACT_EXIT;
    }
    return done ? MG_HA_ACT_DONE : MG_HA_ACT_FAILED;
}
