/*
 * ha/src/ha_daemon.c - `pgdaemon run`: the reconcile loop of one node.
 *
 * Every loop: renew the node's lease, read initialize + leader + status +
 * nodes/ in one txn, look at the local Postgres, ask mg_ha_decide for the
 * action, do it, and publish nodes/<name> under the lease. A state change
 * is one JSON log line ("event":"ha.transition") and one record under
 * events/ (bounded). UDP datagrams only wake the loop early.
 */
#include "ha_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#define MODULE "ha"

/* initdb failures in a row before the node gives up bootstrapping */
#define MAX_INITDB_FAILURES 3

/* loop interval while a failover is under way or the leader went silent on UDP */
#define FAST_LOOP_MS 100
#define PG_WATCH_MS  100 /* a primary looks for its postmaster this often between loops */

/* a standby that has not streamed this long while a primary is up is re-joined */
#define STALL_MS(conf) ((conf)->ttl_ms * 3 > 20000 ? (conf)->ttl_ms * 3 : 20000)

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct {
    char slot[MG_HA_NAME_SIZE];
    int64_t since_ms; /* monotonic: first loop its node was missing */
} absent_slot_t;

/* what this node knows of a peer over UDP */
typedef struct {
    char name[MG_HA_NAME_SIZE];
    int64_t last_seq;      /* highest sequence seen from it (replays are dropped) */
    int64_t heard_ms;      /* monotonic: last valid datagram from it */
    int64_t acked_sent_ms; /* monotonic: send time of our newest failsafe heartbeat it acked */
} peer_t;

#define HB_RING 32

typedef struct {
    const mg_ha_config_t *conf;
    mg_etcd_t *etcd;
    mg_ha_watchdog_t watchdog;
    peer_t peers[MG_HA_MAX_NODES];
    size_t npeers;
    int64_t hb_seq;               /* our datagram sequence (strictly increasing) */
    int64_t hb_sent_seq[HB_RING]; /* failsafe heartbeats sent: seq -> send time */
    int64_t hb_sent_ms[HB_RING];
    int64_t failsafe_until_ms; /* peers' grant while etcd is lost (0 = none) */
    int64_t failsafe_heard_ms; /* monotonic: last failsafe heartbeat of a primary */
    char failsafe_from[MG_HA_NAME_SIZE];
    bool woken;
    int rewind_failures;            /* reset once the standby streams again */
    int64_t not_streaming_since_ms; /* replica: monotonic, 0 = streaming */
    bool stalled;                   /* not streaming for too long: rejoin, then re-clone */
    char upstream[MG_HA_NAME_SIZE]; /* replica: who our standby config follows */
    char sync_names[MG_HA_MAX_NODES * (MG_HA_NAME_SIZE + 4)];
    mg_ha_pg_t pg;
    mg_ha_shared_t shared;
    struct mg_http_server *http;
    int udp_fd;
    char prefix[256]; /* "<etcd_prefix>/<cluster>/" */
    char key_init[320], key_leader[320], key_status[320], key_node[320], key_events[320];
    char key_optime[320];
    int64_t lease;
    int64_t lease_ok_ms;
    int64_t key_ok_ms; /* send time of the last renewal of the lease holding `leader` for us */
    mg_ha_state_t state;
    int64_t started_wall_ms;
    int64_t join_started_ms;
    mg_ha_view_t view;
    mg_ha_node_t self;
    bool in_recovery;
    char local_sysid[MG_HA_SYSID_SIZE];
    uint64_t event_seq;
    absent_slot_t absent[MG_HA_MAX_SLOTS];
    size_t nabsent;
    uint64_t loops;
    int initdb_failures;
    bool etcd_ok;
    mg_ha_action_t last_action;    /* the previous loop's decision */
    int64_t primary_down_since_ms; /* monotonic: meant to be primary, Postgres not writable */
    int64_t start_hold_until_ms;   /* monotonic: released `leader` (start_timeout); no retake */
    char last_start_error[MG_ERROR_MESSAGE_SIZE]; /* why the last start as primary failed */
} daemon_t;

/* ------------------------------------------------------------------------
 * Events: one JSON record per key under events/, oldest trimmed
 * ------------------------------------------------------------------------ */

typedef struct {
    const char *from;
    const char *to;
    const char *action;
    const char *peer;
} event_ctx_t;

static void
trim_events(daemon_t *d)
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

/*
 * record_event writes an event to etcd (best effort: etcd may be the thing
 * that is down) and logs it. The log line is the one place it is logged.
 */
static void
record_event(daemon_t *d, mg_log_level_t level, const char *event, const event_ctx_t *ctx,
             const char *message)
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

/* note_etcd_error logs an etcd failure; NOSPACE becomes its own event. */
static void
note_etcd_error(daemon_t *d, const char *what, const mg_error_t *error)
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

static bool
renew_lease(daemon_t *d)
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
        note_etcd_error(d, "renew the node lease", &error);
        return false;
    }
    if (d->lease != 0)
        MG_LOG_EVENT(MG_LOG_WARNING, MODULE, "ha.lease_lost",
                     MG_LOG_FIELDS(MG_LOG_INT("lease", d->lease)),
                     "node lease %" PRId64 " expired; granting a new one", d->lease);
    sent = mg_ha__now_ms();
    if (!mg_etcd_lease_grant(d->etcd, ttl_s, &d->lease, NULL, &error)) {
        d->lease = 0;
        note_etcd_error(d, "grant a node lease", &error);
        return false;
    }
    d->lease_ok_ms = sent;
    return true;
}

static bool
read_view(daemon_t *d, mg_error_t *error)
{
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_etcd_kv_t *all = NULL;
    size_t n = 0, total = 0;
    bool ok = false;
    char key_nodes[400], key_spec[400];

    snprintf(key_nodes, sizeof(key_nodes), "%snodes/", d->prefix);
    snprintf(key_spec, sizeof(key_spec), "%sspec", d->prefix);
    memset(&res, 0, sizeof(res));
    if (txn == NULL || !mg_etcd_txn_get(txn, true, d->key_init, false, error) ||
        !mg_etcd_txn_get(txn, true, d->key_leader, false, error) ||
        !mg_etcd_txn_get(txn, true, d->key_status, false, error) ||
        !mg_etcd_txn_get(txn, true, key_spec, false, error) ||
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

static void
publish_self(daemon_t *d)
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
        note_etcd_error(d, "publish the node status", &error);
    mg_buf_cleanup(&b);
}

/* put_initialize writes initialize (create-only when expect_mod is 0). */
static bool
put_initialize(daemon_t *d, int64_t expect_mod, const char *sysid, bool *won, mg_error_t *error)
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

/* take_leader puts leader = me under our lease if it is free or already ours. */
static bool
take_leader(daemon_t *d, bool *got, mg_error_t *error)
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
            d->key_ok_ms = d->lease_ok_ms; /* the key lives as long as this lease */
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

/* ensure_status makes the status key name this node primary (CAS on mod_revision). */
static bool
ensure_status(daemon_t *d, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    mg_etcd_txn_t *txn;
    mg_etcd_txn_result_t res;
    mg_buf_t b;
    bool ok;

    if (s.exists && strcmp(s.primary, d->conf->name) == 0)
        return true;
    if (s.exists)
        s.term++;
    else
        s.term = 1;
    snprintf(s.primary, sizeof(s.primary), "%s", d->conf->name);
    s.failover = MG_HA_FAILOVER_STABLE;
    mg_buf_init(&b, 64 * 1024);
    txn = mg_etcd_txn_new();
    memset(&res, 0, sizeof(res));
    ok = mg_ha_status_to_json(&s, &b, error) &&
         mg_etcd_txn_compare_int(txn, d->key_status, MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL,
                                 d->view.status.exists ? d->view.status.mod_revision : 0, error) &&
         mg_etcd_txn_put(txn, true, d->key_status, b.data, b.len, 0, error) &&
         mg_etcd_txn_commit(d->etcd, txn, &res, error);
    if (ok && !res.succeeded)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                          "status key changed concurrently (mod_revision %" PRId64 ")",
                          d->view.status.mod_revision);
    if (ok) {
        event_ctx_t ctx = {NULL, NULL, "set_status", d->conf->name};
        char msg[160];

        snprintf(msg, sizeof(msg), "status: primary %s, term %" PRId64, s.primary, s.term);
        record_event(d, MG_LOG_NOTICE, "ha.status", &ctx, msg);
    }
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    mg_buf_cleanup(&b);
    return ok;
}

/*
 * cas_status writes s as the status key if it still has the mod_revision of
 * the view (create-only when the view had none). false with error when it
 * changed meanwhile (the next loop decides again).
 */
static bool
cas_status(daemon_t *d, const mg_ha_cluster_status_t *s, mg_error_t *error)
{
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_buf_t b;
    bool ok;

    mg_buf_init(&b, 64 * 1024);
    memset(&res, 0, sizeof(res));
    ok = txn != NULL && mg_ha_status_to_json(s, &b, error) &&
         mg_etcd_txn_compare_int(txn, d->key_status, MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL,
                                 d->view.status.exists ? d->view.status.mod_revision : 0, error) &&
         mg_etcd_txn_put(txn, true, d->key_status, b.data, b.len, 0, error) &&
         mg_etcd_txn_commit(d->etcd, txn, &res, error);
    if (ok && !res.succeeded)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                          "status key changed concurrently (mod_revision %" PRId64 ")",
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

/* status_event records a failover-state change with its inputs. */
static void status_event(daemon_t *d, const char *action, const char *peer, const char *fmt, ...)
    MG_PRINTF(4, 5);

static void
status_event(daemon_t *d, const char *action, const char *peer, const char *fmt, ...)
{
    event_ctx_t ctx = {NULL, mg_ha_failover_name(d->view.status.failover), action, peer};
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
    record_event(d, MG_LOG_NOTICE, "ha.failover", &ctx, msg);
}

/* ------------------------------------------------------------------------
 * UDP plane: WAKEUP, HEARTBEAT, ACK (HMAC-signed; etcd stays the authority)
 * ------------------------------------------------------------------------ */

static int64_t
next_seq(daemon_t *d)
{
    int64_t now = mg_ha__wall_ms() * 1000; /* survives restarts: receivers drop older ones */

    d->hb_seq = now > d->hb_seq ? now : d->hb_seq + 1;
    return d->hb_seq;
}

static void
send_msg(daemon_t *d, const mg_ha_node_t *n, char type, int64_t seq, bool failsafe)
{
    struct sockaddr_in sa;
    mg_ha_msg_t m;
    char buf[512];
    size_t len;

    if (d->udp_fd < 0 || n->udp_port <= 0 || strcmp(n->name, d->conf->name) == 0)
        return;
    memset(&m, 0, sizeof(m));
    m.type = type;
    snprintf(m.cluster, sizeof(m.cluster), "%s", d->conf->cluster);
    snprintf(m.from, sizeof(m.from), "%s", d->conf->name);
    snprintf(m.to, sizeof(m.to), "%s", n->name);
    m.seq = seq;
    m.wall_ms = mg_ha__wall_ms();
    m.failsafe = failsafe;
    len = mg_ha__msg_encode(&m, d->conf->cluster_secret, buf, sizeof(buf));
    if (len == 0)
        return;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)n->udp_port);
    if (inet_pton(AF_INET, n->host, &sa.sin_addr) != 1)
        return;
    (void)sendto(d->udp_fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa));
}

static void
wake_node(daemon_t *d, const mg_ha_node_t *n)
{
    send_msg(d, n, MG_HA_MSG_WAKEUP, next_seq(d), false);
}

/* wake_all asks every other node to run its loop now (a status change). */
static void
wake_all(daemon_t *d)
{
    for (size_t i = 0; i < d->view.nnodes; i++)
        wake_node(d, &d->view.nodes[i]);
}

static peer_t *
peer_of(daemon_t *d, const char *name)
{
    for (size_t i = 0; i < d->npeers; i++)
        if (strcmp(d->peers[i].name, name) == 0)
            return &d->peers[i];
    if (d->npeers >= MG_HA_MAX_NODES)
        return NULL;
    memset(&d->peers[d->npeers], 0, sizeof(peer_t));
    snprintf(d->peers[d->npeers].name, MG_HA_NAME_SIZE, "%s", name);
    return &d->peers[d->npeers++];
}

/*
 * send_heartbeats sends HEARTBEAT to every node of the last view. A primary
 * that could not reach etcd this loop flags them failsafe: an ACK is the
 * peer's promise not to take the leader key for ttl after it got it.
 */
static void
send_heartbeats(daemon_t *d, bool failsafe)
{
    int64_t seq = next_seq(d);

    if (failsafe) {
        d->hb_sent_seq[seq % HB_RING] = seq;
        d->hb_sent_ms[seq % HB_RING] = mg_ha__now_ms();
    }
    for (size_t i = 0; i < d->view.nnodes; i++)
        send_msg(d, &d->view.nodes[i], MG_HA_MSG_HEARTBEAT, seq, failsafe);
}

/*
 * failsafe_grant returns until when the peers allow this primary to keep
 * writing without etcd: every node of the last view must have acked a
 * failsafe heartbeat; the grant runs from the oldest such send time.
 */
static int64_t
failsafe_grant(daemon_t *d)
{
    int64_t oldest = INT64_MAX;
    size_t others = 0;

    if (d->conf->cluster_secret == NULL || d->conf->cluster_secret[0] == '\0')
        return 0;
    for (size_t i = 0; i < d->view.nnodes; i++) {
        const peer_t *p;

        if (strcmp(d->view.nodes[i].name, d->conf->name) == 0)
            continue;
        others++;
        p = peer_of(d, d->view.nodes[i].name);
        if (p == NULL || p->acked_sent_ms == 0)
            return 0;
        if (p->acked_sent_ms < oldest)
            oldest = p->acked_sent_ms;
    }
    if (others == 0)
        return 0; /* a lone node has nobody to vouch that no one else promoted */
    return oldest + d->conf->ttl_ms - d->conf->retry_ms;
}

/* handle_datagram checks and acts on one datagram; true when it asks for a loop now. */
static bool
handle_datagram(daemon_t *d, const char *buf, size_t len)
{
    mg_ha_msg_t m;
    peer_t *p;
    int64_t now = mg_ha__now_ms(), wall = mg_ha__wall_ms();

    if (mg_ha__msg_receive(buf, len, d->conf->cluster_secret, d->conf->cluster, d->conf->name, wall,
                           d->conf->ttl_ms, &m) != MG_HA_MSG_ACCEPTED)
        return false;
    p = peer_of(d, m.from);
    if (p == NULL)
        return false;
    if (m.type == MG_HA_MSG_ACK) {
        /* an ack echoes our sequence: no replay check against the peer's own */
        const int64_t slot = m.seq % HB_RING;

        if (d->hb_sent_seq[slot] == m.seq && d->hb_sent_ms[slot] > p->acked_sent_ms)
            p->acked_sent_ms = d->hb_sent_ms[slot];
        p->heard_ms = now;
        return false;
    }
    if (!mg_ha__msg_seq_accept(&m, &p->last_seq))
        return false; /* replayed or reordered */
    p->heard_ms = now;
    if (m.type == MG_HA_MSG_WAKEUP)
        return true;
    if (m.failsafe && d->state != MG_HA_STATE_PRIMARY) {
        /* promise: no promotion for ttl from now (decide sees failsafe_primary_heard) */
        const mg_ha_node_t *n = mg_ha_view_find_node(&d->view, m.from);

        d->failsafe_heard_ms = now;
        snprintf(d->failsafe_from, sizeof(d->failsafe_from), "%s", m.from);
        if (n != NULL)
            send_msg(d, n, MG_HA_MSG_ACK, m.seq, false);
        return false;
    }
    return false;
}

/* ------------------------------------------------------------------------
 * Fencing
 * ------------------------------------------------------------------------ */

/* writable_until is the primary's write deadline: lease or failsafe grant. */
static int64_t
writable_until(const daemon_t *d)
{
    return mg_ha_fence_deadline(d->key_ok_ms, d->failsafe_until_ms, d->conf->ttl_ms,
                                d->conf->retry_ms);
}

/*
 * may_become_primary is checked right before Postgres is started as or
 * promoted to a primary: the lease must still be inside its write window,
 * and the watchdog is armed first, so a pause after this check still ends
 * in a fence, not in a second primary.
 */
static bool
may_become_primary(daemon_t *d, mg_error_t *error)
{
    int64_t until = writable_until(d);

    if (until <= 0 || mg_ha__now_ms() >= until)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "leader lease too old to take writes (renewed %lldms ago)",
                            (long long)(mg_ha__now_ms() - d->key_ok_ms));
    mg_ha__watchdog_arm(&d->watchdog, until + d->conf->retry_ms / 2);
    return true;
}

/* arm_watchdog moves the watchdog's deadline (half a margin after ours; 0 = not primary). */
static void
arm_watchdog(daemon_t *d)
{
    int64_t until = writable_until(d);

    if (d->state == MG_HA_STATE_PRIMARY && until > 0)
        mg_ha__watchdog_arm(&d->watchdog, until + d->conf->retry_ms / 2);
    else
        mg_ha__watchdog_arm(&d->watchdog, 0);
}

/* ------------------------------------------------------------------------
 * Actions
 * ------------------------------------------------------------------------ */

static bool
init_marker(daemon_t *d, bool set)
{
    char path[PATH_MAX];

    /* per node: pg_basebackup copies the primary's marker to its replicas */
    snprintf(path, sizeof(path), "%s/pgdaemon.initialized.%s", d->conf->data_dir, d->conf->name);
    if (!set)
        return access(path, F_OK) == 0;
    return mg_ha__write_file(path, "", 0, 0600, &d->pg.runas, NULL);
}

static bool
do_start_primary(daemon_t *d, mg_error_t *error)
{
    bool got = false;

    if (d->view.init_sysid[0] == '\0' && d->local_sysid[0] != '\0') {
        bool won = false;

        if (!put_initialize(d, d->view.init_mod_revision, d->local_sysid, &won, error))
            return false;
        if (!won)
            return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                                "initialize changed while this node bootstrapped");
    }
    if (!take_leader(d, &got, error))
        return false;
    if (!got)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "the leader key is held by another node");
    if (d->conf->synchronous_mode && d->pg.sync_names[0] == '\0' &&
        strcmp(d->view.status.primary, d->conf->name) == 0) {
        /* restart: keep waiting for the standbys etcd says may hold commits */
        size_t n = 0;

        for (size_t i = 0; i < d->view.status.nsync_members; i++)
            if (strcmp(d->view.status.sync_members[i], d->conf->name) != 0)
                n += (size_t)snprintf(d->pg.sync_names + n,
                                      n < sizeof(d->pg.sync_names) ? sizeof(d->pg.sync_names) - n
                                                                   : 0,
                                      "%s%s", n ? ", " : "", d->view.status.sync_members[i]);
    }
    d->upstream[0] = '\0';
    if (!may_become_primary(d, error))
        return false;
    if (!mg_ha__pg_configure(&d->pg, false, NULL, 0, error) || !mg_ha__pg_start(&d->pg, error) ||
        !mg_ha__pg_ensure_roles(&d->pg, error))
        return false;
    if (!ensure_status(d, error))
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
do_start_replica(daemon_t *d, const char *peer, mg_error_t *error)
{
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
do_clone(daemon_t *d, const char *peer, mg_error_t *error)
{
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

/* sync_candidates joins the names of other nodes that may be sync standbys into out. */
static void
sync_candidates(daemon_t *d, bool streaming_only, char *out, size_t outsz)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < d->view.nnodes; i++) {
        const mg_ha_node_t *x = &d->view.nodes[i];
        bool streams = !streaming_only;

        if (strcmp(x->name, d->conf->name) == 0 || x->state == MG_HA_STATE_REFUSED)
            continue;
        for (size_t j = 0; j < d->self.nreplication && !streams; j++)
            if (strcmp(d->self.replication[j].application_name, x->name) == 0 &&
                strcmp(d->self.replication[j].state, "streaming") == 0)
                streams = true;
        if (!streams)
            continue;
        n += (size_t)snprintf(out + n, outsz > n ? outsz - n : 0, "%s%s", n ? ", " : "", x->name);
    }
}

/* names_to_status parses "a, b" into the status's sync member list. */
static void
names_to_status(const char *names, mg_ha_cluster_status_t *s)
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
status_has_member(const mg_ha_cluster_status_t *s, const char *name)
{
    for (size_t i = 0; i < s->nsync_members; i++)
        if (strcmp(s->sync_members[i], name) == 0)
            return true;
    return false;
}

/*
 * manage_sync keeps synchronous_standby_names = ANY 1 (streaming replicas)
 * while the status key's sync_members stays a superset of every set Postgres
 * may have used: widen etcd first, then Postgres; narrow Postgres first,
 * then etcd. Only sync members are failover candidates in this mode.
 */
static bool
manage_sync(daemon_t *d, mg_error_t *error)
{
    char want[sizeof(d->pg.sync_names)];
    mg_ha_cluster_status_t s = d->view.status;
    mg_ha_cluster_status_t w;
    bool superset = true;

    if (!d->conf->synchronous_mode)
        return true;
    sync_candidates(d, true, want, sizeof(want));
    memset(&w, 0, sizeof(w));
    names_to_status(want, &w);
    for (size_t i = 0; i < w.nsync_members; i++)
        if (!status_has_member(&s, w.sync_members[i])) {
            superset = false;
            if (s.nsync_members < MG_HA_MAX_NODES)
                snprintf(s.sync_members[s.nsync_members++], MG_HA_NAME_SIZE, "%s",
                         w.sync_members[i]);
        }
    if (!superset)
        return cas_status(d, &s, error); /* Postgres changes next loop */
    if (strcmp(want, d->pg.sync_names) != 0) {
        if (w.nsync_members == 0 && d->pg.sync_names[0] != '\0') {
            /* keep waiting for a standby rather than degrade while one of them may return */
            bool any_alive = false;

            for (size_t i = 0; i < d->view.nnodes; i++)
                if (strcmp(d->view.nodes[i].name, d->conf->name) != 0 &&
                    d->view.nodes[i].pg_running)
                    any_alive = true;
            if (any_alive)
                return true;
        }
        if (!mg_ha__pg_write_sync(&d->pg, want, error) || !mg_ha__pg_reload(&d->pg, error))
            return false;
        MG_LOG_EVENT(
            MG_LOG_NOTICE, MODULE, "ha.sync",
            MG_LOG_FIELDS(MG_LOG_STR("node", d->conf->name), MG_LOG_STR("sync_standbys", want)),
            "synchronous_standby_names = ANY 1 (%s)", want);
    }
    if (s.nsync_members != w.nsync_members && strcmp(want, d->pg.sync_names) == 0) {
        s.nsync_members = 0;
        for (size_t i = 0; i < w.nsync_members; i++)
            snprintf(s.sync_members[s.nsync_members++], MG_HA_NAME_SIZE, "%s", w.sync_members[i]);
        return cas_status(d, &s, error);
    }
    return true;
}

/*
 * do_promote takes the leader key with a create-only txn (or finds it
 * ours), promotes the local standby, and records the new primary in the
 * status key (term + 1, reconfiguring_replicas) with the decision inputs.
 */
static bool
do_promote(daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    bool got = false;
    bool switchover = s.failover == MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY &&
                      strcmp(s.target_primary, d->conf->name) == 0;
    char names[sizeof(d->pg.sync_names)];

    if (!take_leader(d, &got, error))
        return false;
    if (!got)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "another node took the leader key first");
    if (d->conf->synchronous_mode) {
        /* commits wait for one of the other nodes from the first one on */
        sync_candidates(d, false, names, sizeof(names));
        if (!mg_ha__pg_write_sync(&d->pg, names, error))
            return false;
        names_to_status(names, &s);
    }
    if (!may_become_primary(d, error))
        return false;
    if (d->in_recovery && !mg_ha__pg_promote(&d->pg, error))
        return false;
    d->upstream[0] = '\0';
    if (!d->conf->synchronous_mode)
        s.nsync_members = 0;
    s.term = s.exists ? s.term + 1 : 1;
    snprintf(s.primary, sizeof(s.primary), "%s", d->conf->name);
    s.failover = MG_HA_FAILOVER_RECONFIGURING_REPLICAS;
    s.target_primary[0] = '\0';
    snprintf(s.last_failover_reason, sizeof(s.last_failover_reason), "%s",
             switchover ? "switchover" : "leader lease lapsed");
    s.last_failover_ms = mg_ha__wall_ms();
    s.writes_resumed_ms = s.last_failover_ms;
    if (!switchover)
        s.writes_stopped_ms = 0;
    if (!cas_status(d, &s, error))
        return false;
    {
        mg_error_t ignored;

        /* pg_control names the new timeline from the next checkpoint on (pg_rewind reads it) */
        if (!mg_ha__pg_checkpoint_remote(&d->pg, d->pg.local_host, d->conf->pg_port, &ignored))
            mg_log_error(MG_LOG_WARNING, MODULE, &ignored);
    }
    status_event(d, "promote", d->conf->name, "%s: %s promoted (term %" PRId64 ")%s%s",
                 switchover ? "switchover" : "failover", d->conf->name, s.term,
                 switchover ? "" : "; ", switchover ? "" : dec->reason);
    wake_all(d);
    return true;
}

/* do_follow points the running standby at the new primary and reloads. */
static bool
do_follow(daemon_t *d, const char *peer, mg_error_t *error)
{
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
 * do_demote stops writes. In a switchover it first marks the status
 * demoting_old_primary (so /primary is 503 everywhere), shuts Postgres down
 * cleanly (the shutdown checkpoint reaches the standbys), and records the
 * final LSN for the catch-up; otherwise it stops Postgres at once.
 */
static bool
do_demote(daemon_t *d, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    bool switchover = strcmp(d->view.leader, d->conf->name) == 0 &&
                      strcmp(s.primary, d->conf->name) == 0 &&
                      (s.failover == MG_HA_FAILOVER_INITIATED ||
                       s.failover == MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY);

    pthread_mutex_lock(&d->shared.lock);
    d->shared.demoting = true;
    pthread_mutex_unlock(&d->shared.lock);
    if (!switchover)
        return mg_ha__pg_stop_now(&d->pg, true, error);
    if (s.failover == MG_HA_FAILOVER_INITIATED) {
        s.failover = MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY;
        s.writes_stopped_ms = mg_ha__wall_ms();
        if (!cas_status(d, &s, error))
            return false;
        status_event(d, "demote", s.target_primary, "switchover to %s: writes stopped",
                     s.target_primary);
    }
    if (!mg_ha__pg_stop_now(&d->pg, false, error) ||
        !mg_ha__pg_checkpoint_lsn(&d->pg, s.final_lsn, sizeof(s.final_lsn), error))
        return false;
    s.failover = MG_HA_FAILOVER_WAITING_FOR_CATCHUP;
    if (!cas_status(d, &s, error))
        return false;
    status_event(d, "demote", s.target_primary, "switchover: old primary stopped at %s",
                 s.final_lsn);
    wake_all(d);
    return true;
}

/* do_handoff releases the leader key and sets promoting_new_primary in one txn. */
static bool
do_handoff(daemon_t *d, const char *target, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_buf_t b;
    bool ok;

    s.failover = MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY;
    snprintf(s.target_primary, sizeof(s.target_primary), "%s", target);
    mg_buf_init(&b, 64 * 1024);
    memset(&res, 0, sizeof(res));
    ok = txn != NULL && mg_ha_status_to_json(&s, &b, error) &&
         mg_etcd_txn_compare_value(txn, d->key_leader, MG_ETCD_CMP_EQUAL, d->conf->name,
                                   strlen(d->conf->name), error) &&
         mg_etcd_txn_compare_int(txn, d->key_status, MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL,
                                 d->view.status.mod_revision, error) &&
         mg_etcd_txn_delete(txn, true, d->key_leader, false, error) &&
         mg_etcd_txn_put(txn, true, d->key_status, b.data, b.len, 0, error) &&
         mg_etcd_txn_commit(d->etcd, txn, &res, error);
    if (ok && !res.succeeded)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                          "leader or status key changed during the hand-off");
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    mg_buf_cleanup(&b);
    if (ok) {
        d->view.status = s;
        d->key_ok_ms = 0; /* no key, no writes */
        status_event(d, "handoff", target, "switchover: leader key released to %s", target);
        wake_all(d);
    }
    return ok;
}

/* do_abort_switchover restarts the old primary (it still holds the key), status stable. */
static bool do_abort_switchover(daemon_t *d, mg_error_t *error);

/* do_switchover_begin accepts (status initiated, target) or refuses a spec request. */
static bool
do_switchover_begin(daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
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
    if (!cas_status(d, &s, error))
        return false;
    status_event(d, "switchover_begin", dec->peer, "%s", dec->reason);
    d->woken = true; /* demote now, not a loop later */
    return true;
}

/*
 * do_rejoin makes a stopped or diverged node a standby of peer: stop
 * Postgres, pg_rewind against the primary (a no-op when nothing diverged),
 * configure, start. A failure counts toward the re-clone fallback.
 */
static bool
do_rejoin(daemon_t *d, const char *peer, mg_error_t *error)
{
    const mg_ha_node_t *p = mg_ha_view_find_node(&d->view, peer);
    char slot[MG_HA_NAME_SIZE];

    if (p == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                            "primary \"%s\" has not reported its address", peer);
    mg_ha_slot_name(d->conf->name, slot, sizeof(slot));
    if (!mg_ha__pg_check_slot(&d->pg, p->host, p->pg_port, slot, error)) {
        /* the primary creates it once it sees our node key: publish it now */
        d->self.state = d->state;
        publish_self(d);
        wake_node(d, p);
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
    {
        event_ctx_t ctx = {mg_ha_state_name(d->state), "replica", "rejoin", peer};
        char msg[200];

        snprintf(msg, sizeof(msg), "rejoined as a standby of %s after pg_rewind", peer);
        record_event(d, MG_LOG_NOTICE, "ha.rejoin", &ctx, msg);
    }
    return true;
}

/* do_reclone removes the data dir so the node joins again with pg_basebackup. */
static bool
do_reclone(daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    event_ctx_t ctx = {mg_ha_state_name(d->state), "wait_primary", "reclone", dec->peer};

    if (!mg_ha__pg_stop_now(&d->pg, false, error))
        return false;
    record_event(d, MG_LOG_WARNING, "ha.reclone", &ctx, dec->reason);
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
do_finish_failover(daemon_t *d, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;

    s.failover = MG_HA_FAILOVER_STABLE;
    s.target_primary[0] = '\0';
    if (!cas_status(d, &s, error))
        return false;
    status_event(d, "finish_failover", d->conf->name,
                 "failover complete: replicas follow %s (write gap %" PRId64 "ms)", s.primary,
                 s.writes_stopped_ms > 0 ? s.writes_resumed_ms - s.writes_stopped_ms : -1);
    return true;
}

/*
 * drop_departed_slots drops our slots (pgdaemon_*) whose node has been
 * missing from nodes/ for slot_ttl, so a departed node cannot hold WAL
 * forever. Timing is per slot, on the monotonic clock.
 */
static void
drop_departed_slots(daemon_t *d)
{
    int64_t now = mg_ha__now_ms();
    absent_slot_t next[MG_HA_MAX_SLOTS];
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
            event_ctx_t ctx = {NULL, NULL, "drop_slot", NULL};
            char msg[200];
            mg_error_t error;
            bool dropped = false;

            if (!mg_ha__pg_drop_slot(&d->pg, slot, &dropped, &error))
                mg_log_error(MG_LOG_WARNING, "ha", &error);
            if (dropped) {
                snprintf(msg, sizeof(msg),
                         "dropped replication slot %s: its node has been gone for %llds", slot,
                         (long long)((now - since) / 1000));
                record_event(d, MG_LOG_NOTICE, "ha.slot_dropped", &ctx, msg);
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
do_maintain_primary(daemon_t *d, mg_error_t *error)
{
    char want[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nwant = 0;
    bool got = true;

    if (strcmp(d->view.leader, d->conf->name) != 0 || d->view.leader_lease != d->lease) {
        if (!take_leader(d, &got, error))
            return false;
        if (!got)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                "could not take the leader key");
    }
    if (!ensure_status(d, error))
        return false;
    if (d->self.current_lsn[0] != '\0' && !mg_etcd_put(d->etcd, d->key_optime, d->self.current_lsn,
                                                       strlen(d->self.current_lsn), 0, NULL, error))
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
            event_ctx_t ctx = {NULL, NULL, "create_slot", n->name};
            char msg[200];

            snprintf(msg, sizeof(msg), "creating replication slot %s for node %s", want[nwant],
                     n->name);
            record_event(d, MG_LOG_NOTICE, "ha.slot", &ctx, msg);
            nwant++;
        }
    }
    if (!mg_ha__pg_ensure_slots(&d->pg, want, nwant, error))
        return false;
    drop_departed_slots(d);
    if (nwant > 0) {
        bool rec;

        mg_ha__pg_collect(&d->pg, &d->self, &rec);
        publish_self(d);
        for (size_t i = 0; i < d->view.nnodes; i++)
            wake_node(d, &d->view.nodes[i]);
    }
    return true;
}

static bool
do_abort_switchover(daemon_t *d, mg_error_t *error)
{
    mg_ha_cluster_status_t s = d->view.status;
    char target[MG_HA_NAME_SIZE];

    snprintf(target, sizeof(target), "%s", s.target_primary);
    s.failover = MG_HA_FAILOVER_STABLE;
    s.target_primary[0] = '\0';
    snprintf(s.last_failover_reason, sizeof(s.last_failover_reason),
             "switchover to %.60s aborted: catch-up timeout", target);
    if (!cas_status(d, &s, error))
        return false;
    status_event(d, "abort_switchover", target, "%s", s.last_failover_reason);
    return do_start_primary(d, error);
}

/*
 * give_up_bootstrap releases `initialize` after initdb failed again and
 * again (only while it still names this node without a system identifier),
 * so another node can bootstrap, and records why.
 */
static void
give_up_bootstrap(daemon_t *d, const mg_error_t *cause)
{
    event_ctx_t ctx = {mg_ha_state_name(d->state), NULL, "initdb", NULL};
    char msg[MG_ERROR_MESSAGE_SIZE + 96];
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
    snprintf(msg, sizeof(msg), "bootstrap of node %s abandoned after %d failed initdb runs: %s",
             d->conf->name, d->initdb_failures, cause->message);
    record_event(d, MG_LOG_FATAL, "ha.bootstrap_failed", &ctx, msg);
}

/* refuse records the refusal and makes the daemon exit non-zero. */
static void
refuse(daemon_t *d, const mg_ha_decision_t *dec)
{
    event_ctx_t ctx = {mg_ha_state_name(d->state), "refused", "refuse", NULL};

    record_event(d, MG_LOG_ERROR, "ha.refused", &ctx, dec->reason);
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

static void
collect_local(daemon_t *d)
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
    d->self.nofailover = d->conf->nofailover;
    snprintf(d->self.upstream, sizeof(d->self.upstream), "%s", d->upstream);
}

/* fence_if_due stops a primary whose write deadline passed (lease or failsafe). */
static void
fence_if_due(daemon_t *d)
{
    int64_t now = mg_ha__now_ms(), until = writable_until(d);
    mg_error_t error;
    char msg[200];
    event_ctx_t ctx = {"primary", "demoted", "fence", NULL};

    if (d->state != MG_HA_STATE_PRIMARY || now < until)
        return;
    pthread_mutex_lock(&d->shared.lock);
    d->shared.demoting = true;
    pthread_mutex_unlock(&d->shared.lock);
    if (!mg_ha__pg_stop_now(&d->pg, true, &error))
        mg_log_error(MG_LOG_ERROR, MODULE, &error);
    d->state = MG_HA_STATE_DEMOTED;
    snprintf(msg, sizeof(msg),
             "fenced: could not renew the leader lease and the peers did not all grant failsafe "
             "(%" PRId64 "ms past the write deadline)",
             now - until);
    record_event(d, MG_LOG_WARNING, "ha.fenced", &ctx, msg);
}

static void
share(daemon_t *d)
{
    pthread_mutex_lock(&d->shared.lock);
    d->shared.self = d->self;
    d->shared.in_recovery = d->in_recovery;
    d->shared.holds_leader = strcmp(d->view.leader, d->conf->name) == 0 &&
                             d->view.leader_lease == d->lease && d->lease != 0;
    d->shared.lease_ok_ms = d->lease_ok_ms;
    d->shared.writable_until_ms = writable_until(d);
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
track_primary_start(daemon_t *d)
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

/*
 * do_release_leader gives up the leader key after Postgres did not run as a
 * writable primary within start_timeout: Postgres is stopped (it takes no
 * writes anyway), the key is deleted only while it still names this node,
 * and for start_timeout the node does not retake a free key, so a replica
 * can. The event names the node and the last start error.
 */
static bool
do_release_leader(daemon_t *d, const mg_ha_decision_t *dec, mg_error_t *error)
{
    event_ctx_t ctx = {mg_ha_state_name(d->state), "demoted", "release_leader", NULL};
    char msg[MG_ERROR_MESSAGE_SIZE + 400];

    pthread_mutex_lock(&d->shared.lock);
    d->shared.demoting = true;
    pthread_mutex_unlock(&d->shared.lock);
    d->key_ok_ms = 0; /* no writes from here on, whatever etcd says */
    if (!mg_ha__pg_stop_now(&d->pg, true, error))
        return false;
    if (strcmp(d->view.leader, d->conf->name) == 0) {
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
        if (!ok)
            return false;
    }
    d->view.leader[0] = '\0';
    d->start_hold_until_ms = mg_ha__now_ms() + d->conf->start_timeout_ms;
    d->primary_down_since_ms = 0;
    collect_local(d);
    snprintf(msg, sizeof(msg), "node %s released the leader key: %s; last start error: %s",
             d->conf->name, dec->reason,
             d->last_start_error[0] ? d->last_start_error : "none (Postgres not writable)");
    record_event(d, MG_LOG_WARNING, "ha.start_timeout", &ctx, msg);
    wake_all(d);
    return true;
}

/* one_loop runs one reconcile round; returns false when the daemon must exit. */
static bool
one_loop(daemon_t *d, int *exit_code)
{
    mg_error_t error;
    mg_ha_decision_t dec;
    mg_ha_self_t me;
    bool acted = true, lease_ok;

    memset(&me, 0, sizeof(me));
    me.name = d->conf->name;
    me.max_nodes = d->conf->max_nodes;
    me.join_timeout_ms = d->conf->join_timeout_ms;
    me.max_lag_bytes = d->conf->failover_max_lag;
    me.synchronous_mode = d->conf->synchronous_mode;
    me.fresh_ms = 2 * d->conf->loop_ms + d->conf->retry_ms;
    me.switchover_timeout_ms = d->conf->switchover_timeout_ms;
    me.rewind_attempts = d->conf->rewind_attempts;
    me.start_timeout_ms = d->conf->start_timeout_ms;
    me.can_failover = !d->conf->nofailover && d->conf->priority > 0;
    d->loops++;
    fence_if_due(d); /* first: after a pause the deadline may be long gone */
    lease_ok = renew_lease(d);
    collect_local(d);
    if (!lease_ok || !read_view(d, &error)) {
        if (lease_ok)
            note_etcd_error(d, "read the cluster state", &error);
        if (d->state == MG_HA_STATE_PRIMARY) {
            /* failsafe: keep writing only while every peer vouches over UDP */
            d->failsafe_until_ms = failsafe_grant(d);
            send_heartbeats(d, true);
        } else {
            send_heartbeats(d, false);
        }
        fence_if_due(d);
        arm_watchdog(d);
        d->self.state = d->state;
        share(d);
        return true; /* keep serving Postgres while the lease or the failsafe allows */
    }
    d->etcd_ok = true;
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
        d->failsafe_heard_ms > 0 && d->view.now_ms - d->failsafe_heard_ms < d->conf->ttl_ms;
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
    d->view.replica_stalled = d->stalled;
    d->view.rewind_failures = d->rewind_failures;
    track_primary_start(d);
    arm_watchdog(d);
    if (!mg_ha_decide(&me, &d->view, &dec, &error)) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        *exit_code = MG_EXIT_INTERNAL;
        return false;
    }
    switch (dec.action) {
    case MG_HA_ACTION_NONE:
    case MG_HA_ACTION_WAIT:
        break;
    case MG_HA_ACTION_REFUSE:
        refuse(d, &dec);
        d->state = MG_HA_STATE_REFUSED;
        *exit_code = MG_EXIT_FAILURE;
        return false;
    case MG_HA_ACTION_CLAIM_INITIALIZE: {
        bool won = false;

        acted = put_initialize(d, 0, d->local_sysid, &won, &error);
        if (acted && !won) {
            MG_LOG(MG_LOG_INFO, MODULE, "another node claimed initialize first");
            acted = false;
            mg_error_clear(&error);
        }
        break;
    }
    case MG_HA_ACTION_INITDB:
        acted = mg_ha__pg_initdb(&d->pg, &error) &&
                mg_ha__pg_read_sysid(&d->pg, d->local_sysid, sizeof(d->local_sysid), &error);
        if (!acted && ++d->initdb_failures >= MAX_INITDB_FAILURES) {
            give_up_bootstrap(d, &error);
            *exit_code = MG_EXIT_FAILURE;
            return false;
        }
        if (acted) {
            bool won = false;

            acted = put_initialize(d, d->view.init_mod_revision, d->local_sysid, &won, &error);
            if (acted && !won)
                acted = mg_error_set(&error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                                     "initialize changed while this node ran initdb");
            if (acted) {
                event_ctx_t ctx = {NULL, NULL, "initdb", NULL};
                char msg[160];

                snprintf(msg, sizeof(msg), "initialized cluster with system identifier %s",
                         d->local_sysid);
                record_event(d, MG_LOG_NOTICE, "ha.initialized", &ctx, msg);
            }
        }
        break;
    case MG_HA_ACTION_START_PRIMARY:
        acted = do_start_primary(d, &error);
        break;
    case MG_HA_ACTION_CLONE:
        acted = do_clone(d, dec.peer, &error);
        break;
    case MG_HA_ACTION_START_REPLICA:
        acted = do_start_replica(d, dec.peer, &error);
        break;
    case MG_HA_ACTION_MAINTAIN_PRIMARY:
        acted = do_maintain_primary(d, &error);
        break;
    case MG_HA_ACTION_MAINTAIN_REPLICA:
        break;
    case MG_HA_ACTION_PROMOTE:
        acted = do_promote(d, &dec, &error);
        break;
    case MG_HA_ACTION_FOLLOW:
        acted = do_follow(d, dec.peer, &error);
        break;
    case MG_HA_ACTION_DEMOTE:
        acted = do_demote(d, &error);
        break;
    case MG_HA_ACTION_REJOIN:
        acted = do_rejoin(d, dec.peer, &error);
        break;
    case MG_HA_ACTION_RECLONE:
        acted = do_reclone(d, &dec, &error);
        break;
    case MG_HA_ACTION_SWITCHOVER_BEGIN:
        acted = do_switchover_begin(d, &dec, &error);
        break;
    case MG_HA_ACTION_HANDOFF:
        acted = do_handoff(d, dec.peer, &error);
        break;
    case MG_HA_ACTION_ABORT_SWITCHOVER:
        acted = do_abort_switchover(d, &error);
        break;
    case MG_HA_ACTION_FINISH_FAILOVER:
        acted = do_finish_failover(d, &error);
        break;
    case MG_HA_ACTION_RELEASE_LEADER:
        acted = do_release_leader(d, &dec, &error);
        break;
    default:
        break;
    }
    d->last_action = dec.action;
    if (!acted && mg_error_is_set(&error) &&
        (dec.action == MG_HA_ACTION_START_PRIMARY || dec.action == MG_HA_ACTION_ABORT_SWITCHOVER))
        snprintf(d->last_start_error, sizeof(d->last_start_error), "%s", error.message);
    if (!acted && mg_error_is_set(&error)) {
        event_ctx_t ctx = {mg_ha_state_name(d->state), mg_ha_state_name(dec.next_state),
                           mg_ha_action_name(dec.action), dec.peer};
        char msg[MG_ERROR_MESSAGE_SIZE + 64];

        snprintf(msg, sizeof(msg), "action %s failed: %s", mg_ha_action_name(dec.action),
                 error.message);
        record_event(d, MG_LOG_ERROR, "ha.action_failed", &ctx, msg);
    }
    if (acted && dec.next_state != d->state) {
        event_ctx_t ctx = {mg_ha_state_name(d->state), mg_ha_state_name(dec.next_state),
                           mg_ha_action_name(dec.action), dec.peer};
        d->state = dec.next_state;
        pthread_mutex_lock(&d->shared.lock);
        d->shared.transitions++;
        pthread_mutex_unlock(&d->shared.lock);
        record_event(d, MG_LOG_NOTICE, "ha.transition", &ctx, dec.reason);
        if (d->state == MG_HA_STATE_PRIMARY || d->state == MG_HA_STATE_REPLICA)
            collect_local(d);
        wake_all(d); /* a status change: let the others look now */
        d->woken = true;
    } else if (acted && dec.action == MG_HA_ACTION_START_PRIMARY) {
        collect_local(d); /* restarted in place: /primary may answer 200 now, not a loop later */
    }
    arm_watchdog(d);
    send_heartbeats(d, false);
    if (d->state == MG_HA_STATE_WAIT_PRIMARY) {
        const mg_ha_node_t *p = mg_ha_view_find_node(&d->view, d->view.leader);

        if (p != NULL)
            wake_node(d, p); /* ask the primary to look at us now */
    }
    /* a refused or finished state changes what we report */
    d->self.state = d->state;
    d->self.updated_ms = mg_ha__wall_ms();
    publish_self(d);
    if (d->state == MG_HA_STATE_PRIMARY && acted)
        (void)read_view(d, &error); /* leader key may have just been taken */
    share(d);
    return true;
}

static int
open_udp(const mg_ha_config_t *c, mg_error_t *error)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa;

    if (fd < 0)
        return mg_error_set_errno(error, errno, "could not create a UDP socket"), -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->udp_port);
    if (inet_pton(AF_INET, c->address, &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;

        close(fd);
        return mg_error_set_errno(error, e, "could not bind UDP port %s:%lld", c->address,
                                  (long long)c->udp_port),
               -1;
    }
    return fd;
}

/*
 * sleep_until_wakeup waits up to ms for a datagram or a signal. A primary
 * whose Postgres ran at the last look also wakes when the postmaster is
 * gone (checked every PG_WATCH_MS): a crash is restarted at once, not at
 * the next loop.
 */
static void
sleep_until_wakeup(daemon_t *d, int64_t ms)
{
    struct pollfd p = {d->udp_fd, POLLIN, 0};
    bool watch = d->state == MG_HA_STATE_PRIMARY && d->self.pg_running;

    if (ms <= 0)
        return;
    int64_t deadline = mg_ha__now_ms() + ms;

    if (d->woken) {
        d->woken = false;
        return;
    }
    while (!stop_requested) {
        int64_t left = deadline - mg_ha__now_ms();
        bool wake = false;

        if (left <= 0)
            return;
        if (watch && left > PG_WATCH_MS)
            left = PG_WATCH_MS;
        if (poll(&p, d->udp_fd >= 0 ? 1 : 0, (int)left) > 0) {
            char buf[1100];
            ssize_t n;

            while ((n = recv(d->udp_fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                wake = handle_datagram(d, buf, (size_t)n) || wake;
        }
        if (wake)
            return;
        if (watch && mg_ha__pg_running(&d->pg) == 0)
            return; /* the postmaster died: restart it now */
    }
}

/*
 * fast_loop says whether the next loop should come after FAST_LOOP_MS rather
 * than loop_wait: a switchover or failover is under way, the leader key is
 * free, or the leader's UDP heartbeats stopped (it may be gone; its lease
 * will lapse). Only the etcd reads get more frequent; decisions stay etcd's.
 */
static bool
fast_loop(daemon_t *d)
{
    mg_ha_failover_t f = d->view.status.failover;

    if (!d->etcd_ok)
        return false;
    if (d->state == MG_HA_STATE_DEMOTED || f != MG_HA_FAILOVER_STABLE)
        return true;
    if (d->state == MG_HA_STATE_REPLICA) {
        const peer_t *p = NULL;

        if (d->view.leader[0] == '\0')
            return true;
        for (size_t i = 0; i < d->npeers; i++)
            if (strcmp(d->peers[i].name, d->view.leader) == 0)
                p = &d->peers[i];
        return p != NULL && p->heard_ms > 0 &&
               mg_ha__now_ms() - p->heard_ms > 2 * d->conf->loop_ms + FAST_LOOP_MS;
    }
    return false;
}

static void
shutdown_daemon(daemon_t *d)
{
    mg_error_t error;

    bool ours = d->state == MG_HA_STATE_PRIMARY || d->state == MG_HA_STATE_REPLICA ||
                d->state == MG_HA_STATE_BOOTSTRAP || d->state == MG_HA_STATE_CLONE ||
                d->pg.child > 0;

    mg_ha__watchdog_stop(&d->watchdog);
    /* a refused node never touches a Postgres it did not run */
    if (ours && d->conf->on_stop == MG_HA_ON_STOP_FAST && mg_ha__pg_running(&d->pg) > 0) {
        MG_LOG(MG_LOG_NOTICE, MODULE, "stopping Postgres (fast shutdown)");
        if (!mg_ha__pg_stop(&d->pg, &error))
            mg_log_error(MG_LOG_ERROR, MODULE, &error);
    }
    if (d->lease != 0 && d->etcd != NULL) {
        /* the node key and, on the primary, the leader key go with the lease */
        if (!mg_etcd_lease_revoke(d->etcd, d->lease, &error))
            mg_log_error(MG_LOG_WARNING, MODULE, &error);
        d->lease = 0;
    }
}

int
mg_ha_cmd_run(int argc, char **argv)
{
    mg_ha_config_t *conf = NULL;
    mg_etcd_options_t eo;
    mg_error_t error;
    daemon_t *dp = calloc(1, sizeof(daemon_t));
    int first = 0, code = MG_EXIT_OK;
    char version[64];
    struct sigaction sa;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: pgdaemon run [--config FILE] [options]\n\nOptions:\n");
            mg_ha_config_print_help(stdout);
            printf("     %-32s%s\n", "--config FILE",
                   "read options from a JSON file (docs/ha.md) [env PGDAEMON_CONFIG]");
            free(dp);
            return MG_EXIT_OK;
        }
    if (dp == NULL) {
        fprintf(stderr, "pgdaemon: out of memory\n");
        return MG_EXIT_FAILURE;
    }
    dp->udp_fd = -1;
    dp->watchdog.fd = -1;
    pthread_mutex_init(&dp->shared.lock, NULL);
    if (!mg_ha_config_load(argc, argv, NULL, &conf, &first, &error) ||
        !mg_ha_config_check(conf, &error)) {
        fprintf(stderr, "pgdaemon: %s\n", error.message);
        code = MG_EXIT_USAGE;
        goto done;
    }
    if (first < argc) {
        fprintf(stderr, "pgdaemon: unexpected argument \"%s\"\n", argv[first]);
        code = MG_EXIT_USAGE;
        goto done;
    }
    dp->conf = conf;
    dp->shared.conf = conf;
    snprintf(dp->prefix, sizeof(dp->prefix), "%s/%s/", conf->etcd_prefix, conf->cluster);
    snprintf(dp->key_init, sizeof(dp->key_init), "%sinitialize", dp->prefix);
    snprintf(dp->key_leader, sizeof(dp->key_leader), "%sleader", dp->prefix);
    snprintf(dp->key_status, sizeof(dp->key_status), "%sstatus", dp->prefix);
    snprintf(dp->key_node, sizeof(dp->key_node), "%snodes/%s", dp->prefix, conf->name);
    snprintf(dp->key_events, sizeof(dp->key_events), "%sevents/", dp->prefix);
    snprintf(dp->key_optime, sizeof(dp->key_optime), "%soptime", dp->prefix);
    if (!mg_ha__pg_init(&dp->pg, conf, &error)) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        code = error.domain == MG_ERROR_DOMAIN_CONFIG ? MG_EXIT_USAGE : MG_EXIT_FAILURE;
        goto done;
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
    dp->etcd = mg_etcd_new(&eo, &error);
    if (dp->etcd == NULL) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        code = MG_EXIT_USAGE;
        goto done;
    }
    if (!mg_etcd_version(dp->etcd, version, sizeof(version), &error)) {
        mg_error_prefix(&error, "etcd is unreachable at start");
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        code = MG_EXIT_FAILURE;
        goto done;
    }
    MG_LOG_EVENT(
        MG_LOG_INFO, MODULE, "ha.start",
        MG_LOG_FIELDS(MG_LOG_STR("node", conf->name), MG_LOG_STR("cluster", conf->cluster),
                      MG_LOG_STR("etcd_version", version), MG_LOG_INT("http_port", conf->http_port),
                      MG_LOG_INT("pg_port", conf->pg_port)),
        "pgdaemon starting node %s of cluster %s (etcd %s)", conf->name, conf->cluster, version);
    if (!mg_ha__watchdog_start(&dp->watchdog, conf->data_dir, &error)) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        code = MG_EXIT_FAILURE;
        goto done;
    }
    if (conf->cluster_secret == NULL || conf->cluster_secret[0] == '\0')
        MG_LOG(MG_LOG_WARNING, MODULE,
               "no cluster_secret: UDP datagrams are ignored and the etcd-loss failsafe is off");
    dp->http = mg_ha__http_start(&dp->shared, conf->address, (uint16_t)conf->http_port, &error);
    if (dp->http == NULL) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        code = MG_EXIT_FAILURE;
        goto done;
    }
    dp->udp_fd = open_udp(conf, &error);
    if (dp->udp_fd < 0) {
        mg_log_error(MG_LOG_FATAL, MODULE, &error);
        code = MG_EXIT_FAILURE;
        goto done;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    dp->state = MG_HA_STATE_INIT;
    dp->started_wall_ms = mg_ha__wall_ms();
    dp->join_started_ms = mg_ha__now_ms();
    snprintf(dp->self.name, sizeof(dp->self.name), "%s", conf->name);
    snprintf(dp->self.host, sizeof(dp->self.host), "%s", conf->address);
    dp->self.pg_port = conf->pg_port;
    dp->self.http_port = conf->http_port;
    dp->self.udp_port = conf->udp_port;
    dp->self.started_ms = dp->started_wall_ms;
    while (!stop_requested) {
        int64_t t0 = mg_ha__now_ms();

        if (!one_loop(dp, &code))
            break;
        sleep_until_wakeup(
            dp, (fast_loop(dp) && conf->loop_ms > FAST_LOOP_MS ? FAST_LOOP_MS : conf->loop_ms) -
                    (mg_ha__now_ms() - t0));
    }
    if (stop_requested) {
        MG_LOG_EVENT(MG_LOG_NOTICE, MODULE, "ha.stop",
                     MG_LOG_FIELDS(MG_LOG_STR("node", conf->name)),
                     "pgdaemon stopping on a signal");
    }
done:
    if (dp->etcd != NULL)
        shutdown_daemon(dp);
    mg_http_server_destroy(dp->http);
    if (dp->udp_fd >= 0)
        close(dp->udp_fd);
    mg_etcd_destroy(dp->etcd);
    pthread_mutex_destroy(&dp->shared.lock);
    mg_ha_config_destroy(conf);
    free(dp);
    return code;
}
