/*
 * ha/src/ha_loop.c - `pgdaemon run`: the reconcile loop of one node.
 *
 * Every loop: renew the node's lease, read initialize + leader + status +
 * nodes/ in one txn, look at the local Postgres, ask mg_ha_decide for the
 * action, do it (ha_actions.c), and publish nodes/<name> under the lease. A
 * state change is one JSON log line ("event":"ha.transition") and one
 * record under events/ (bounded). UDP datagrams only wake the loop early.
 */
#include "ha_daemon.h"
#include "ha_options.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void
mg_ha__collect_local(mg_ha_daemon_t *d)
{
    mg_error_t error;
    bool have = mg_ha__pg_have_data(&d->pg);

    d->view.have_data = have;
    if (have && d->local_sysid[0] == '\0' &&
        !mg_ha__pg_read_sysid(&d->pg, d->local_sysid, sizeof(d->local_sysid), &error))
        mg_log_error(MG_LOG_WARNING, MODULE, &error);
    if (!have)
        d->local_sysid[0] = '\0';
    snprintf(d->view.local_sysid, sizeof(d->view.local_sysid), "%s", d->local_sysid);
    mg_ha__pg_collect(&d->pg, &d->self, &d->in_recovery);
    if (d->self.system_identifier[0] == '\0')
        snprintf(d->self.system_identifier, sizeof(d->self.system_identifier), "%s",
                 d->local_sysid);
    d->view.pg_running = d->self.pg_running;
    d->view.pg_queries_ok = d->self.pg_queries_ok;
    d->view.pg_in_recovery = d->in_recovery;
    d->view.data_is_primary = have && !mg_ha__pg_is_standby_dir(&d->pg);
    d->self.priority = d->conf->nofailover ? 0 : d->conf->priority;
    d->self.ttl_ms = d->conf->ttl_ms;
    d->self.nofailover = d->conf->nofailover;
    snprintf(d->self.upstream, sizeof(d->self.upstream), "%s", d->upstream);
}

static void
share(mg_ha_daemon_t *d)
{
    pthread_mutex_lock(&d->shared.lock);
    d->shared.self = d->self;
    d->shared.in_recovery = d->in_recovery;
    d->shared.holds_leader = strcmp(d->view.leader, d->conf->name) == 0 &&
                             d->view.leader_lease == d->lease && d->lease != 0;
    d->shared.lease_ok_ms = d->lease_ok_ms;
    d->shared.writable_until_ms = mg_ha__writable_until(d);
    if (d->state != MG_HA_STATE_PRIMARY)
        d->shared.demoting = false;
    else if (d->view.status.failover == MG_HA_FAILOVER_STABLE ||
             d->view.status.failover == MG_HA_FAILOVER_RECONFIGURING_REPLICAS)
        d->shared.demoting = false;
    d->shared.loop_ok_ms = mg_ha__now_ms();
    snprintf(d->shared.leader, sizeof(d->shared.leader), "%s", d->view.leader);
    d->shared.status = d->view.status;
    d->shared.view = d->view;
    d->shared.loops = d->loops;
    pthread_mutex_unlock(&d->shared.lock);
}

/*
 * track_primary_start fills the view's start_timeout inputs: since when this
 * node, primary or starting as one, has had no Postgres taking writes (0 =
 * it has, or the node is not meant to be primary), and the hold after a
 * release.
 */
static void
track_primary_start(mg_ha_daemon_t *d)
{
    bool meant = d->state == MG_HA_STATE_PRIMARY || d->last_action == MG_HA_ACTION_START_PRIMARY;
    bool up = d->view.pg_running && d->view.pg_queries_ok && !d->view.pg_in_recovery;

    if (!meant || up)
        d->primary_down_since_ms = 0;
    else if (d->primary_down_since_ms == 0)
        d->primary_down_since_ms = d->view.now_ms;
    if (up)
        d->last_start_error[0] = '\0';
    d->view.primary_down_since_ms = d->primary_down_since_ms;
    d->view.start_hold_until_ms = d->start_hold_until_ms;
}

void
mg_ha__self_limits(const mg_ha_daemon_t *d, mg_ha_self_t *me)
{
    memset(me, 0, sizeof(*me));
    me->name = d->conf->name;
    me->max_nodes = d->conf->max_nodes;
    me->join_timeout_ms = d->conf->join_timeout_ms;
    me->max_lag_bytes = d->conf->failover_max_lag;
    me->synchronous_mode = d->conf->synchronous_mode;
    me->fresh_ms = 2 * d->conf->loop_ms + d->conf->retry_ms;
    me->switchover_timeout_ms = d->conf->switchover_timeout_ms;
    me->rewind_attempts = d->conf->rewind_attempts;
    me->start_timeout_ms = d->conf->start_timeout_ms;
    me->can_failover = !d->conf->nofailover && d->conf->priority > 0;
}

/*
 * etcd_lost is the round of a node that could not renew or read: a primary
 * keeps writing only while every peer vouches over UDP (failsafe), and
 * fences once neither the lease nor that grant covers it.
 */
static void
etcd_lost(mg_ha_daemon_t *d)
{
    if (d->state == MG_HA_STATE_PRIMARY) {
        d->woken = mg_ha__peers_drain(d) || d->woken;
        d->failsafe_until_ms = mg_ha__failsafe_grant(d);
        mg_ha__send_heartbeats(d, true);
    } else {
        mg_ha__send_heartbeats(d, false);
    }
    mg_ha__fence_if_due(d);
    mg_ha__arm_watchdog(d);
    d->self.state = d->state;
    share(d);
}

/* local_inputs fills the view's local facts and clocks after a successful read. */
static void
local_inputs(mg_ha_daemon_t *d)
{
    /* a failsafe grant runs out by itself: it bridges the retake of the leader key */
    for (size_t i = 0; i < d->npeers; i++)
        d->peers[i].acked_sent_ms = 0;
    /* our own record is what we report now, not what etcd held */
    d->view.state = d->state;
    d->view.now_ms = mg_ha__now_ms();
    d->view.wall_ms = mg_ha__wall_ms();
    d->view.join_started_ms = d->join_started_ms;
    snprintf(d->view.upstream, sizeof(d->view.upstream), "%s", d->upstream);
    d->view.failsafe_primary_heard =
        mg_ha__promise_holds(d->failsafe_heard_ms, d->promise_ms, d->view.now_ms);
    if (d->state == MG_HA_STATE_REPLICA && d->self.pg_queries_ok && !d->self.streaming &&
        strcmp(d->view.leader, d->conf->name) != 0 && d->view.leader[0] != '\0') {
        if (d->not_streaming_since_ms == 0)
            d->not_streaming_since_ms = d->view.now_ms;
        d->stalled = d->view.now_ms - d->not_streaming_since_ms > STALL_MS(d->conf);
    } else {
        if (d->self.streaming)
            d->rewind_failures = 0;
        d->not_streaming_since_ms = 0;
        d->stalled = false;
    }
    d->view.leader_stale =
        strcmp(d->view.leader, d->conf->name) == 0 && d->view.leader_lease != d->lease;
    d->view.replica_stalled = d->stalled;
    d->view.rewind_failures = d->rewind_failures;
    track_primary_start(d);
}

/*
 * after_action records the outcome of the decision: a failed action is an
 * ha.action_failed event; a state change is one ha.transition event and a
 * wake-up of the other nodes.
 */
static void
after_action(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, bool acted, const mg_error_t *error)
{
    mg_ha_event_ctx_t ctx = {mg_ha_state_name(d->state), mg_ha_state_name(dec->next_state),
                             mg_ha_action_name(dec->action), dec->peer};

    d->last_action = dec->action;
    if (!acted && mg_error_is_set(error) &&
        (dec->action == MG_HA_ACTION_START_PRIMARY || dec->action == MG_HA_ACTION_ABORT_SWITCHOVER))
        snprintf(d->last_start_error, sizeof(d->last_start_error), "%s", error->message);
    if (!acted && mg_error_is_set(error)) {
        char msg[MG_ERROR_MESSAGE_SIZE + 64];

        snprintf(msg, sizeof(msg), "action %s failed: %s", mg_ha_action_name(dec->action),
                 error->message);
        mg_ha__event(d, MG_LOG_ERROR, "ha.action_failed", &ctx, msg);
    }
    if (acted && dec->next_state != d->state) {
        d->state = dec->next_state;
        pthread_mutex_lock(&d->shared.lock);
        d->shared.transitions++;
        pthread_mutex_unlock(&d->shared.lock);
        mg_ha__event(d, MG_LOG_NOTICE, "ha.transition", &ctx, dec->reason);
        if (d->state == MG_HA_STATE_PRIMARY || d->state == MG_HA_STATE_REPLICA)
            mg_ha__collect_local(d);
        mg_ha__wake_all(d); /* a status change: let the others look now */
        d->woken = true;
    } else if (acted && dec->action == MG_HA_ACTION_START_PRIMARY) {
        /* restarted in place: /primary may answer 200 now, not a loop later */
        mg_ha__collect_local(d);
    }
}

/*
 * etcd_went_back records an etcd that went back in time (issue 16, finding
 * 9): every endpoint answered from an older raft term (the client took it,
 * once), or the revision of the view went down. etcd was restored from a
 * backup: its keys are what they were then. The decisions hold regardless
 * (a restored leader key naming a standby is dropped, a wiped status does
 * not end the wait for a live old primary), and the event says why the
 * cluster may now look older than it is.
 */
static void
etcd_went_back(mg_ha_daemon_t *d)
{
    int64_t from = 0, to = 0;
    bool term = mg_etcd_replaced(d->etcd, &from, &to);
    bool revision = d->max_revision > 0 && d->view.revision < d->max_revision;
    char msg[320];

    if (term || revision) {
        mg_ha_event_ctx_t ctx = {NULL, NULL, NULL, NULL};

        snprintf(msg, sizeof(msg),
                 "etcd went back in time (raft term %" PRId64 " -> %" PRId64 ", revision %" PRId64
                 " -> %" PRId64 "): restored from a backup or replaced; decisions follow what "
                 "it holds now",
                 from, to, d->max_revision, d->view.revision);
        mg_ha__event(d, MG_LOG_WARNING, "ha.etcd_replaced", &ctx, msg);
        d->max_revision = 0;
    }
    if (d->view.revision > d->max_revision)
        d->max_revision = d->view.revision;
}

/*
 * report_bad_keys records one ha.bad_key event per bad value (a key at one
 * mod_revision) the view skipped or repaired: one bad key costs only that
 * key, and the event names it.
 */
static void
report_bad_keys(mg_ha_daemon_t *d)
{
    for (size_t i = 0; i < d->view.nbad; i++) {
        bool seen = false;
        char msg[400];
        mg_ha_event_ctx_t ctx = {NULL, NULL, NULL, NULL};

        for (size_t j = 0; j < MG_HA_MAX_BAD_KEYS && !seen; j++)
            seen = d->bad_seen[j].mod_revision == d->view.bad[i].mod_revision &&
                   strcmp(d->bad_seen[j].key, d->view.bad[i].key) == 0;
        if (seen)
            continue;
        snprintf(d->bad_seen[d->nbad_seen % MG_HA_MAX_BAD_KEYS].key, sizeof(d->bad_seen[0].key),
                 "%s", d->view.bad[i].key);
        d->bad_seen[d->nbad_seen++ % MG_HA_MAX_BAD_KEYS].mod_revision = d->view.bad[i].mod_revision;
        snprintf(msg, sizeof(msg), "key \"%s\" (mod_revision %" PRId64 ") skipped: %s",
                 d->view.bad[i].key, d->view.bad[i].mod_revision, d->view.bad[i].why);
        mg_ha__event(d, MG_LOG_WARNING, "ha.bad_key", &ctx, msg);
    }
}

/* one_loop runs one reconcile round; returns false when the daemon must exit. */
static bool
one_loop(mg_ha_daemon_t *d, int *exit_code)
{
    mg_error_t error;
    mg_ha_decision_t dec;
    mg_ha_self_t me;
    mg_ha_act_result_t act;
    bool acted = true, lease_ok;

    mg_ha__self_limits(d, &me);
    d->loops++;
    if (!d->etcd_ok && d->state == MG_HA_STATE_PRIMARY) {
        /* still without etcd: count the acks heard so far, ask again before trying etcd */
        d->woken = mg_ha__peers_drain(d) || d->woken;
        d->failsafe_until_ms = mg_ha__failsafe_grant(d);
        mg_ha__send_heartbeats(d, true);
    }
    mg_ha__fence_if_due(d); /* first: after a pause the deadline may be long gone */
    mg_ha__etcd_budget(d);
    lease_ok = mg_ha__renew_lease(d);
    mg_ha__collect_local(d);
    mg_ha__etcd_budget(d); /* the time Postgres took to answer was not etcd's */
    if (!lease_ok || !mg_ha__read_view(d, &error)) {
        if (lease_ok)
            mg_ha__etcd_error(d, "read the cluster state", &error);
        etcd_lost(d);
        return true; /* keep serving Postgres while the lease or the failsafe allows */
    }
    d->etcd_ok = true;
    etcd_went_back(d);
    report_bad_keys(d);
    mg_ha__peers_learn(d);
    local_inputs(d);
    mg_ha__arm_watchdog(d);
    if (!mg_ha_decide(&me, &d->view, &dec, &error)) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        *exit_code = MG_EXIT_INTERNAL;
        return false;
    }
    mg_ha__etcd_budget(d);
    mg_ha__keeper_begin(d); /* the action may take long: the lease is renewed meanwhile */
    act = mg_ha__act(d, &dec, exit_code, &error);
    mg_ha__keeper_end(d);
    switch (act) {
    case MG_HA_ACT_EXIT:
        return false;
    case MG_HA_ACT_FAILED:
        acted = false;
        break;
    case MG_HA_ACT_DONE:
        break;
    }
    mg_ha__etcd_budget(d); /* the action may have spent long on Postgres */
    after_action(d, &dec, acted, &error);
    mg_ha__arm_watchdog(d);
    mg_ha__send_heartbeats(d, false);
    if (d->state == MG_HA_STATE_WAIT_PRIMARY) {
        const mg_ha_node_t *p = mg_ha_view_find_node(&d->view, d->view.leader);

        if (p != NULL)
            mg_ha__wake_node(d, p); /* ask the primary to look at us now */
    }
    /* a refused or finished state changes what we report */
    d->self.state = d->state;
    d->self.updated_ms = mg_ha__wall_ms();
    mg_ha__publish_self(d);
    if (d->state == MG_HA_STATE_PRIMARY && acted)
        (void)mg_ha__read_view(d, &error); /* leader key may have just been taken */
    share(d);
    return true;
}

/*
 * optime_watch publishes optime between loops (issue 16, finding 18): a
 * primary in asynchronous mode looks at its WAL position every PG_WATCH_MS
 * and publishes it once it moved by a quarter of failover_max_lag since the
 * last publication, so what a failover measures candidates against trails
 * the primary by less than that (plus one PG_WATCH_MS of WAL) instead of by
 * a whole loop of WAL.
 */
static void
optime_watch(mg_ha_daemon_t *d)
{
    int64_t now = mg_ha__now_ms();
    uint64_t lsn = 0, step = (uint64_t)(d->conf->failover_max_lag / 4);
    char text[MG_HA_LSN_SIZE];
    mg_error_t error;

    if (d->conf->synchronous_mode || now - d->optime_checked_ms < PG_WATCH_MS ||
        strcmp(d->view.leader, d->conf->name) != 0 || d->view.leader_lease != d->lease ||
        now >= mg_ha__writable_until(d))
        return;
    d->optime_checked_ms = now;
    if (!mg_ha__pg_current_lsn(&d->pg, &lsn, &error) || lsn < d->optime_published + step ||
        lsn <= d->optime_published)
        return;
    snprintf(text, sizeof(text), "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
    mg_ha__etcd_budget(d);
    if (!mg_ha__put_optime(d, text, &error))
        mg_ha__etcd_error(d, "publish optime", &error);
}

/*
 * sleep_until_wakeup waits up to ms for a datagram or a signal. A primary
 * whose Postgres ran at the last look also wakes when the postmaster is
 * gone (checked every PG_WATCH_MS): a crash is restarted at once, not at
 * the next loop.
 */
static void
sleep_until_wakeup(mg_ha_daemon_t *d, int64_t ms)
{
    struct pollfd p = {d->udp_fd, POLLIN, 0};
    bool watch = d->state == MG_HA_STATE_PRIMARY && d->self.pg_running;

    if (ms <= 0) {
        /* no time to sleep: still take the datagrams (failsafe acks) that arrived */
        d->woken = mg_ha__peers_drain(d) || d->woken;
        return;
    }
    int64_t deadline = mg_ha__now_ms() + ms;

    if (d->woken) {
        d->woken = false;
        return;
    }
    while (atomic_load(d->stop) == 0) {
        int64_t left = deadline - mg_ha__now_ms();
        bool wake = false;

        if (left <= 0)
            return;
        if (watch && left > PG_WATCH_MS)
            left = PG_WATCH_MS;
        if (poll(&p, d->udp_fd >= 0 ? 1 : 0, (int)left) > 0)
            wake = mg_ha__peers_drain(d);
        if (wake)
            return;
        if (watch && mg_ha__pg_running(&d->pg) == 0)
            return; /* the postmaster died: restart it now */
        if (watch)
            optime_watch(d);
    }
}

/*
 * fast_loop says whether the next loop should come after FAST_LOOP_MS rather
 * than loop_wait: a switchover or failover is under way, the leader key is
 * free, or the leader's UDP heartbeats stopped (it may be gone; its lease
 * will lapse). Only the etcd reads get more frequent; decisions stay etcd's.
 */
static bool
fast_loop(mg_ha_daemon_t *d)
{
    mg_ha_failover_t f = d->view.status.failover;

    if (!d->etcd_ok)
        return false;
    if (d->state == MG_HA_STATE_DEMOTED || f != MG_HA_FAILOVER_STABLE)
        return true;
    if (d->state == MG_HA_STATE_REPLICA) {
        if (d->view.leader[0] == '\0')
            return true;
        return mg_ha__peer_silent(d, d->view.leader, 2 * d->conf->loop_ms + FAST_LOOP_MS);
    }
    return false;
}

/*
 * shutdown_daemon stops the daemon: Postgres first (on_stop fast, and
 * always when it may take writes: on_stop leave applies to a standby only,
 * since a primary left running would keep taking writes once its leader
 * key is gone and another node is promoted), then the watchdog, then the
 * lease (the node key, and on the primary the leader key, go with it). A
 * writable Postgres that does not stop keeps both: the lease runs out and
 * the watchdog, which outlives us, enforces the last deadline. A daemon
 * stopped before its first loop, which adopted the fence of a killed
 * daemon's primary, stops that primary too (mg_ha__stop_stops_pg): it used
 * to end the adopted watchdog and leave the primary writable and unfenced.
 */
static void
shutdown_daemon(mg_ha_daemon_t *d)
{
    mg_error_t error;
    bool running = mg_ha__pg_running(&d->pg) > 0;
    bool standby_dir = mg_ha__pg_is_standby_dir(&d->pg);
    bool standby = d->state != MG_HA_STATE_PRIMARY && standby_dir;

    if (mg_ha__stop_stops_pg(d->conf->on_stop, d->state, d->pg.child > 0, d->wd_deadline_ms > 0,
                             running, standby_dir)) {
        if (d->conf->on_stop == MG_HA_ON_STOP_LEAVE)
            MG_LOG(MG_LOG_NOTICE, MODULE,
                   "stopping Postgres although on_stop is leave: it is not a standby and would "
                   "keep taking writes after the leader key is released");
        else
            MG_LOG(MG_LOG_NOTICE, MODULE, "stopping Postgres (fast shutdown)");
        if (!mg_ha__pg_stop(&d->pg, &error)) {
            mg_log_error(MG_LOG_ERROR, MODULE, &error);
            if (!standby) {
                MG_LOG(MG_LOG_ERROR, MODULE,
                       "Postgres did not stop: the lease is left to run out and the watchdog "
                       "keeps its deadline");
                return;
            }
        }
    }
    mg_ha__watchdog_stop(&d->watchdog);
    if (d->lease != 0 && d->etcd != NULL) {
        mg_etcd_deadline_clear(d->etcd);
        /* the node key and, on the primary, the leader key go with the lease */
        if (!mg_etcd_lease_revoke(d->etcd, d->lease, &error))
            mg_log_error(MG_LOG_WARNING, MODULE, &error);
        d->lease = 0;
    }
}

/* daemon_keys fills the etcd key names of the cluster and of this node. */
static void
daemon_keys(mg_ha_daemon_t *d, const mg_ha_config_t *conf)
{
    snprintf(d->prefix, sizeof(d->prefix), "%s/%s/", conf->etcd_prefix, conf->cluster);
    snprintf(d->key_init, sizeof(d->key_init), "%sinitialize", d->prefix);
    snprintf(d->key_leader, sizeof(d->key_leader), "%sleader", d->prefix);
    snprintf(d->key_status, sizeof(d->key_status), "%sstatus", d->prefix);
    snprintf(d->key_node, sizeof(d->key_node), "%snodes/%s", d->prefix, conf->name);
    snprintf(d->key_events, sizeof(d->key_events), "%sevents/", d->prefix);
    snprintf(d->key_optime, sizeof(d->key_optime), "%soptime", d->prefix);
}

/*
 * daemon_open checks Postgres' programs and etcd, then starts the watchdog,
 * the HTTP endpoints and the UDP socket. Returns the exit code of a failure
 * (logged), or MG_EXIT_OK.
 */
static int
daemon_open(mg_ha_daemon_t *d, const mg_ha_config_t *conf)
{
    mg_etcd_options_t eo;
    mg_error_t error;
    char version[64];

    d->conf = conf;
    d->shared.conf = conf;
    daemon_keys(d, conf);
    if (!mg_ha__pg_init(&d->pg, conf, &error)) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        return error.domain == MG_ERROR_DOMAIN_CONFIG ? MG_EXIT_USAGE : MG_EXIT_FAILURE;
    }
    memset(&eo, 0, sizeof(eo));
    eo.endpoints = (const char *const *)conf->etcd_endpoints.items;
    eo.nendpoints = conf->etcd_endpoints.count;
    eo.username = conf->etcd_username;
    eo.password = conf->etcd_password;
    eo.ca_file = conf->etcd_ca_file;
    eo.cert_file = conf->etcd_cert_file;
    eo.key_file = conf->etcd_key_file;
    eo.timeout_ms = conf->retry_ms;
    d->etcd = mg_etcd_new(&eo, &error);
    if (d->etcd == NULL) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        return MG_EXIT_USAGE;
    }
    if (!mg_etcd_version(d->etcd, version, sizeof(version), &error)) {
        mg_error_prefix(&error, "etcd is unreachable at start");
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        return MG_EXIT_FAILURE;
    }
    MG_LOG_EVENT(
        MG_LOG_INFO, MODULE, "ha.start",
        MG_LOG_FIELDS(MG_LOG_STR("node", conf->name), MG_LOG_STR("cluster", conf->cluster),
                      MG_LOG_STR("etcd_version", version), MG_LOG_INT("http_port", conf->http_port),
                      MG_LOG_INT("pg_port", conf->pg_port)),
        "pgdaemon starting node %s of cluster %s (etcd %s)", conf->name, conf->cluster, version);
    if (!mg_ha__watchdog_start(&d->watchdog, conf->data_dir, &error))
        goto fail;
    d->wd_deadline_ms = mg_ha__watchdog_adopt(&d->watchdog, conf->data_dir);
    if (d->wd_deadline_ms > 0) {
        d->write_deadline_ms = d->wd_deadline_ms - conf->retry_ms / 2;
        MG_LOG(MG_LOG_NOTICE, MODULE,
               "took over the fencing deadline of an earlier daemon's watchdog (%lldms from now)",
               (long long)(d->wd_deadline_ms - mg_ha__now_ms()));
    }
    if (conf->cluster_secret == NULL || conf->cluster_secret[0] == '\0')
        MG_LOG(MG_LOG_WARNING, MODULE,
               "no cluster_secret: UDP datagrams are ignored and the etcd-loss failsafe is off");
    d->http = mg_ha__http_start(&d->shared, conf->address, (uint16_t)conf->http_port, &error);
    if (d->http == NULL)
        goto fail;
    d->udp_fd = mg_ha__udp_open(conf, &error);
    if (d->udp_fd < 0)
        goto fail;
    if (!mg_ha__keeper_start(d, &eo, &error))
        goto fail;
    return MG_EXIT_OK;
fail:
    mg_log_error(MG_LOG_FATAL, MODULE, &error);
    return MG_EXIT_FAILURE;
}

/* daemon_run installs the signal handlers and runs the loop until a signal or an exit. */
static int
daemon_run(mg_ha_daemon_t *d)
{
    const mg_ha_config_t *conf = d->conf;
    int code = MG_EXIT_OK;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    d->state = MG_HA_STATE_INIT;
    d->started_wall_ms = mg_ha__wall_ms();
    d->join_started_ms = mg_ha__now_ms();
    /*
     * An earlier run may have promised a failsafe primary, within the last
     * ttl, not to take the leader key; the promise outlives the process
     * (issue 16, finding 2), so a restarted node keeps it for a ttl.
     */
    mg_ha__promise_at_start(conf->cluster_secret != NULL && conf->cluster_secret[0] != '\0',
                            d->join_started_ms, conf->ttl_ms, &d->failsafe_heard_ms,
                            &d->promise_ms);
    snprintf(d->self.name, sizeof(d->self.name), "%s", conf->name);
    snprintf(d->self.host, sizeof(d->self.host), "%s", conf->address);
    d->self.pg_port = conf->pg_port;
    d->self.http_port = conf->http_port;
    d->self.udp_port = conf->udp_port;
    d->self.started_ms = d->started_wall_ms;
    while (atomic_load(d->stop) == 0) {
        int64_t t0 = mg_ha__now_ms();

        if (!one_loop(d, &code))
            break;
        sleep_until_wakeup(
            d, (fast_loop(d) && conf->loop_ms > FAST_LOOP_MS ? FAST_LOOP_MS : conf->loop_ms) -
                   (mg_ha__now_ms() - t0));
    }
    if (atomic_load(d->stop) != 0)
        MG_LOG_EVENT(MG_LOG_NOTICE, MODULE, "ha.stop",
                     MG_LOG_FIELDS(MG_LOG_STR("node", conf->name)),
                     "pgdaemon stopping on a signal");
    return code;
}

/* run_main is `pgdaemon run`: one node, until SIGTERM/SIGINT or an exit. */
static int
run_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    mg_ha_config_t *conf = ctx->opts;
    mg_ha_daemon_t *dp;
    int code;

    if (!mg_ha__config_finish(conf, ctx->config, error) || !mg_ha_config_check(conf, error))
        return MG_EXIT_USAGE;
    dp = calloc(1, sizeof(*dp));
    if (dp == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return MG_EXIT_FAILURE;
    }
    dp->stop = &ctx->stop;
    dp->udp_fd = -1;
    dp->watchdog.fd = -1;
    pthread_mutex_init(&dp->shared.lock, NULL);
    code = daemon_open(dp, conf);
    if (code == MG_EXIT_OK)
        code = daemon_run(dp);
    mg_ha__keeper_stop(dp);
    if (dp->etcd != NULL)
        shutdown_daemon(dp);
    mg_http_server_destroy(dp->http);
    mg_ha__pg_close(&dp->pg);
    if (dp->udp_fd >= 0)
        close(dp->udp_fd);
    mg_etcd_destroy(dp->etcd);
    pthread_mutex_destroy(&dp->shared.lock);
    free(dp);
    return code; /* failures were logged where they happened */
}

static const mg_config_option_t run_options[] = {MG_HA_NODE_OPTIONS(0)};

const mg_cmd_t mg_ha_cmd_run = {
    .name = "run",
    .summary = "run one node: bootstrap or join, keep Postgres and etcd in step",
    .usage = "[--config FILE] [options]",
    .description = "Run the daemon of one node: bootstrap or join the cluster in etcd, keep its "
                   "Postgres in the right role, report its status, answer HAProxy's health "
                   "checks (docs/ha.md). Passwords and cluster_secret come from the config file, "
                   "the environment or a file, never from a flag.",
    .main = run_main,
    .options = run_options,
    .noptions = sizeof(run_options) / sizeof(run_options[0]),
    .opts_size = sizeof(mg_ha_config_t),
    .needs = MG_CMD_SIGNALS,
};
