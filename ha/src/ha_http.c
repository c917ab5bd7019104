/*
 * ha/src/ha_http.c - pgdaemon's read-only HTTP endpoints:
 *
 *   /primary   200 only when this node is primary, accepts writes, and holds
 *              the leader key under a lease renewed within ttl - retry_timeout
 *   /replica   200 when this node is a streaming standby within the lag
 *              bound (?lag=BYTES or 16MB-style sizes; default max_lag)
 *   /health    200 when Postgres answers queries and the loop is alive
 *   /status    JSON: this node, the leader, the cluster status and all nodes
 *   /metrics   Prometheus text
 *
 * Handlers run on the HTTP server's worker threads (core_http.c bounds
 * connections, per client and in time) and read the snapshot the loop
 * publishes under shared->lock; the lease age is computed at request time,
 * so /primary turns 503 even when the loop itself is stuck.
 */
#include "ha_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

bool
mg_ha__primary_ok(const mg_ha_shared_t *s, int64_t now_ms, char *why, size_t whysz)
{
    if (s->self.state != MG_HA_STATE_PRIMARY)
        snprintf(why, whysz, "node state is %s", mg_ha_state_name(s->self.state));
    else if (!s->self.pg_queries_ok)
        snprintf(why, whysz, "Postgres does not answer queries: %s", s->self.pg_error);
    else if (s->in_recovery)
        snprintf(why, whysz, "Postgres is in recovery");
    else if (!s->holds_leader)
        snprintf(why, whysz, "leader key is held by \"%s\"", s->leader);
    else if (s->demoting)
        snprintf(why, whysz, "switchover or fencing: writes stopped");
    else if (now_ms >= s->writable_until_ms)
        snprintf(why, whysz,
                 "write deadline passed %lldms ago (lease renewed %lldms ago, ttl - margin "
                 "%lldms)",
                 (long long)(now_ms - s->writable_until_ms), (long long)(now_ms - s->lease_ok_ms),
                 (long long)(s->conf->ttl_ms - s->conf->retry_ms));
    else
        return true;
    return false;
}

static uint64_t
primary_lsn(const mg_ha_shared_t *s)
{
    const mg_ha_node_t *p = mg_ha_view_find_node(&s->view, s->leader);
    uint64_t lsn = 0;

    if (p != NULL)
        mg_ha__lsn_parse(p->current_lsn, &lsn);
    return lsn;
}

/* replica_lag returns the replay lag in bytes behind the primary's last report. */
static int64_t
replica_lag(const mg_ha_shared_t *s)
{
    uint64_t p = primary_lsn(s), r = 0;

    if (!mg_ha__lsn_parse(s->self.replay_lsn, &r))
        return -1;
    return p > r ? (int64_t)(p - r) : 0;
}

/* a short answer (/primary, /replica, /health), decided under the lock, sent after it */
typedef struct {
    int status;
    char node[MG_HA_NAME_SIZE];
    char state[32];
    char role[16];
    char reason[256];
} answer_t;

static void
decided(answer_t *a, int status, const mg_ha_shared_t *s, const char *why)
{
    a->status = status;
    snprintf(a->node, sizeof(a->node), "%s", s->conf->name);
    snprintf(a->state, sizeof(a->state), "%s", mg_ha_state_name(s->self.state));
    snprintf(a->role, sizeof(a->role), "%s", s->self.role);
    snprintf(a->reason, sizeof(a->reason), "%s", why);
}

static void
reply_answer(mg_http_reply_t *reply, const answer_t *a)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    yajl_gen_map_open(g);
    mg_json_kstr(g, "node", a->node);
    mg_json_kstr(g, "state", a->state);
    mg_json_kstr(g, "role", a->role);
    mg_json_kstr(g, "reason", a->reason);
    yajl_gen_map_close(g);
    reply->status = a->status;
    reply->content_type = "application/json";
    (void)mg_json_take(g, &reply->body, NULL);
    (void)mg_buf_append(&reply->body, "\n", 1, NULL);
    yajl_gen_free(g);
}

/* json_str appends s as a JSON string literal (escaped by yajl). */
static bool
json_str(mg_buf_t *out, const char *s, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    bool ok;

    mg_json_str(g, s);
    ok = mg_json_take(g, out, error);
    yajl_gen_free(g);
    return ok;
}

bool
mg_ha__view_to_json(const mg_ha_view_t *v, mg_buf_t *out, mg_error_t *error)
{
    bool ok = mg_buf_append_str(out, "{\"leader\":", error) && json_str(out, v->leader, error) &&
              mg_buf_append_str(out, ",\"initialize\":{\"node\":", error) &&
              json_str(out, v->init_node, error) &&
              mg_buf_append_str(out, ",\"system_identifier\":", error) &&
              json_str(out, v->init_sysid, error) && mg_buf_append_str(out, "},\"status\":", error);

    ok = ok && mg_ha_status_to_json(&v->status, out, error) &&
         mg_buf_append_str(out, ",\"nodes\":[", error);
    for (size_t i = 0; i < v->nnodes && ok; i++)
        ok = (i == 0 || mg_buf_append_str(out, ",", error)) &&
             mg_ha_node_to_json(&v->nodes[i], out, error);
    ok = ok && mg_buf_append_str(out, "],\"bad_keys\":[", error);
    for (size_t i = 0; i < v->nbad && ok; i++)
        ok = (i == 0 || mg_buf_append_str(out, ",", error)) &&
             mg_buf_append_str(out, "{\"key\":", error) && json_str(out, v->bad[i].key, error) &&
             mg_buf_append_str(out, ",\"why\":", error) && json_str(out, v->bad[i].why, error) &&
             mg_buf_append_str(out, "}", error);
    return ok && mg_buf_append_str(out, "]}", error);
}

static void
handle_status(const mg_ha_shared_t *s, int64_t now, mg_http_reply_t *reply)
{
    char why[256];
    bool prim = mg_ha__primary_ok(s, now, why, sizeof(why));

    reply->status = 200;
    reply->content_type = "application/json";
    (void)mg_buf_printf(&reply->body, NULL,
                        "{\"node\":\"%s\",\"cluster\":\"%s\",\"state\":\"%s\",\"primary_ok\":%s,"
                        "\"holds_leader\":%s,\"lease_age_ms\":%lld,\"replay_lag_bytes\":%lld,"
                        "\"self\":",
                        s->conf->name, s->conf->cluster, mg_ha_state_name(s->self.state),
                        prim ? "true" : "false", s->holds_leader ? "true" : "false",
                        (long long)(s->lease_ok_ms ? now - s->lease_ok_ms : -1),
                        (long long)(s->in_recovery ? replica_lag(s) : 0));
    (void)mg_ha_node_to_json(&s->self, &reply->body, NULL);
    (void)mg_buf_append_str(&reply->body, ",\"cluster_view\":", NULL);
    (void)mg_ha__view_to_json(&s->view, &reply->body, NULL);
    (void)mg_buf_append_str(&reply->body, "}\n", NULL);
}

/* http_metrics appends what the HTTP server did to keep its bounds (issue 17, item 10). */
static void
http_metrics(const mg_http_stats_t *st, mg_buf_t *b)
{
    (void)mg_buf_printf(
        b, NULL,
        "# HELP pgdaemon_http_connections_accepted_total HTTP connections accepted.\n"
        "# TYPE pgdaemon_http_connections_accepted_total counter\n"
        "pgdaemon_http_connections_accepted_total %llu\n"
        "# HELP pgdaemon_http_connections_open HTTP connections open now.\n"
        "# TYPE pgdaemon_http_connections_open gauge\npgdaemon_http_connections_open %llu\n"
        "# HELP pgdaemon_http_connections_closed_total HTTP connections the daemon closed to "
        "keep its bounds (the oldest beyond the total or per-client limit, or timed out).\n"
        "# TYPE pgdaemon_http_connections_closed_total counter\n"
        "pgdaemon_http_connections_closed_total{reason=\"total_limit\"} %llu\n"
        "pgdaemon_http_connections_closed_total{reason=\"client_limit\"} %llu\n"
        "pgdaemon_http_connections_closed_total{reason=\"timeout\"} %llu\n",
        (unsigned long long)st->accepted, (unsigned long long)st->open,
        (unsigned long long)st->closed_total, (unsigned long long)st->closed_client,
        (unsigned long long)st->closed_timeout);
}

static void
handle_metrics(const mg_ha_shared_t *s, int64_t now, const mg_http_stats_t *http,
               mg_http_reply_t *reply)
{
    char why[256];
    mg_buf_t *b = &reply->body;

    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4";
    (void)mg_buf_printf(b, NULL,
                        "# HELP pgdaemon_up 1 while the daemon runs.\n"
                        "# TYPE pgdaemon_up gauge\npgdaemon_up 1\n"
                        "# HELP pgdaemon_state Node state (1 for the current one).\n"
                        "# TYPE pgdaemon_state gauge\n");
    for (int i = 0; i < MG_HA_STATE_COUNT_; i++)
        (void)mg_buf_printf(b, NULL, "pgdaemon_state{state=\"%s\"} %d\n",
                            mg_ha_state_name((mg_ha_state_t)i), (int)s->self.state == i ? 1 : 0);
    (void)mg_buf_printf(
        b, NULL,
        "# TYPE pgdaemon_primary_ok gauge\npgdaemon_primary_ok %d\n"
        "# TYPE pgdaemon_holds_leader gauge\npgdaemon_holds_leader %d\n"
        "# TYPE pgdaemon_postgres_running gauge\npgdaemon_postgres_running %d\n"
        "# TYPE pgdaemon_postgres_reachable gauge\npgdaemon_postgres_reachable %d\n"
        "# TYPE pgdaemon_postgres_queries_ok gauge\npgdaemon_postgres_queries_ok %d\n"
        "# TYPE pgdaemon_lease_age_seconds gauge\npgdaemon_lease_age_seconds %.3f\n"
        "# TYPE pgdaemon_timeline gauge\npgdaemon_timeline %lld\n"
        "# TYPE pgdaemon_replay_lag_bytes gauge\npgdaemon_replay_lag_bytes %lld\n"
        "# TYPE pgdaemon_transitions_total counter\npgdaemon_transitions_total %llu\n"
        "# TYPE pgdaemon_loops_total counter\npgdaemon_loops_total %llu\n"
        "# TYPE pgdaemon_etcd_errors_total counter\npgdaemon_etcd_errors_total %llu\n"
        "# TYPE pgdaemon_cluster_nodes gauge\npgdaemon_cluster_nodes %zu\n",
        mg_ha__primary_ok(s, now, why, sizeof(why)) ? 1 : 0, s->holds_leader ? 1 : 0,
        s->self.pg_running ? 1 : 0, s->self.pg_reachable ? 1 : 0, s->self.pg_queries_ok ? 1 : 0,
        s->lease_ok_ms ? (double)(now - s->lease_ok_ms) / 1000.0 : -1.0,
        (long long)s->self.timeline, (long long)(s->in_recovery ? replica_lag(s) : 0),
        (unsigned long long)s->transitions, (unsigned long long)s->loops,
        (unsigned long long)s->etcd_errors, s->view.nnodes);
    http_metrics(http, b);
}

/* decide_short decides /primary, /replica and /health (lock held by the caller). */
static void
decide_short(const mg_ha_shared_t *s, const char *path, const mg_http_request_t *req, int64_t now,
             answer_t *a)
{
    char why[256];

    if (strcmp(path, "/primary") == 0) {
        if (mg_ha__primary_ok(s, now, why, sizeof(why)))
            decided(a, 200, s, "primary");
        else
            decided(a, 503, s, why);
    } else if (strcmp(path, "/replica") == 0) {
        const char *q = mg_http_request_query(req, "lag");
        int64_t bound = s->conf->max_lag_bytes, lag = replica_lag(s);

        if (q != NULL && !mg_parse_size_bytes(q, &bound)) {
            decided(a, 400, s, "invalid lag bound: expected bytes or 16MB");
        } else if (s->self.state != MG_HA_STATE_REPLICA || !s->in_recovery) {
            snprintf(why, sizeof(why), "node state is %s", mg_ha_state_name(s->self.state));
            decided(a, 503, s, why);
        } else if (!s->self.pg_queries_ok || !s->self.streaming) {
            decided(a, 503, s, "not streaming from the primary");
        } else if (lag < 0 || lag > bound) {
            snprintf(why, sizeof(why), "replay lag %lld bytes exceeds %lld", (long long)lag,
                     (long long)bound);
            decided(a, 503, s, why);
        } else {
            decided(a, 200, s, "streaming");
        }
    } else if (strcmp(path, "/health") == 0) {
        bool loop_alive = s->loop_ok_ms != 0 && now - s->loop_ok_ms < 3 * s->conf->ttl_ms;

        if (s->self.pg_queries_ok && loop_alive)
            decided(a, 200, s, "ok");
        else
            decided(a, 503, s,
                    !loop_alive            ? "reconcile loop not running"
                    : s->self.pg_reachable ? "connected to Postgres but queries fail"
                    : s->self.pg_error[0]  ? s->self.pg_error
                                           : "cannot connect to Postgres");
    } else {
        decided(a, 404, s, "no such endpoint");
    }
}

/*
 * handle answers one request. The daemon's lock is held only to decide a
 * short answer or to copy a snapshot for /status and /metrics, never while
 * a reply is built or sent (issue 17, item 10): a slow client cannot hold
 * up the loop, and the loop cannot hold up HAProxy's /primary check longer
 * than one copy.
 */
static void
handle(void *userdata, const char *path, const mg_http_request_t *req, mg_http_reply_t *reply)
{
    mg_ha_shared_t *s = userdata;
    int64_t now = mg_ha__now_ms();
    bool big = strcmp(path, "/status") == 0 || strcmp(path, "/metrics") == 0;
    mg_ha_shared_t *snap = big ? malloc(sizeof(*snap)) : NULL;
    answer_t a;

    if (big && snap == NULL) {
        reply->status = 503;
        (void)mg_buf_append_str(&reply->body, "out of memory\n", NULL);
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (big)
        memcpy(snap, s, sizeof(*snap)); /* its mutex is never used */
    else
        decide_short(s, path, req, now, &a);
    pthread_mutex_unlock(&s->lock);
    if (!big)
        reply_answer(reply, &a);
    else if (strcmp(path, "/status") == 0)
        handle_status(snap, now, reply);
    else {
        mg_http_stats_t st;

        mg_http_server_stats(mg_http_request_server(req), &st);
        handle_metrics(snap, now, &st, reply);
    }
    free(snap);
}

struct mg_http_server *
mg_ha__http_start(mg_ha_shared_t *shared, const char *address, uint16_t port, mg_error_t *error)
{
    return mg_http_server_new(address, port, handle, shared, error);
}
