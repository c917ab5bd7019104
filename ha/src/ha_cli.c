/*
 * ha/src/ha_cli.c - the operator commands: `pgdaemon status` (a table of the
 * cluster as etcd holds it), `pgdaemon events`, `pgdaemon switchover` and
 * `pgdaemon override`. The development harness `cluster up | down` is in
 * ha_cluster.c.
 */
#include "ha_internal.h"
#include "ha_options.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

const char *
mg_ha__ystr(yajl_val v)
{
    const char *s = YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;

    return s != NULL ? s : "";
}

bool
mg_ha__store_acquire(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    mg_ha_config_t *conf = ctx->opts; /* every pgdaemon options struct starts with it */
    mg_ha_store_t *st;
    mg_etcd_options_t eo;

    if (!mg_ha__config_finish(conf, ctx->config, error))
        return false;
    if (conf->etcd_endpoints.count == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"etcd.endpoints\" is required");
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
    memset(&eo, 0, sizeof(eo));
    eo.endpoints = (const char *const *)conf->etcd_endpoints.items;
    eo.nendpoints = conf->etcd_endpoints.count;
    eo.username = conf->etcd_username;
    eo.password = conf->etcd_password;
    eo.ca_file = conf->etcd_ca_file;
    eo.cert_file = conf->etcd_cert_file;
    eo.key_file = conf->etcd_key_file;
    eo.timeout_ms = conf->retry_ms;
    st->conf = conf;
    st->etcd = mg_etcd_new(&eo, error);
    if (st->etcd == NULL) {
        free(st);
        return false;
    }
    snprintf(st->prefix, sizeof(st->prefix), "%s/%s/", conf->etcd_prefix, conf->cluster);
    ctx->resources = st;
    return true;
}

void
mg_ha__store_release(mg_cmd_ctx_t *ctx)
{
    mg_ha_store_t *st = ctx->resources;

    if (st != NULL)
        mg_etcd_destroy(st->etcd);
    free(st);
    ctx->resources = NULL;
}

bool
mg_ha__load_view(mg_etcd_t *etcd, const char *prefix, mg_ha_view_t *view, mg_error_t *error)
{
    char nodes[400];
    mg_etcd_range_t r;
    bool ok;

    memset(view, 0, sizeof(*view));
    snprintf(nodes, sizeof(nodes), "%s", prefix);
    /* everything but events/: initialize, leader, status, nodes/ */
    if (!mg_etcd_range(etcd, nodes, true, 0, false, &r, error))
        return false;
    ok = mg_ha_view_load(view, prefix, r.kvs, r.nkvs, error);
    view->revision = r.header.revision;
    mg_etcd_range_cleanup(&r);
    return ok;
}

const mg_ha_replication_t *
mg_ha__replication_of(const mg_ha_view_t *v, const char *name)
{
    const mg_ha_node_t *p = mg_ha_view_find_node(v, v->leader);

    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < p->nreplication; i++)
        if (strcmp(p->replication[i].application_name, name) == 0)
            return &p->replication[i];
    return NULL;
}

bool
mg_ha__has_slot_for(const mg_ha_view_t *v, const char *name)
{
    const mg_ha_node_t *p = mg_ha_view_find_node(v, v->leader);
    char slot[MG_HA_NAME_SIZE];

    if (p == NULL)
        return false;
    mg_ha_slot_name(name, slot, sizeof(slot));
    for (size_t i = 0; i < p->nslots; i++)
        if (strcmp(p->slots[i], slot) == 0)
            return true;
    return false;
}

typedef struct {
    mg_ha_config_t conf;
    bool json;
} status_opts_t;

static const mg_config_option_t status_options[] = {
    MG_HA_NODE_OPTIONS(offsetof(status_opts_t, conf)){
        .name = "json",
        .type = MG_CONFIG_BOOL,
        .offset = offsetof(status_opts_t, json),
        .help = "print the cluster view as one JSON object"},
};

/* status_table prints the cluster as a table. */
static void
status_table(const mg_ha_config_t *conf, const mg_ha_view_t *view)
{
    printf("cluster %s  leader %s  primary %s  term %lld  failover %s  initialized by %s "
           "(system identifier %s)\n\n",
           conf->cluster, view->leader[0] ? view->leader : "-",
           view->status.primary[0] ? view->status.primary : "-", (long long)view->status.term,
           mg_ha_failover_name(view->status.failover), view->init_node[0] ? view->init_node : "-",
           view->init_sysid[0] ? view->init_sysid : "-");
    printf("%-12s %-13s %-8s %-22s %-3s %-12s %-12s %-10s %-10s %-5s %s\n", "NODE", "STATE", "ROLE",
           "HEALTH", "TL", "LSN", "REPLAY", "REPL", "LAG(s)", "SLOT", "ADDRESS");
    for (size_t i = 0; i < view->nnodes; i++) {
        const mg_ha_node_t *n = &view->nodes[i];
        const mg_ha_replication_t *r = mg_ha__replication_of(view, n->name);
        const char *health = n->pg_queries_ok  ? "ok"
                             : n->pg_reachable ? "queries failing"
                             : n->pg_running   ? "cannot connect"
                                               : "postgres stopped";
        char lag[32] = "-";

        if (r != NULL && r->replay_lag_s >= 0)
            snprintf(lag, sizeof(lag), "%.3f", r->replay_lag_s);
        else if (r != NULL)
            snprintf(lag, sizeof(lag), "0");
        printf("%-12s %-13s %-8s %-22s %-3lld %-12s %-12s %-10s %-10s %-5s %s:%lld\n", n->name,
               mg_ha_state_name(n->state), n->role, health, (long long)n->timeline,
               n->current_lsn[0] ? n->current_lsn : (n->receive_lsn[0] ? n->receive_lsn : "-"),
               n->replay_lsn[0] ? n->replay_lsn : "-",
               strcmp(n->name, view->leader) == 0 ? "leader" : (r ? r->state : "-"), lag,
               strcmp(n->name, view->leader) == 0
                   ? "-"
                   : (mg_ha__has_slot_for(view, n->name) ? "yes" : "no"),
               n->host, (long long)n->pg_port);
    }
    for (size_t i = 0; i < view->nbad; i++)
        printf("bad key %s (skipped): %s\n", view->bad[i].key, view->bad[i].why);
}

static int
status_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const status_opts_t *o = ctx->opts;
    mg_ha_store_t *st = ctx->resources;
    mg_ha_view_t *view = calloc(1, sizeof(*view));
    int code = MG_EXIT_FAILURE;

    if (view == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return MG_EXIT_FAILURE;
    }
    if (!mg_ha__load_view(st->etcd, st->prefix, view, error))
        goto done;
    if (o->json) {
        mg_buf_t b;

        mg_buf_init(&b, 8u * 1024 * 1024);
        if (mg_ha__view_to_json(view, &b, error)) {
            printf("%s\n", b.data);
            code = MG_EXIT_OK;
        }
        mg_buf_cleanup(&b);
        goto done;
    }
    status_table(&o->conf, view);
    code = MG_EXIT_OK;
done:
    free(view);
    return code;
}

const mg_cmd_t mg_ha_cmd_status = {
    .name = "status",
    .summary = "show the cluster: nodes, roles, health, lag, slots, leader",
    .usage = "[--json] [--config FILE]",
    .description = "Show the cluster as etcd holds it: every node's state, role, health, "
                   "timeline, LSNs, replication state and lag, slot and address, with the leader, "
                   "primary, term and failover state.",
    .main = status_main,
    .options = status_options,
    .noptions = sizeof(status_options) / sizeof(status_options[0]),
    .opts_size = sizeof(status_opts_t),
    .needs = MG_CMD_NEEDS_STORE,
};

typedef struct {
    mg_ha_config_t conf;
    bool json;
    int64_t limit;
} events_opts_t;

static const mg_config_option_t events_options[] = {
    MG_HA_NODE_OPTIONS(offsetof(events_opts_t, conf)){
        .name = "json",
        .type = MG_CONFIG_BOOL,
        .offset = offsetof(events_opts_t, json),
        .help = "print each event record as one JSON line"},
    {.name = "limit",
     .type = MG_CONFIG_INT,
     .offset = offsetof(events_opts_t, limit),
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "only the N most recent events (default: all)"},
};

/* print_event prints one event record as a line: time, node, event, transition, message. */
static void
print_event(const mg_etcd_kv_t *kv)
{
    const char *pn[] = {"node", NULL}, *pe[] = {"event", NULL}, *pm[] = {"message", NULL},
               *pt[] = {"time_ms", NULL}, *pf[] = {"from", NULL}, *pto[] = {"to", NULL};
    char errbuf[64], when[32], arrow[80] = "";
    yajl_val t, node, ev, msg, tm, from, to;
    time_t secs;
    struct tm utc;

    t = mg_ha_json_shape_ok(kv->value, kv->value_len, MG_HA_JSON_MAX_BYTES, MG_HA_JSON_MAX_DEPTH)
            ? yajl_tree_parse(kv->value, errbuf, sizeof(errbuf))
            : NULL;
    if (t == NULL) {
        printf("(event %s is not a valid event record)\n", kv->key);
        return;
    }
    node = yajl_tree_get(t, pn, yajl_t_string);
    ev = yajl_tree_get(t, pe, yajl_t_string);
    msg = yajl_tree_get(t, pm, yajl_t_string);
    tm = yajl_tree_get(t, pt, yajl_t_number);
    from = yajl_tree_get(t, pf, yajl_t_string);
    to = yajl_tree_get(t, pto, yajl_t_string);
    secs = tm ? (time_t)(YAJL_GET_INTEGER(tm) / 1000) : 0;
    gmtime_r(&secs, &utc);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &utc);
    if (from != NULL && to != NULL)
        snprintf(arrow, sizeof(arrow), "%s -> %s: ", mg_ha__ystr(from), mg_ha__ystr(to));
    printf("%s  %-10s %-18s %s%s\n", when, node ? mg_ha__ystr(node) : "?",
           ev ? mg_ha__ystr(ev) : "?", arrow, msg ? mg_ha__ystr(msg) : "");
    yajl_tree_free(t);
}

static int
events_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const events_opts_t *o = ctx->opts;
    mg_ha_store_t *st = ctx->resources;
    char key[400];
    mg_etcd_range_t r;

    snprintf(key, sizeof(key), "%sevents/", st->prefix);
    if (!mg_etcd_range(st->etcd, key, true, 0, false, &r, error))
        return MG_EXIT_FAILURE;
    for (size_t i = (o->limit > 0 && (size_t)o->limit < r.nkvs) ? r.nkvs - (size_t)o->limit : 0;
         i < r.nkvs; i++) {
        if (o->json)
            printf("%s\n", r.kvs[i].value);
        else
            print_event(&r.kvs[i]);
    }
    mg_etcd_range_cleanup(&r);
    return MG_EXIT_OK;
}

const mg_cmd_t mg_ha_cmd_events = {
    .name = "events",
    .summary = "show the cluster's recent events from etcd",
    .usage = "[--json] [--limit N] [--config FILE]",
    .description = "Show the events the nodes recorded under events/ in etcd, oldest first: "
                   "transitions, failovers, refusals, fences, bad keys.",
    .main = events_main,
    .options = events_options,
    .noptions = sizeof(events_options) / sizeof(events_options[0]),
    .opts_size = sizeof(events_opts_t),
    .needs = MG_CMD_NEEDS_STORE,
};

/* ------------------------------------------------------------------------
 * pgdaemon switchover / pgdaemon override
 * ------------------------------------------------------------------------ */

/*
 * put_request writes request (the JSON of spec) as key <prefix><name> under a
 * new lease of ttl_s seconds, create-only when only_new: the request
 * expires by itself with the lease (issue 16, finding 17). *lease gets the
 * lease (revoke it to withdraw the request).
 */
static bool
put_request(mg_etcd_t *etcd, const char *prefix, const char *name, const mg_ha_spec_t *spec,
            int64_t ttl_s, bool only_new, int64_t *lease, mg_error_t *error)
{
    char key[400];
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_buf_t b;
    bool ok;

    snprintf(key, sizeof(key), "%s%s", prefix, name);
    mg_buf_init(&b, 64 * 1024);
    memset(&res, 0, sizeof(res));
    *lease = 0;
    ok = txn != NULL && mg_ha_spec_to_json(spec, &b, error) &&
         mg_etcd_lease_grant(etcd, ttl_s, lease, NULL, error) &&
         (!only_new ||
          mg_etcd_txn_compare_int(txn, key, MG_ETCD_TARGET_CREATE, MG_ETCD_CMP_EQUAL, 0, error)) &&
         mg_etcd_txn_put(txn, true, key, b.data, b.len, *lease, error) &&
         mg_etcd_txn_commit(etcd, txn, &res, error);
    if (ok && !res.succeeded)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                          "another %s request is pending (it expires by itself)", name);
    if (!ok && *lease != 0) {
        mg_error_t ignored;

        (void)mg_etcd_lease_revoke(etcd, *lease, &ignored);
        *lease = 0;
    }
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    mg_buf_cleanup(&b);
    return ok;
}

typedef struct {
    mg_ha_config_t conf;
    char *to;
    int64_t timeout_s;
    bool json;
} switchover_opts_t;

static const mg_config_option_t switchover_options[] = {
    MG_HA_NODE_OPTIONS(offsetof(switchover_opts_t, conf)){
        .name = "to",
        .type = MG_CONFIG_STRING,
        .offset = offsetof(switchover_opts_t, to),
        .metavar = "NODE",
        .help = "the node to promote (default: the most advanced healthy replica)"},
    {.name = "timeout",
     .type = MG_CONFIG_INT,
     .offset = offsetof(switchover_opts_t, timeout_s),
     .default_value = "120",
     .min = 1,
     .max = 86400,
     .metavar = "SECONDS",
     .help = "give up (and withdraw the request) after this long"},
    {.name = "json",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(switchover_opts_t, json),
     .help = "print the result as one JSON object"},
};

/*
 * switchover_wait waits until the switchover id is done: a new primary
 * answers queries (true), the old primary stays (false, its reason), or the
 * deadline passes. v holds the last view.
 */
static bool
switchover_wait(mg_ha_store_t *st, int64_t id, const char *old_primary, int64_t deadline,
                mg_ha_view_t *v, mg_error_t *error)
{
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};

        if (mg_ha__load_view(st->etcd, st->prefix, v, error) && v->status.switchover_id >= id &&
            v->status.failover == MG_HA_FAILOVER_STABLE) {
            const mg_ha_node_t *p = mg_ha_view_find_node(v, v->leader);

            if (strcmp(v->status.primary, old_primary) == 0 &&
                (v->status.writes_stopped_ms == 0 || v->status.writes_resumed_ms == 0 ||
                 v->status.writes_resumed_ms < v->status.writes_stopped_ms))
                return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC, "%s",
                                    v->status.last_failover_reason);
            if (p != NULL && p->state == MG_HA_STATE_PRIMARY && p->pg_queries_ok &&
                strcmp(v->leader, old_primary) != 0)
                return true;
        }
        if (mg_ha__now_ms() > deadline)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "switchover %lld not finished in time (failover state %s)",
                                (long long)id, mg_ha_failover_name(v->status.failover));
        nanosleep(&ts, NULL);
    }
}

static int
switchover_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const switchover_opts_t *o = ctx->opts;
    mg_ha_store_t *st = ctx->resources;
    mg_ha_view_t *v = calloc(1, sizeof(*v));
    mg_ha_spec_t spec;
    char old_primary[MG_HA_NAME_SIZE];
    int64_t id, t0 = mg_ha__wall_ms(), lease = 0;
    int code = MG_EXIT_FAILURE;

    if (v == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return MG_EXIT_FAILURE;
    }
    if (!mg_ha__load_view(st->etcd, st->prefix, v, error))
        goto done;
    if (v->leader[0] == '\0' || v->status.failover != MG_HA_FAILOVER_STABLE) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                     "cluster is not stable (leader \"%s\", failover %s)", v->leader,
                     mg_ha_failover_name(v->status.failover));
        goto done;
    }
    if (o->to != NULL && strcmp(o->to, v->leader) == 0) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "node %s is already the primary", o->to);
        goto done;
    }
    snprintf(old_primary, sizeof(old_primary), "%s", v->leader);
    memset(&spec, 0, sizeof(spec));
    id = v->status.switchover_id + 1;
    spec.switchover_id = id;
    snprintf(spec.switchover_to, sizeof(spec.switchover_to), "%s", o->to ? o->to : "");
    /* a request this command does not see through expires with its lease: never fires later */
    if (!put_request(st->etcd, st->prefix, "switchover", &spec, o->timeout_s, true, &lease,
                     error) ||
        !switchover_wait(st, id, old_primary, mg_ha__now_ms() + o->timeout_s * 1000, v, error))
        goto done;
    if (o->json)
        printf("{\"old_primary\":\"%s\",\"new_primary\":\"%s\",\"term\":%lld,"
               "\"write_unavailable_ms\":%lld,\"elapsed_ms\":%lld}\n",
               old_primary, v->leader, (long long)v->status.term,
               (long long)(v->status.writes_resumed_ms - v->status.writes_stopped_ms),
               (long long)(mg_ha__wall_ms() - t0));
    else
        printf("switchover %s -> %s done (term %lld): writes were unavailable for %lld ms\n",
               old_primary, v->leader, (long long)v->status.term,
               (long long)(v->status.writes_resumed_ms - v->status.writes_stopped_ms));
    code = MG_EXIT_OK;
done:
    if (lease != 0) {
        mg_error_t ignored;

        (void)mg_etcd_lease_revoke(st->etcd, lease, &ignored); /* the request goes with it */
    }
    free(v);
    return code;
}

const mg_cmd_t mg_ha_cmd_switchover = {
    .name = "switchover",
    .summary = "move the primary role to another node with no data loss",
    .usage = "[--to NODE] [--timeout SECONDS] [--json] --config FILE",
    .description = "Move the primary role to NODE (default: the most advanced healthy replica) "
                   "with no data loss, wait until the cluster is stable again and report the "
                   "write-unavailability window. The request expires with the command.",
    .main = switchover_main,
    .options = switchover_options,
    .noptions = sizeof(switchover_options) / sizeof(switchover_options[0]),
    .opts_size = sizeof(switchover_opts_t),
    .needs = MG_CMD_NEEDS_STORE,
};

static const char *const on_off[] = {"off", "on", NULL};

typedef struct {
    mg_ha_config_t conf;
    int allow_data_loss; /* index in on_off */
    int64_t for_ms;
} override_opts_t;

static const mg_config_option_t override_options[] = {
    MG_HA_NODE_OPTIONS(offsetof(override_opts_t, conf)){
        .name = "allow_data_loss",
        .type = MG_CONFIG_ENUM,
        .offset = offsetof(override_opts_t, allow_data_loss),
        .choices = on_off,
        .required = true,
        .metavar = "on|off",
        .help = "on: a failover may promote a replica past failover_max_lag (commits only the old "
                "primary had are lost); off: withdraw that"},
    {.name = "for",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(override_opts_t, for_ms),
     .default_value = "10m",
     .min = 1000,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "how long the override lasts (it is a key under a lease of this length)"},
};

static int
override_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const override_opts_t *o = ctx->opts;
    mg_ha_store_t *st = ctx->resources;
    mg_ha_spec_t spec;
    char key[400];
    int64_t lease = 0, secs = (o->for_ms + 999) / 1000;

    memset(&spec, 0, sizeof(spec));
    spec.allow_data_loss = true;
    snprintf(key, sizeof(key), "%soverride", st->prefix);
    if (o->allow_data_loss == 1) {
        if (!put_request(st->etcd, st->prefix, "override", &spec, secs, false, &lease, error))
            return MG_EXIT_FAILURE;
        printf("allow_data_loss = on for %llds: a failover may promote a replica past the lag "
               "limit (data loss)\n",
               (long long)secs);
        return MG_EXIT_OK;
    }
    if (!mg_etcd_delete(st->etcd, key, false, NULL, error))
        return MG_EXIT_FAILURE;
    printf("allow_data_loss = off: failover only within the lag limit\n");
    return MG_EXIT_OK;
}

const mg_cmd_t mg_ha_cmd_override = {
    .name = "override",
    .summary = "allow (or forbid) a failover past the lag limit",
    .usage = "--allow-data-loss on|off [--for DURATION] --config FILE",
    .description = "Allow (on) or forbid again (off) an automatic failover to a replica that is "
                   "more than failover_max_lag behind the lost primary: commits only the old "
                   "primary had are lost. The override is a key in etcd under a lease: it ends by "
                   "itself after DURATION (default 10m, at most 24h).",
    .main = override_main,
    .options = override_options,
    .noptions = sizeof(override_options) / sizeof(override_options[0]),
    .opts_size = sizeof(override_opts_t),
    .needs = MG_CMD_NEEDS_STORE,
};
