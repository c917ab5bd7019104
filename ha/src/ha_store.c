/*
 * ha/src/ha_store.c - the daemon's etcd I/O: the node lease, the view (one
 * txn over initialize, leader, status, spec, optime and nodes/), the node
 * report, the leader, status and initialize transactions, and events (one
 * JSON record per key under events/, oldest trimmed).
 */
#include "ha_daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

/* ------------------------------------------------------------------------
 * Events: one JSON record per key under events/, oldest trimmed
 * ------------------------------------------------------------------------ */

static void
trim_events(mg_ha_daemon_t *d)
{
    mg_etcd_range_t r;
    mg_error_t error;
    int64_t excess;

    if (!mg_etcd_range(d->etcd, d->key_events, true, 0, true, &r, &error))
        return;
    excess = r.count - d->conf->max_events;
    mg_etcd_range_cleanup(&r);
    if (excess <= 0)
        return;
    if (!mg_etcd_range(d->etcd, d->key_events, true, excess, false, &r, &error))
        return;
    for (size_t i = 0; i < r.nkvs; i++)
        (void)mg_etcd_delete(d->etcd, r.kvs[i].key, false, NULL, &error);
    mg_etcd_range_cleanup(&r);
}

void
mg_ha__event(mg_ha_daemon_t *d, mg_log_level_t level, const char *event,
             const mg_ha_event_ctx_t *ctx, const char *message)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *text;
    size_t len;
    char key[512];
    int64_t now = mg_ha__wall_ms();
    mg_error_t error;
    const char *lsn = d->self.current_lsn[0] ? d->self.current_lsn : d->self.replay_lsn;

    MG_LOG_EVENT(level, MODULE, event,
                 MG_LOG_FIELDS(MG_LOG_STR("node", d->conf->name),
                               MG_LOG_STR("ha_state", mg_ha_state_name(d->state)),
                               MG_LOG_STR("from", ctx && ctx->from ? ctx->from : ""),
                               MG_LOG_STR("to", ctx && ctx->to ? ctx->to : ""),
                               MG_LOG_STR("action", ctx && ctx->action ? ctx->action : ""),
                               MG_LOG_STR("leader", d->view.leader), MG_LOG_INT("lease", d->lease),
                               MG_LOG_INT("revision", d->view.revision), MG_LOG_STR("lsn", lsn)),
                 "%s", message);
    yajl_gen_map_open(g);
#define GS(k, v)                                                   \
    do {                                                           \
        yajl_gen_string(g, (const unsigned char *)(k), strlen(k)); \
        yajl_gen_string(g, (const unsigned char *)(v), strlen(v)); \
    } while (0)
#define GI(k, v)                                                   \
    do {                                                           \
        yajl_gen_string(g, (const unsigned char *)(k), strlen(k)); \
        yajl_gen_integer(g, (long long)(v));                       \
    } while (0)
    GI("time_ms", now);
    GS("node", d->conf->name);
    GS("event", event);
    GS("level", mg_log_level_name(level));
    GS("message", message);
    if (ctx != NULL) {
        if (ctx->from)
            GS("from", ctx->from);
        if (ctx->to)
            GS("to", ctx->to);
        if (ctx->action)
            GS("action", ctx->action);
        if (ctx->peer)
            GS("peer", ctx->peer);
    }
    GS("leader", d->view.leader);
    GI("lease", d->lease);
    GI("revision", d->view.revision);
    GS("lsn", lsn);
    GS("receive_lsn", d->self.receive_lsn);
    GS("replay_lsn", d->self.replay_lsn);
    yajl_gen_map_close(g);
#undef GS
#undef GI
    yajl_gen_get_buf(g, &text, &len);
    snprintf(key, sizeof(key), "%s%013" PRId64 "-%s-%04" PRIu64, d->key_events, now, d->conf->name,
             d->event_seq++ % 10000);
    if (!mg_etcd_put(d->etcd, key, text, len, 0, NULL, &error)) {
        if (error.domain == MG_ERROR_DOMAIN_ETCD && error.code == MG_ETCD_ERR_NOSPACE)
            MG_LOG_EVENT(MG_LOG_ERROR, MODULE, "ha.etcd_nospace",
                         MG_LOG_FIELDS(MG_LOG_STR("node", d->conf->name)),
                         "etcd raised the NOSPACE alarm: %s", error.message);
        else
            MG_LOG(MG_LOG_WARNING, MODULE, "could not record event \"%s\" in etcd: %s", event,
                   error.message);
    } else {
        trim_events(d);
    }
    yajl_gen_free(g);
}

/* mg_ha__etcd_error logs an etcd failure; NOSPACE becomes its own event. */
void
mg_ha__etcd_error(mg_ha_daemon_t *d, const char *what, const mg_error_t *error)
{
    d->etcd_ok = false;
    pthread_mutex_lock(&d->shared.lock);
    d->shared.etcd_errors++;
    pthread_mutex_unlock(&d->shared.lock);
    if (error->domain == MG_ERROR_DOMAIN_ETCD && error->code == MG_ETCD_ERR_NOSPACE)
        MG_LOG_EVENT(MG_LOG_ERROR, MODULE, "ha.etcd_nospace",
                     MG_LOG_FIELDS(MG_LOG_STR("node", d->conf->name)),
                     "etcd raised the NOSPACE alarm (%s): %s", what, error->message);
    else
        MG_LOG_EVENT(MG_LOG_WARNING, MODULE, "ha.etcd_error",
                     MG_LOG_FIELDS(MG_LOG_STR("node", d->conf->name),
                                   MG_LOG_STR("domain", mg_error_domain_name(error->domain)),
                                   MG_LOG_INT("err_code", error->code)),
                     "could not %s: %s", what, error->message);
}

/* ------------------------------------------------------------------------
 * etcd I/O
 * ------------------------------------------------------------------------ */

void
mg_ha__etcd_budget(mg_ha_daemon_t *d)
{
    int64_t now = mg_ha__now_ms(), left = d->conf->retry_ms, until = mg_ha__writable_until(d);
    int64_t reserve =
        (d->conf->loop_ms < d->conf->retry_ms / 2 ? d->conf->loop_ms : d->conf->retry_ms / 2) +
        FAST_LOOP_MS;

    if (d->state == MG_HA_STATE_PRIMARY && until > 0 && until - now - reserve < left)
        left = until - now - reserve;
    mg_etcd_deadline_set(d->etcd, left > 0 ? left : 0);
}

bool
mg_ha__renew_lease(mg_ha_daemon_t *d)
{
    mg_error_t error;
    int64_t ttl_s = (d->conf->ttl_ms + 999) / 1000;
    int64_t sent = mg_ha__now_ms(); /* the lease runs from when we asked, not when told */

    if (d->lease != 0 && mg_etcd_lease_keepalive(d->etcd, d->lease, NULL, &error)) {
        d->lease_ok_ms = sent;
        /*
         * Only a keepalive of the lease that holds the leader key for us moves the
         * write deadline: a new lease granted after the old one expired does not
         * (found by the spin model: a primary back from an etcd outage would
         * otherwise count the new lease while another node already took the key).
         */
        if (strcmp(d->view.leader, d->conf->name) == 0 && d->view.leader_lease == d->lease)
            d->key_ok_ms = sent;
        return true;
    }
    if (d->lease != 0 &&
        !(error.domain == MG_ERROR_DOMAIN_ETCD && error.code == MG_ETCD_ERR_LEASE_NOT_FOUND)) {
        mg_ha__etcd_error(d, "renew the node lease", &error);
        return false;
    }
    if (d->lease != 0)
        MG_LOG_EVENT(MG_LOG_WARNING, MODULE, "ha.lease_lost",
                     MG_LOG_FIELDS(MG_LOG_INT("lease", d->lease)),
                     "node lease %" PRId64 " expired; granting a new one", d->lease);
    sent = mg_ha__now_ms();
    if (!mg_etcd_lease_grant(d->etcd, ttl_s, &d->lease, NULL, &error)) {
        d->lease = 0;
        mg_ha__etcd_error(d, "grant a node lease", &error);
        return false;
    }
    d->lease_ok_ms = sent;
    return true;
}

bool
mg_ha__read_view(mg_ha_daemon_t *d, mg_error_t *error)
{
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_etcd_kv_t *all = NULL;
    size_t n = 0, total = 0;
    bool ok = false;
    char key_nodes[400], key_switchover[400], key_override[400];

    snprintf(key_nodes, sizeof(key_nodes), "%snodes/", d->prefix);
    snprintf(key_switchover, sizeof(key_switchover), "%sswitchover", d->prefix);
    snprintf(key_override, sizeof(key_override), "%soverride", d->prefix);
    memset(&res, 0, sizeof(res));
    if (txn == NULL || !mg_etcd_txn_get(txn, true, d->key_init, false, error) ||
        !mg_etcd_txn_get(txn, true, d->key_leader, false, error) ||
        !mg_etcd_txn_get(txn, true, d->key_status, false, error) ||
        !mg_etcd_txn_get(txn, true, key_switchover, false, error) ||
        !mg_etcd_txn_get(txn, true, key_override, false, error) ||
        !mg_etcd_txn_get(txn, true, d->key_optime, false, error) ||
        !mg_etcd_txn_get(txn, true, key_nodes, true, error) ||
        !mg_etcd_txn_commit(d->etcd, txn, &res, error))
        goto done;
    for (size_t i = 0; i < res.nranges; i++)
        total += res.ranges[i].nkvs;
    all = calloc(total + 1, sizeof(*all));
    if (all == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < res.nranges; i++)
        for (size_t j = 0; j < res.ranges[i].nkvs; j++)
            all[n++] = res.ranges[i].kvs[j]; /* shallow: res owns the memory */
    ok = mg_ha_view_load(&d->view, d->prefix, all, n, error);
    d->view.revision = res.header.revision;
done:
    free(all);
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    return ok;
}

void
mg_ha__publish_self(mg_ha_daemon_t *d)
{
    mg_buf_t b;
    mg_error_t error;

    if (d->lease == 0)
        return;
    mg_buf_init(&b, 256 * 1024);
    if (mg_ha_node_to_json(&d->self, &b, &error) &&
        mg_etcd_put(d->etcd, d->key_node, b.data, b.len, d->lease, NULL, &error))
        d->etcd_ok = true;
    else
        mg_ha__etcd_error(d, "publish the node status", &error);
    mg_buf_cleanup(&b);
}

/* mg_ha__put_initialize writes initialize (create-only when expect_mod is 0). */
bool
mg_ha__put_initialize(mg_ha_daemon_t *d, int64_t expect_mod, const char *sysid, bool *won,
                      mg_error_t *error)
{
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    char value[256];
    bool ok;

    snprintf(value, sizeof(value), "{\"node\":\"%s\",\"system_identifier\":\"%s\"}", d->conf->name,
             sysid);
    memset(&res, 0, sizeof(res));
    ok = txn != NULL &&
         (expect_mod == 0 ? mg_etcd_txn_compare_int(txn, d->key_init, MG_ETCD_TARGET_CREATE,
                                                    MG_ETCD_CMP_EQUAL, 0, error)
                          : mg_etcd_txn_compare_int(txn, d->key_init, MG_ETCD_TARGET_MOD,
                                                    MG_ETCD_CMP_EQUAL, expect_mod, error)) &&
         mg_etcd_txn_put(txn, true, d->key_init, value, strlen(value), 0, error) &&
         mg_etcd_txn_commit(d->etcd, txn, &res, error);
    if (ok)
        *won = res.succeeded;
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    return ok;
}

/* mg_ha__take_leader puts leader = me under our lease if it is free or already ours. */
bool
mg_ha__take_leader(mg_ha_daemon_t *d, bool *got, mg_error_t *error)
{
    mg_etcd_txn_t *txn;
    mg_etcd_txn_result_t res;
    const char *me = d->conf->name;
    bool ok;

    *got = false;
    if (d->lease == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_LEASE_NOT_FOUND,
                            "no lease to hold the leader key with");
    for (int attempt = 0; attempt < 2; attempt++) {
        txn = mg_etcd_txn_new();
        memset(&res, 0, sizeof(res));
        if (attempt == 0)
            ok = mg_etcd_txn_compare_int(txn, d->key_leader, MG_ETCD_TARGET_CREATE,
                                         MG_ETCD_CMP_EQUAL, 0, error);
        else
            ok = mg_etcd_txn_compare_value(txn, d->key_leader, MG_ETCD_CMP_EQUAL, me, strlen(me),
                                           error);
        ok = ok && mg_etcd_txn_put(txn, true, d->key_leader, me, strlen(me), d->lease, error) &&
             mg_etcd_txn_commit(d->etcd, txn, &res, error);
        if (ok && res.succeeded) {
            *got = true;
            mg_ha__keeper_key(d, true, d->lease_ok_ms); /* the key lives as long as this lease */
            d->view.leader_lease = d->lease;
            snprintf(d->view.leader, sizeof(d->view.leader), "%s", me);
        }
        mg_etcd_txn_result_cleanup(&res);
        mg_etcd_txn_destroy(txn);
        if (!ok || *got)
            return ok;
    }
    return true;
}

/* mg_ha__ensure_status makes the status key name this node primary (CAS on mod_revision). */
bool
mg_ha__ensure_status(mg_ha_daemon_t *d, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    mg_ha_event_ctx_t ctx = {NULL, NULL, "set_status", d->conf->name};
    char msg[160];

    if (s.exists && strcmp(s.primary, d->conf->name) == 0)
        return true;
    if (s.exists)
        s.term++;
    else
        s.term = 1;
    snprintf(s.primary, sizeof(s.primary), "%s", d->conf->name);
    s.failover = MG_HA_FAILOVER_STABLE;
    if (!mg_ha__cas_status(d, &s, error))
        return false;
    snprintf(msg, sizeof(msg), "status: primary %s, term %" PRId64, s.primary, s.term);
    mg_ha__event(d, MG_LOG_NOTICE, "ha.status", &ctx, msg);
    return true;
}

/*
 * status_txn writes s as the status key if it still has the mod_revision of
 * the view (create-only when the view had none); with handoff, in the same
 * txn, it deletes `leader` if it still names this node. false with error
 * when either changed meanwhile (the next loop decides again).
 */
static bool
status_txn(mg_ha_daemon_t *d, const mg_ha_cluster_status_t *s, bool handoff, mg_error_t *error)
{
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_buf_t b;
    bool ok;

    mg_buf_init(&b, 64 * 1024);
    memset(&res, 0, sizeof(res));
    ok = txn != NULL && mg_ha_status_to_json(s, &b, error) &&
         (!handoff || (mg_etcd_txn_compare_value(txn, d->key_leader, MG_ETCD_CMP_EQUAL,
                                                 d->conf->name, strlen(d->conf->name), error) &&
                       mg_etcd_txn_delete(txn, true, d->key_leader, false, error))) &&
         mg_etcd_txn_compare_int(txn, d->key_status, MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL,
                                 d->view.status.exists ? d->view.status.mod_revision : 0, error) &&
         mg_etcd_txn_put(txn, true, d->key_status, b.data, b.len, 0, error) &&
         mg_etcd_txn_commit(d->etcd, txn, &res, error);
    if (ok && !res.succeeded)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                          "%s changed concurrently (status mod_revision %" PRId64 ")",
                          handoff ? "leader or status key" : "status key",
                          d->view.status.mod_revision);
    if (ok) {
        d->view.status = *s;
        d->view.status.exists = true;
        d->view.status.mod_revision = res.header.revision;
    }
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    mg_buf_cleanup(&b);
    return ok;
}

bool
mg_ha__cas_status(mg_ha_daemon_t *d, const mg_ha_cluster_status_t *s, mg_error_t *error)
{
    return status_txn(d, s, false, error);
}

void
mg_ha__status_event(mg_ha_daemon_t *d, const char *action, const char *peer, const char *fmt, ...)
{
    mg_ha_event_ctx_t ctx = {NULL, mg_ha_failover_name(d->view.status.failover), action, peer};
    char msg[1024];
    size_t n;
    va_list ap;

    va_start(ap, fmt);
    n = (size_t)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* the inputs: every node's LSNs as this node saw them */
    for (size_t i = 0; i < d->view.nnodes && n < sizeof(msg) - 1; i++) {
        const mg_ha_node_t *x = &d->view.nodes[i];

        n += (size_t)snprintf(
            msg + n, sizeof(msg) - n, "%s %s:%s/%s/%s/%s", i ? ";" : " | seen", x->name,
            mg_ha_state_name(x->state), x->current_lsn[0] ? x->current_lsn : "-",
            x->receive_lsn[0] ? x->receive_lsn : "-", x->replay_lsn[0] ? x->replay_lsn : "-");
    }
    if (n < sizeof(msg) - 1)
        snprintf(msg + n, sizeof(msg) - n, " | optime %s, leader revision %" PRId64,
                 d->view.optime[0] ? d->view.optime : "-", d->view.leader_mod_revision);
    mg_ha__event(d, MG_LOG_NOTICE, "ha.failover", &ctx, msg);
}

/* ------------------------------------------------------------------------
 * Transactions of the actions
 * ------------------------------------------------------------------------ */

void
mg_ha__release_initialize(mg_ha_daemon_t *d)
{
    char expected[256];
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_error_t error;

    snprintf(expected, sizeof(expected), "{\"node\":\"%s\",\"system_identifier\":\"\"}",
             d->conf->name);
    memset(&res, 0, sizeof(res));
    if (txn != NULL &&
        mg_etcd_txn_compare_value(txn, d->key_init, MG_ETCD_CMP_EQUAL, expected, strlen(expected),
                                  &error) &&
        mg_etcd_txn_delete(txn, true, d->key_init, false, &error))
        (void)mg_etcd_txn_commit(d->etcd, txn, &res, &error);
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
}

bool
mg_ha__delete_leader(mg_ha_daemon_t *d, mg_error_t *error)
{
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    bool ok;

    memset(&res, 0, sizeof(res));
    ok = txn != NULL &&
         mg_etcd_txn_compare_value(txn, d->key_leader, MG_ETCD_CMP_EQUAL, d->conf->name,
                                   strlen(d->conf->name), error) &&
         mg_etcd_txn_delete(txn, true, d->key_leader, false, error) &&
         mg_etcd_txn_commit(d->etcd, txn, &res, error);
    /* not succeeded: the key no longer names us, which is what we want */
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    return ok;
}

bool
mg_ha__handoff_leader(mg_ha_daemon_t *d, const mg_ha_cluster_status_t *s, mg_error_t *error)
{
    return status_txn(d, s, true, error);
}

bool
mg_ha__put_optime(mg_ha_daemon_t *d, const char *lsn, mg_error_t *error)
{
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    uint64_t value = 0;
    bool ok;

    memset(&res, 0, sizeof(res));
    /* only while the leader key names us: a deposed primary never moves it */
    ok = txn != NULL && mg_ha_lsn_parse(lsn, &value) &&
         mg_etcd_txn_compare_value(txn, d->key_leader, MG_ETCD_CMP_EQUAL, d->conf->name,
                                   strlen(d->conf->name), error) &&
         mg_etcd_txn_put(txn, true, d->key_optime, lsn, strlen(lsn), 0, error) &&
         mg_etcd_txn_commit(d->etcd, txn, &res, error);
    if (ok && res.succeeded) {
        d->optime_published = value;
        d->optime_published_ms = mg_ha__now_ms();
    }
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    return ok;
}
