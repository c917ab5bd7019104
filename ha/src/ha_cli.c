/*
 * ha/src/ha_cli.c - the operator commands: `pgdaemon status` (a table of the
 * cluster as etcd holds it), `pgdaemon events`, `pgdaemon switchover` and
 * `pgdaemon override`. The development harness `cluster up | down` is in
 * ha_cluster.c.
 */
#include "ha_internal.h"

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

/* mg_ha__take_flag removes a boolean flag from argv; returns whether it was there. */
bool
mg_ha__take_flag(int *argc, char **argv, const char *flag)
{
    for (int i = 1; i < *argc; i++)
        if (strcmp(argv[i], flag) == 0) {
            memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(char *));
            (*argc)--;
            return true;
        }
    return false;
}

/* mg_ha__take_value removes "--flag VALUE" or "--flag=VALUE"; returns VALUE or NULL. */
char *
mg_ha__take_value(int *argc, char **argv, const char *flag)
{
    size_t n = strlen(flag);

    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], flag) == 0 && i + 1 < *argc) {
            char *v = argv[i + 1];

            memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 1) * sizeof(char *));
            *argc -= 2;
            return v;
        }
        if (strncmp(argv[i], flag, n) == 0 && argv[i][n] == '=') {
            char *v = argv[i] + n + 1;

            memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(char *));
            (*argc)--;
            return v;
        }
    }
    return NULL;
}

/* open_cluster loads the config (name and data_dir not needed) and an etcd client. */
static bool
open_cluster(int argc, char **argv, mg_ha_config_t **conf, mg_etcd_t **etcd, char *prefix,
             size_t prefixsz, mg_error_t *error)
{
    mg_etcd_options_t eo;
    int first = 0;

    if (!mg_ha_config_load(argc, argv, NULL, conf, &first, error))
        return false;
    if ((*conf)->etcd_endpoints.count == 0) {
        mg_ha_config_destroy(*conf);
        *conf = NULL;
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"etcd.endpoints\" is required");
    }
    memset(&eo, 0, sizeof(eo));
    eo.endpoints = (const char *const *)(*conf)->etcd_endpoints.items;
    eo.nendpoints = (*conf)->etcd_endpoints.count;
    eo.username = (*conf)->etcd_username;
    eo.password = (*conf)->etcd_password;
    eo.ca_file = (*conf)->etcd_ca_file;
    eo.cert_file = (*conf)->etcd_cert_file;
    eo.key_file = (*conf)->etcd_key_file;
    eo.timeout_ms = (*conf)->retry_ms;
    *etcd = mg_etcd_new(&eo, error);
    if (*etcd == NULL) {
        mg_ha_config_destroy(*conf);
        *conf = NULL;
        return false;
    }
    snprintf(prefix, prefixsz, "%s/%s/", (*conf)->etcd_prefix, (*conf)->cluster);
    return true;
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

int
mg_ha_cmd_status(int argc, char **argv)
{
    mg_ha_config_t *conf = NULL;
    mg_etcd_t *etcd = NULL;
    mg_error_t error;
    char prefix[256];
    mg_ha_view_t *view = calloc(1, sizeof(*view));
    bool json = mg_ha__take_flag(&argc, argv, "--json");
    int code = MG_EXIT_OK;

    if (mg_ha__take_flag(&argc, argv, "--help")) {
        printf("usage: pgdaemon status [--json] [--config FILE] [--etcd-endpoints URL] "
               "[--cluster NAME]\n");
        free(view);
        return MG_EXIT_OK;
    }
    if (view == NULL || !open_cluster(argc, argv, &conf, &etcd, prefix, sizeof(prefix), &error)) {
        fprintf(stderr, "pgdaemon status: %s\n", view ? error.message : "out of memory");
        free(view);
        return MG_EXIT_USAGE;
    }
    if (!mg_ha__load_view(etcd, prefix, view, &error)) {
        fprintf(stderr, "pgdaemon status: %s\n", error.message);
        code = MG_EXIT_FAILURE;
        goto done;
    }
    if (json) {
        mg_buf_t b;

        mg_buf_init(&b, 8u * 1024 * 1024);
        if (mg_ha__view_to_json(view, &b, &error))
            printf("%s\n", b.data);
        else
            code = MG_EXIT_FAILURE;
        mg_buf_cleanup(&b);
        goto done;
    }
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
done:
    mg_etcd_destroy(etcd);
    mg_ha_config_destroy(conf);
    free(view);
    return code;
}

int
mg_ha_cmd_events(int argc, char **argv)
{
    mg_ha_config_t *conf = NULL;
    mg_etcd_t *etcd = NULL;
    mg_error_t error;
    char prefix[256], key[400];
    mg_etcd_range_t r;
    bool json = mg_ha__take_flag(&argc, argv, "--json");
    char *limit_text = mg_ha__take_value(&argc, argv, "--limit");
    long limit = limit_text ? strtol(limit_text, NULL, 10) : 0;
    int code = MG_EXIT_OK;

    if (mg_ha__take_flag(&argc, argv, "--help")) {
        printf("usage: pgdaemon events [--json] [--limit N] [--config FILE] "
               "[--etcd-endpoints URL] [--cluster NAME]\n");
        return MG_EXIT_OK;
    }
    if (limit_text != NULL && limit <= 0) {
        fprintf(stderr, "pgdaemon events: invalid value for --limit: \"%s\"\n", limit_text);
        return MG_EXIT_USAGE;
    }
    if (!open_cluster(argc, argv, &conf, &etcd, prefix, sizeof(prefix), &error)) {
        fprintf(stderr, "pgdaemon events: %s\n", error.message);
        return MG_EXIT_USAGE;
    }
    snprintf(key, sizeof(key), "%sevents/", prefix);
    if (!mg_etcd_range(etcd, key, true, 0, false, &r, &error)) {
        fprintf(stderr, "pgdaemon events: %s\n", error.message);
        code = MG_EXIT_FAILURE;
        goto done;
    }
    for (size_t i = (limit > 0 && (size_t)limit < r.nkvs) ? r.nkvs - (size_t)limit : 0; i < r.nkvs;
         i++) {
        yajl_val t;
        char errbuf[64];

        if (json) {
            printf("%s\n", r.kvs[i].value);
            continue;
        }
        t = mg_ha_json_shape_ok(r.kvs[i].value, r.kvs[i].value_len, MG_HA_JSON_MAX_BYTES,
                                MG_HA_JSON_MAX_DEPTH)
                ? yajl_tree_parse(r.kvs[i].value, errbuf, sizeof(errbuf))
                : NULL;
        if (t == NULL)
            printf("(event %s is not a valid event record)\n", r.kvs[i].key);
        if (t != NULL) {
            const char *pn[] = {"node", NULL}, *pe[] = {"event", NULL}, *pm[] = {"message", NULL},
                       *pt[] = {"time_ms", NULL};
            yajl_val node = yajl_tree_get(t, pn, yajl_t_string);
            yajl_val ev = yajl_tree_get(t, pe, yajl_t_string);
            yajl_val msg = yajl_tree_get(t, pm, yajl_t_string);
            yajl_val tm = yajl_tree_get(t, pt, yajl_t_number);
            time_t secs = tm ? (time_t)(YAJL_GET_INTEGER(tm) / 1000) : 0;
            struct tm utc;
            char when[32];

            gmtime_r(&secs, &utc);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &utc);
            {
                const char *pf[] = {"from", NULL}, *pto[] = {"to", NULL};
                yajl_val from = yajl_tree_get(t, pf, yajl_t_string);
                yajl_val to = yajl_tree_get(t, pto, yajl_t_string);
                char arrow[80] = "";

                if (from != NULL && to != NULL)
                    snprintf(arrow, sizeof(arrow), "%s -> %s: ", mg_ha__ystr(from),
                             mg_ha__ystr(to));
                printf("%s  %-10s %-18s %s%s\n", when, node ? mg_ha__ystr(node) : "?",
                       ev ? mg_ha__ystr(ev) : "?", arrow, msg ? mg_ha__ystr(msg) : "");
            }
            yajl_tree_free(t);
        }
    }
    mg_etcd_range_cleanup(&r);
done:
    mg_etcd_destroy(etcd);
    mg_ha_config_destroy(conf);
    return code;
}

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

int
mg_ha_cmd_switchover(int argc, char **argv)
{
    char *to = mg_ha__take_value(&argc, argv, "--to");
    char *wait_text = mg_ha__take_value(&argc, argv, "--timeout");
    bool json = mg_ha__take_flag(&argc, argv, "--json");
    mg_ha_config_t *conf = NULL;
    mg_etcd_t *etcd = NULL;
    mg_ha_view_t *v = calloc(1, sizeof(*v));
    mg_ha_spec_t spec;
    mg_error_t error;
    char prefix[300], old_primary[MG_HA_NAME_SIZE];
    int64_t id, deadline, t0 = mg_ha__wall_ms(), timeout_s, lease = 0;
    int code = MG_EXIT_FAILURE;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: pgdaemon switchover [--to NODE] [--timeout SECONDS] [--json] "
                   "--config FILE\n\nMoves the primary role to NODE (default: the most advanced "
                   "healthy replica)\nwith no data loss, waits until the cluster is stable again "
                   "and reports the\nwrite-unavailability window.\n");
            free(v);
            return MG_EXIT_OK;
        }
    if (v == NULL)
        return MG_EXIT_FAILURE;
    if (!open_cluster(argc, argv, &conf, &etcd, prefix, sizeof(prefix), &error)) {
        fprintf(stderr, "pgdaemon switchover: %s\n", error.message);
        free(v);
        return MG_EXIT_USAGE;
    }
    if (wait_text != NULL && (atoll(wait_text) < 1 || atoll(wait_text) > 86400)) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "invalid value for option \"--timeout\": \"%s\" (expected 1 to 86400 "
                     "seconds)",
                     wait_text);
        goto fail;
    }
    timeout_s = wait_text ? atoll(wait_text) : 120;
    deadline = mg_ha__now_ms() + timeout_s * 1000;
    if (!mg_ha__load_view(etcd, prefix, v, &error))
        goto fail;
    if (v->leader[0] == '\0' || v->status.failover != MG_HA_FAILOVER_STABLE) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                     "cluster is not stable (leader \"%s\", failover %s)", v->leader,
                     mg_ha_failover_name(v->status.failover));
        goto fail;
    }
    if (to != NULL && strcmp(to, v->leader) == 0) {
        mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "node %s is already the primary", to);
        goto fail;
    }
    snprintf(old_primary, sizeof(old_primary), "%s", v->leader);
    memset(&spec, 0, sizeof(spec));
    id = v->status.switchover_id + 1;
    spec.switchover_id = id;
    snprintf(spec.switchover_to, sizeof(spec.switchover_to), "%s", to ? to : "");
    /* a request this command does not see through expires with its lease: never fires later */
    if (!put_request(etcd, prefix, "switchover", &spec, timeout_s, true, &lease, &error))
        goto fail;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};

        if (mg_ha__load_view(etcd, prefix, v, &error) && v->status.switchover_id >= id &&
            v->status.failover == MG_HA_FAILOVER_STABLE) {
            const mg_ha_node_t *p = mg_ha_view_find_node(v, v->leader);

            if (strcmp(v->status.primary, old_primary) == 0 &&
                (v->status.writes_stopped_ms == 0 || v->status.writes_resumed_ms == 0 ||
                 v->status.writes_resumed_ms < v->status.writes_stopped_ms)) {
                mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC, "%s",
                             v->status.last_failover_reason);
                goto fail;
            }
            if (p != NULL && p->state == MG_HA_STATE_PRIMARY && p->pg_queries_ok &&
                strcmp(v->leader, old_primary) != 0)
                break;
        }
        if (mg_ha__now_ms() > deadline) {
            mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                         "switchover %lld not finished in time (failover state %s)", (long long)id,
                         mg_ha_failover_name(v->status.failover));
            goto fail;
        }
        nanosleep(&ts, NULL);
    }
    if (json)
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
    goto done;
fail:
    fprintf(stderr, "pgdaemon switchover: %s\n", error.message);
done:
    if (lease != 0) {
        mg_error_t ignored;

        (void)mg_etcd_lease_revoke(etcd, lease, &ignored); /* the request goes with it */
    }
    mg_etcd_destroy(etcd);
    mg_ha_config_destroy(conf);
    free(v);
    return code;
}

int
mg_ha_cmd_override(int argc, char **argv)
{
    char *value = mg_ha__take_value(&argc, argv, "--allow-data-loss");
    char *for_text = mg_ha__take_value(&argc, argv, "--for");
    mg_ha_config_t *conf = NULL;
    mg_etcd_t *etcd = NULL;
    mg_ha_spec_t spec;
    mg_error_t error;
    char prefix[300], key[400];
    int64_t for_ms = 600000, lease = 0;
    int code = MG_EXIT_FAILURE;

    if (mg_ha__take_flag(&argc, argv, "--help")) {
        printf("usage: pgdaemon override --allow-data-loss on|off [--for DURATION] --config "
               "FILE\n\n"
               "Allows (on) or forbids again (off) an automatic failover to a replica that is\n"
               "more than failover_max_lag behind the lost primary: commits only the old\n"
               "primary had are lost. The override is a key in etcd under a lease: it ends by\n"
               "itself after DURATION (default 10m, at most 24h).\n");
        return MG_EXIT_OK;
    }
    if (value == NULL || (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) ||
        (for_text != NULL &&
         (!mg_parse_duration_ms(for_text, &for_ms) || for_ms < 1000 || for_ms > 86400000))) {
        fprintf(stderr, "usage: pgdaemon override --allow-data-loss on|off [--for DURATION, 1s to "
                        "24h] --config FILE\n");
        return MG_EXIT_USAGE;
    }
    if (!open_cluster(argc, argv, &conf, &etcd, prefix, sizeof(prefix), &error)) {
        fprintf(stderr, "pgdaemon override: %s\n", error.message);
        return MG_EXIT_USAGE;
    }
    memset(&spec, 0, sizeof(spec));
    spec.allow_data_loss = true;
    snprintf(key, sizeof(key), "%soverride", prefix);
    if (strcmp(value, "on") == 0 && put_request(etcd, prefix, "override", &spec,
                                                (for_ms + 999) / 1000, false, &lease, &error)) {
        printf("allow_data_loss = on for %llds: a failover may promote a replica past the lag "
               "limit (data loss)\n",
               (long long)((for_ms + 999) / 1000));
        code = MG_EXIT_OK;
    } else if (strcmp(value, "off") == 0 && mg_etcd_delete(etcd, key, false, NULL, &error)) {
        printf("allow_data_loss = off: failover only within the lag limit\n");
        code = MG_EXIT_OK;
    }
    if (code != MG_EXIT_OK)
        fprintf(stderr, "pgdaemon override: %s\n", error.message);
    mg_etcd_destroy(etcd);
    mg_ha_config_destroy(conf);
    return code;
}
