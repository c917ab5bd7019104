/*
 * ha/src/ha_cli.c - the operator commands: `pgdaemon status` (a table of the
 * cluster as etcd holds it), `pgdaemon events`, and `pgdaemon cluster up |
 * down`, which start and stop a whole local cluster (etcd + N nodes +
 * HAProxy on free loopback ports) for development, tests and demos.
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

#define STATE_FILE "cluster.json"

static const char *
ystr(yajl_val v)
{
    const char *s = YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;

    return s != NULL ? s : "";
}

/* take_flag removes a boolean flag from argv; returns whether it was there. */
static bool
take_flag(int *argc, char **argv, const char *flag)
{
    for (int i = 1; i < *argc; i++)
        if (strcmp(argv[i], flag) == 0) {
            memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(char *));
            (*argc)--;
            return true;
        }
    return false;
}

/* take_value removes "--flag VALUE" or "--flag=VALUE"; returns VALUE or NULL. */
static char *
take_value(int *argc, char **argv, const char *flag)
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

static bool
load_view(mg_etcd_t *etcd, const char *prefix, mg_ha_view_t *view, mg_error_t *error)
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

static const mg_ha_replication_t *
replication_of(const mg_ha_view_t *v, const char *name)
{
    const mg_ha_node_t *p = mg_ha_view_find_node(v, v->leader);

    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < p->nreplication; i++)
        if (strcmp(p->replication[i].application_name, name) == 0)
            return &p->replication[i];
    return NULL;
}

static bool
has_slot_for(const mg_ha_view_t *v, const char *name)
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
    bool json = take_flag(&argc, argv, "--json");
    int code = MG_EXIT_OK;

    if (take_flag(&argc, argv, "--help")) {
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
    if (!load_view(etcd, prefix, view, &error)) {
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
        const mg_ha_replication_t *r = replication_of(view, n->name);
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
               strcmp(n->name, view->leader) == 0 ? "-"
                                                  : (has_slot_for(view, n->name) ? "yes" : "no"),
               n->host, (long long)n->pg_port);
    }
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
    bool json = take_flag(&argc, argv, "--json");
    char *limit_text = take_value(&argc, argv, "--limit");
    long limit = limit_text ? strtol(limit_text, NULL, 10) : 0;
    int code = MG_EXIT_OK;

    if (take_flag(&argc, argv, "--help")) {
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
        t = yajl_tree_parse(r.kvs[i].value, errbuf, sizeof(errbuf));
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
                    snprintf(arrow, sizeof(arrow), "%s -> %s: ", ystr(from), ystr(to));
                printf("%s  %-10s %-18s %s%s\n", when, node ? ystr(node) : "?", ev ? ystr(ev) : "?",
                       arrow, msg ? ystr(msg) : "");
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
 * cluster up / down
 * ------------------------------------------------------------------------ */

typedef struct {
    char role[16];
    char name[MG_HA_NAME_SIZE];
    pid_t pid;
    uint64_t starttime;
} proc_rec_t;

typedef struct {
    char dir[PATH_MAX];
    char cluster[64];
    int64_t etcd_port, etcd_peer_port, write_port, read_port;
    int nnodes;
    struct {
        char name[MG_HA_NAME_SIZE];
        int64_t pg_port, http_port, udp_port;
        char data_dir[PATH_MAX];
    } nodes[MG_HA_MAX_NODES];
    proc_rec_t procs[MG_HA_MAX_NODES + 2];
    int nprocs;
    char superuser_password[64];
    char replication_password[64];
    char cluster_secret[72];
    char ttl[16], loop_wait[16], retry_timeout[16]; /* durations, e.g. "10s" */
    bool synchronous_mode;
} cluster_t;

static bool
find_program(const char *name, char *out, size_t outsz)
{
    const char *path = getenv("PATH");
    char buf[4096];
    char *save = NULL, *dir;

    if (strchr(name, '/') != NULL) {
        snprintf(out, outsz, "%s", name);
        return access(out, X_OK) == 0;
    }
    snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/bin:/bin");
    for (dir = strtok_r(buf, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, outsz, "%s/%s", dir, name);
        if (access(out, X_OK) == 0)
            return true;
    }
    return false;
}

/* pick_ports binds n loopback TCP sockets to port 0 at once, so the ports differ. */
static bool
pick_ports(int64_t *ports, int n, mg_error_t *error)
{
    int fds[128];
    bool ok = true;
    int i;

    for (i = 0; i < n && i < 128; i++) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);

        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0) {
            ok = mg_error_set_errno(error, errno, "could not pick a free loopback port");
            if (fds[i] >= 0)
                close(fds[i]);
            break;
        }
        ports[i] = ntohs(sa.sin_port);
    }
    while (i-- > 0)
        close(fds[i]);
    return ok;
}

static void
random_hex(char *out, size_t bytes)
{
    unsigned char raw[32];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    size_t n = bytes > sizeof(raw) ? sizeof(raw) : bytes;

    if (fd < 0 || read(fd, raw, n) != (ssize_t)n) {
        for (size_t i = 0; i < n; i++)
            raw[i] = (unsigned char)(rand() & 0xff);
    }
    if (fd >= 0)
        close(fd);
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", raw[i]);
}

static bool
save_state(const cluster_t *c, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *text;
    size_t len;
    char path[PATH_MAX + 32];
    bool ok;

#define S(k, v)                                                    \
    do {                                                           \
        yajl_gen_string(g, (const unsigned char *)(k), strlen(k)); \
        yajl_gen_string(g, (const unsigned char *)(v), strlen(v)); \
    } while (0)
#define I(k, v)                                                    \
    do {                                                           \
        yajl_gen_string(g, (const unsigned char *)(k), strlen(k)); \
        yajl_gen_integer(g, (long long)(v));                       \
    } while (0)
    yajl_gen_config(g, yajl_gen_beautify, 1);
    yajl_gen_map_open(g);
    S("dir", c->dir);
    S("cluster", c->cluster);
    {
        char ep[64];

        snprintf(ep, sizeof(ep), "http://127.0.0.1:%lld", (long long)c->etcd_port);
        S("etcd_endpoint", ep);
    }
    I("write_port", c->write_port);
    I("read_port", c->read_port);
    S("superuser", "postgres");
    S("superuser_password", c->superuser_password);
    yajl_gen_string(g, (const unsigned char *)"nodes", 5);
    yajl_gen_array_open(g);
    for (int i = 0; i < c->nnodes; i++) {
        char cfg[PATH_MAX + 64];

        yajl_gen_map_open(g);
        S("name", c->nodes[i].name);
        I("pg_port", c->nodes[i].pg_port);
        I("http_port", c->nodes[i].http_port);
        I("udp_port", c->nodes[i].udp_port);
        S("data_dir", c->nodes[i].data_dir);
        snprintf(cfg, sizeof(cfg), "%s/%s.json", c->dir, c->nodes[i].name);
        S("config", cfg);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_string(g, (const unsigned char *)"processes", 9);
    yajl_gen_array_open(g);
    for (int i = 0; i < c->nprocs; i++) {
        yajl_gen_map_open(g);
        S("role", c->procs[i].role);
        S("name", c->procs[i].name);
        I("pid", c->procs[i].pid);
        I("starttime", (long long)c->procs[i].starttime);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
#undef S
#undef I
    yajl_gen_get_buf(g, &text, &len);
    snprintf(path, sizeof(path), "%s/%s", c->dir, STATE_FILE);
    ok = mg_ha__write_file(path, (const char *)text, len, 0600, NULL, error);
    yajl_gen_free(g);
    return ok;
}

static bool
start_proc(cluster_t *c, const char *role, const char *name, char *const argv[],
           const char *log_path, mg_error_t *error)
{
    pid_t pid = mg_ha__spawn(NULL, argv, NULL, log_path, error);
    proc_rec_t *p;

    if (pid < 0)
        return false;
    p = &c->procs[c->nprocs++];
    snprintf(p->role, sizeof(p->role), "%s", role);
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->pid = pid;
    p->starttime = mg_ha__proc_starttime(pid);
    return save_state(c, error);
}

static bool
write_node_config(const cluster_t *c, int i, const char *bin_dir, mg_strlist_t *params,
                  mg_error_t *error)
{
    mg_buf_t b;
    char path[PATH_MAX + 64];
    bool ok;

    mg_buf_init(&b, 64 * 1024);
    ok = mg_buf_printf(&b, error,
                       "{\n  \"name\": \"%s\",\n  \"address\": \"127.0.0.1\",\n"
                       "  \"data_dir\": \"%s\",\n  \"bin_dir\": \"%s\",\n"
                       "  \"pg_port\": %lld,\n  \"http_port\": %lld,\n  \"udp_port\": %lld,\n"
                       "  \"cluster\": \"%s\",\n"
                       "  \"etcd\": {\"endpoints\": [\"http://127.0.0.1:%lld\"]},\n"
                       "  \"ttl\": \"%s\",\n  \"loop_wait\": \"%s\",\n"
                       "  \"retry_timeout\": \"%s\",\n  \"max_nodes\": %d,\n"
                       "  \"cluster_secret\": \"%s\",\n  \"synchronous_mode\": %s,\n"
                       "  \"postgres\": {\n    \"superuser_password\": \"%s\",\n"
                       "    \"replication_password\": \"%s\",\n    \"parameters\": [",
                       c->nodes[i].name, c->nodes[i].data_dir, bin_dir,
                       (long long)c->nodes[i].pg_port, (long long)c->nodes[i].http_port,
                       (long long)c->nodes[i].udp_port, c->cluster, (long long)c->etcd_port, c->ttl,
                       c->loop_wait, c->retry_timeout, c->nnodes > 5 ? c->nnodes : 5,
                       c->cluster_secret, c->synchronous_mode ? "true" : "false",
                       c->superuser_password, c->replication_password);
    for (size_t k = 0; k < params->count && ok; k++)
        ok = mg_buf_printf(&b, error, "%s\"%s\"", k ? ", " : "", params->items[k]);
    ok = ok && mg_buf_printf(&b, error, "]\n  }\n}\n");
    snprintf(path, sizeof(path), "%s/%s.json", c->dir, c->nodes[i].name);
    ok = ok && mg_ha__write_file(path, b.data, b.len, 0600, NULL, error);
    mg_buf_cleanup(&b);
    return ok;
}

/* cluster_ready checks etcd: one primary, n-1 streaming replicas on their slots. */
static bool
cluster_ready(mg_etcd_t *etcd, const char *prefix, int n, char *why, size_t whysz)
{
    mg_ha_view_t *v = calloc(1, sizeof(*v));
    mg_error_t error;
    const mg_ha_node_t *p;
    int replicas = 0;
    bool ok = false;

    if (v == NULL)
        return false;
    if (!load_view(etcd, prefix, v, &error)) {
        snprintf(why, whysz, "%s", error.message);
        goto done;
    }
    p = mg_ha_view_find_node(v, v->leader);
    if (p == NULL || p->state != MG_HA_STATE_PRIMARY || !p->pg_queries_ok) {
        snprintf(why, whysz, "no healthy primary yet (%zu of %d nodes reported)", v->nnodes, n);
        goto done;
    }
    for (size_t i = 0; i < v->nnodes; i++) {
        const mg_ha_replication_t *r = replication_of(v, v->nodes[i].name);

        if (v->nodes[i].state == MG_HA_STATE_REPLICA && v->nodes[i].streaming && r != NULL &&
            strcmp(r->state, "streaming") == 0 && has_slot_for(v, v->nodes[i].name))
            replicas++;
    }
    if (replicas != n - 1) {
        snprintf(why, whysz, "%d of %d replicas streaming", replicas, n - 1);
        goto done;
    }
    ok = true;
done:
    free(v);
    return ok;
}

static void
cluster_usage(FILE *stream)
{
    fprintf(stream,
            "usage: pgdaemon cluster up --nodes N --dir /ABSOLUTE/DIR [--bin-dir DIR] "
            "[--timeout SECONDS]\n"
            "                           [--pg-parameter NAME=VALUE ...] [--ttl SECONDS] "
            "[--loop-wait-ms MS]\n"
            "                           [--retry-timeout-ms MS] [--synchronous-mode]\n"
            "       pgdaemon cluster down --dir DIR\n\n"
            "Starts (up) or stops (down) a local cluster on free loopback ports: etcd, N nodes\n"
            "(pgdaemon + PostgreSQL) and HAProxy; DIR/cluster.json records what runs.\n");
}

static int
cluster_up(int argc, char **argv)
{
    char *nodes_text = take_value(&argc, argv, "--nodes");
    char *dir = take_value(&argc, argv, "--dir");
    char *bin_dir = take_value(&argc, argv, "--bin-dir");
    char *timeout_text = take_value(&argc, argv, "--timeout");
    char *ttl_text = take_value(&argc, argv, "--ttl"); /* seconds */
    char *loop_text = take_value(&argc, argv, "--loop-wait-ms");
    char *retry_text = take_value(&argc, argv, "--retry-timeout-ms");
    bool sync_mode = take_flag(&argc, argv, "--synchronous-mode");
    bool help = take_flag(&argc, argv, "--help");
    mg_strlist_t params = {NULL, 0};
    char *param_items[32];
    char etcd_bin[PATH_MAX], haproxy_bin[PATH_MAX], self_bin[PATH_MAX];
    cluster_t *c = calloc(1, sizeof(*c));
    mg_error_t error;
    int64_t ports[4 + 3 * MG_HA_MAX_NODES];
    int64_t timeout_ms = 90000;
    char path[PATH_MAX + 64], log[PATH_MAX + 64], prefix[128];
    mg_etcd_t *etcd = NULL;
    int code = MG_EXIT_FAILURE;
    ssize_t n;
    char *v;

    while ((v = take_value(&argc, argv, "--pg-parameter")) != NULL && params.count < 32)
        param_items[params.count++] = v;
    params.items = param_items;
    if (c == NULL)
        return MG_EXIT_FAILURE;
    if (help) {
        cluster_usage(stdout);
        free(c);
        return MG_EXIT_OK;
    }
    if (dir == NULL || dir[0] != '/' || argc > 1) {
        cluster_usage(stderr);
        free(c);
        return MG_EXIT_USAGE;
    }
    c->nnodes = nodes_text ? atoi(nodes_text) : 3;
    if (c->nnodes < 1 || c->nnodes > 9) {
        fprintf(stderr, "pgdaemon cluster up: invalid value for --nodes: expected 1 to 9\n");
        free(c);
        return MG_EXIT_USAGE;
    }
    if (timeout_text != NULL)
        timeout_ms = atoll(timeout_text) * 1000;
    if (!find_program(getenv("MG_ETCD_BINARY") ? getenv("MG_ETCD_BINARY") : "etcd", etcd_bin,
                      sizeof(etcd_bin)) ||
        !find_program(getenv("MG_HAPROXY_BINARY") ? getenv("MG_HAPROXY_BINARY") : "haproxy",
                      haproxy_bin, sizeof(haproxy_bin))) {
        fprintf(stderr, "pgdaemon cluster up: etcd and haproxy must be on PATH\n");
        free(c);
        return MG_EXIT_USAGE;
    }
    n = readlink("/proc/self/exe", self_bin, sizeof(self_bin) - 1);
    if (n <= 0) {
        free(c);
        return MG_EXIT_FAILURE;
    }
    self_bin[n] = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "pgdaemon cluster up: could not create \"%s\": %s\n", dir, strerror(errno));
        free(c);
        return MG_EXIT_FAILURE;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
    if (access(path, F_OK) == 0) {
        fprintf(stderr,
                "pgdaemon cluster up: \"%s\" exists: run \"pgdaemon cluster down --dir %s\" "
                "first\n",
                path, dir);
        free(c);
        return MG_EXIT_USAGE;
    }
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    snprintf(c->cluster, sizeof(c->cluster), "local");
    random_hex(c->superuser_password, 16);
    random_hex(c->replication_password, 16);
    random_hex(c->cluster_secret, 32);
    snprintf(c->ttl, sizeof(c->ttl), "%ss", ttl_text ? ttl_text : "10");
    snprintf(c->loop_wait, sizeof(c->loop_wait), "%sms", loop_text ? loop_text : "1000");
    snprintf(c->retry_timeout, sizeof(c->retry_timeout), "%sms", retry_text ? retry_text : "3000");
    c->synchronous_mode = sync_mode;
    if (!pick_ports(ports, 4 + 3 * c->nnodes, &error))
        goto fail;
    c->etcd_port = ports[0];
    c->etcd_peer_port = ports[1];
    c->write_port = ports[2];
    c->read_port = ports[3];
    for (int i = 0; i < c->nnodes; i++) {
        snprintf(c->nodes[i].name, sizeof(c->nodes[i].name), "node%d", i + 1);
        c->nodes[i].pg_port = ports[4 + 3 * i];
        c->nodes[i].http_port = ports[5 + 3 * i];
        c->nodes[i].udp_port = ports[6 + 3 * i];
        /* the name again, not c->nodes[i].name: gcc -O0 sees an overlap in one struct */
        snprintf(c->nodes[i].data_dir, sizeof(c->nodes[i].data_dir), "%s/node%d/data", dir, i + 1);
    }
    /* etcd */
    {
        char client[64], peer[64], initial[128], data[PATH_MAX + 16];
        char *eargv[] = {etcd_bin, "--name",
                         "etcd",   "--data-dir",
                         data,     "--listen-client-urls",
                         client,   "--advertise-client-urls",
                         client,   "--listen-peer-urls",
                         peer,     "--initial-advertise-peer-urls",
                         peer,     "--initial-cluster",
                         initial,  NULL};
        const char *endpoint = client;
        mg_etcd_options_t eo = {&endpoint, 1, NULL, NULL, NULL, NULL, NULL, 2000};
        char ver[32];
        int64_t deadline = mg_ha__now_ms() + 30000;

        snprintf(client, sizeof(client), "http://127.0.0.1:%lld", (long long)c->etcd_port);
        snprintf(peer, sizeof(peer), "http://127.0.0.1:%lld", (long long)c->etcd_peer_port);
        snprintf(initial, sizeof(initial), "etcd=%s", peer);
        snprintf(data, sizeof(data), "%s/etcd-data", dir);
        snprintf(log, sizeof(log), "%s/etcd.log", dir);
        if (!start_proc(c, "etcd", "etcd", eargv, log, &error))
            goto fail;
        etcd = mg_etcd_new(&eo, &error);
        if (etcd == NULL)
            goto fail;
        while (!mg_etcd_version(etcd, ver, sizeof(ver), &error)) {
            struct timespec ts = {0, 100 * 1000000L};

            if (mg_ha__now_ms() > deadline)
                goto fail;
            nanosleep(&ts, NULL);
        }
    }
    /* nodes */
    for (int i = 0; i < c->nnodes; i++) {
        char cfg[PATH_MAX + 64], nodedir[PATH_MAX + 64];
        char *nargv[] = {self_bin, "run", "--config", cfg, NULL};

        snprintf(nodedir, sizeof(nodedir), "%s/%s", dir, c->nodes[i].name);
        if (mkdir(nodedir, 0755) != 0 && errno != EEXIST) {
            mg_error_set_errno(&error, errno, "could not create \"%s\"", nodedir);
            goto fail;
        }
        if (!write_node_config(c, i, bin_dir ? bin_dir : "/usr/lib/postgresql/15/bin", &params,
                               &error))
            goto fail;
        snprintf(cfg, sizeof(cfg), "%s/%s.json", dir, c->nodes[i].name);
        snprintf(log, sizeof(log), "%s/pgdaemon.log", nodedir);
        if (!start_proc(c, "pgdaemon", c->nodes[i].name, nargv, log, &error))
            goto fail;
    }
    /* haproxy */
    {
        mg_ha_haproxy_server_t servers[MG_HA_MAX_NODES];
        mg_buf_t b;
        char cfgpath[PATH_MAX + 64], sock[PATH_MAX + 64];
        char *hargv[] = {haproxy_bin, "-db", "-f", cfgpath, NULL};
        bool ok;

        for (int i = 0; i < c->nnodes; i++) {
            servers[i].name = c->nodes[i].name;
            servers[i].host = "127.0.0.1";
            servers[i].pg_port = c->nodes[i].pg_port;
            servers[i].http_port = c->nodes[i].http_port;
        }
        snprintf(cfgpath, sizeof(cfgpath), "%s/haproxy.cfg", dir);
        snprintf(sock, sizeof(sock), "%s/haproxy.sock", dir);
        mg_buf_init(&b, 1024 * 1024);
        ok = mg_ha_haproxy_render(servers, (size_t)c->nnodes, "127.0.0.1", c->write_port,
                                  c->read_port, sock, &b, &error) &&
             mg_ha__write_file(cfgpath, b.data, b.len, 0644, NULL, &error);
        mg_buf_cleanup(&b);
        snprintf(log, sizeof(log), "%s/haproxy.log", dir);
        if (!ok || !start_proc(c, "haproxy", "haproxy", hargv, log, &error))
            goto fail;
    }
    /* wait until healthy */
    snprintf(prefix, sizeof(prefix), "/pgdaemon/%s/", c->cluster);
    {
        int64_t deadline = mg_ha__now_ms() + timeout_ms;
        char why[256] = "";

        while (!cluster_ready(etcd, prefix, c->nnodes, why, sizeof(why))) {
            struct timespec ts = {0, 250 * 1000000L};

            for (int i = 0; i < c->nprocs; i++)
                if (!mg_ha__proc_alive(c->procs[i].pid, c->procs[i].starttime)) {
                    mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                 "%s %s exited; see its log in %s", c->procs[i].role,
                                 c->procs[i].name, dir);
                    goto fail;
                }
            if (mg_ha__now_ms() > deadline) {
                mg_error_set(&error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                             "cluster not healthy within %llds: %s", (long long)(timeout_ms / 1000),
                             why);
                goto fail;
            }
            nanosleep(&ts, NULL);
        }
    }
    printf("cluster \"%s\" is up: 1 primary, %d replica%s\n"
           "  write:  postgresql://postgres@127.0.0.1:%lld/postgres  (HAProxy, GET /primary)\n"
           "  read:   postgresql://postgres@127.0.0.1:%lld/postgres  (HAProxy, GET /replica)\n"
           "  etcd:   http://127.0.0.1:%lld\n",
           c->cluster, c->nnodes - 1, c->nnodes == 2 ? "" : "s", (long long)c->write_port,
           (long long)c->read_port, (long long)c->etcd_port);
    for (int i = 0; i < c->nnodes; i++)
        printf("  %s:  postgres 127.0.0.1:%lld  http://127.0.0.1:%lld/status  config %s/%s.json\n",
               c->nodes[i].name, (long long)c->nodes[i].pg_port, (long long)c->nodes[i].http_port,
               dir, c->nodes[i].name);
    printf("  password of \"postgres\": in %s/%s (mode 0600)\n"
           "  status: pgdaemon status --config %s/node1.json\n"
           "  stop:   pgdaemon cluster down --dir %s\n",
           dir, STATE_FILE, dir, dir);
    code = MG_EXIT_OK;
    goto done;
fail:
    fprintf(stderr,
            "pgdaemon cluster up: %s\n(processes started so far are recorded in %s/%s; "
            "stop them with \"pgdaemon cluster down --dir %s\")\n",
            error.message, dir, STATE_FILE, dir);
done:
    mg_etcd_destroy(etcd);
    free(c);
    return code;
}

static pid_t
read_pidfile(const char *data_dir)
{
    char path[PATH_MAX + 32];
    FILE *f;
    long pid = 0;

    snprintf(path, sizeof(path), "%s/postmaster.pid", data_dir);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

/*
 * find_daemons_by_config finds `pgdaemon run --config DIR/<node>.json`
 * processes (a node restarted by hand after `cluster up`).
 */
static int
find_daemons_by_config(const char *dir, pid_t *pids, uint64_t *starts, int max)
{
    DIR *proc = opendir("/proc");
    struct dirent *e;
    size_t dlen = strlen(dir);
    int n = 0;

    if (proc == NULL)
        return 0;
    while ((e = readdir(proc)) != NULL && n < max) {
        char path[300], buf[8192];
        pid_t pid = (pid_t)atoi(e->d_name);
        ssize_t len;
        int fd;
        bool is_run = false, is_ours = false;

        if (pid <= 0 || pid == getpid())
            continue;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        for (char *a = buf; a < buf + len; a += strlen(a) + 1) {
            if (strcmp(a, "run") == 0)
                is_run = true;
            if (strncmp(a, dir, dlen) == 0 && a[dlen] == '/' && strstr(a, ".json") != NULL &&
                strchr(a + dlen + 1, '/') == NULL)
                is_ours = true;
        }
        if (is_run && is_ours && strstr(buf, "pgdaemon") != NULL) {
            pids[n] = pid;
            starts[n++] = mg_ha__proc_starttime(pid);
        }
    }
    closedir(proc);
    return n;
}

static bool
wait_all_gone(const pid_t *pids, const uint64_t *starts, int n, int64_t timeout_ms)
{
    int64_t deadline = mg_ha__now_ms() + timeout_ms;

    for (;;) {
        bool any = false;

        for (int i = 0; i < n; i++)
            if (pids[i] > 0 && mg_ha__proc_alive(pids[i], starts[i]))
                any = true;
        if (!any)
            return true;
        if (mg_ha__now_ms() > deadline)
            return false;
        {
            struct timespec ts = {0, 50 * 1000000L};

            nanosleep(&ts, NULL);
        }
    }
}

static int
cluster_down(int argc, char **argv)
{
    bool help = take_flag(&argc, argv, "--help");
    char *dir = take_value(&argc, argv, "--dir");
    char path[PATH_MAX + 32], errbuf[128];
    FILE *f;
    char *text;
    long len;
    yajl_val t, procs, nodes;
    pid_t daemons[MG_HA_MAX_NODES + 2], others[4], pgs[MG_HA_MAX_NODES];
    uint64_t dstart[MG_HA_MAX_NODES + 2], ostart[4], pgstart[MG_HA_MAX_NODES];
    int nd = 0, no = 0, np = 0;
    bool clean = true;

    if (dir == NULL) {
        cluster_usage(help ? stdout : stderr);
        return help ? MG_EXIT_OK : MG_EXIT_USAGE;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "pgdaemon cluster down: could not open \"%s\": %s\n", path,
                strerror(errno));
        return MG_EXIT_USAGE;
    }
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)len + 1);
    if (text == NULL || fread(text, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        free(text);
        return MG_EXIT_FAILURE;
    }
    fclose(f);
    t = yajl_tree_parse(text, errbuf, sizeof(errbuf));
    free(text);
    if (t == NULL) {
        fprintf(stderr, "pgdaemon cluster down: \"%s\" is not valid JSON\n", path);
        return MG_EXIT_FAILURE;
    }
    {
        const char *pp[] = {"processes", NULL}, *pn[] = {"nodes", NULL};

        procs = yajl_tree_get(t, pp, yajl_t_array);
        nodes = yajl_tree_get(t, pn, yajl_t_array);
    }
    for (size_t i = 0; procs && i < procs->u.array.len; i++) {
        yajl_val p = procs->u.array.values[i];
        const char *kr[] = {"role", NULL}, *kp[] = {"pid", NULL}, *ks[] = {"starttime", NULL};
        yajl_val role = yajl_tree_get(p, kr, yajl_t_string);
        yajl_val pid = yajl_tree_get(p, kp, yajl_t_number);
        yajl_val st = yajl_tree_get(p, ks, yajl_t_number);

        if (role == NULL || pid == NULL || st == NULL)
            continue;
        if (strcmp(ystr(role), "pgdaemon") == 0 && nd < MG_HA_MAX_NODES + 2) {
            daemons[nd] = (pid_t)YAJL_GET_INTEGER(pid);
            dstart[nd++] = (uint64_t)YAJL_GET_INTEGER(st);
        } else if (no < 4) {
            others[no] = (pid_t)YAJL_GET_INTEGER(pid);
            ostart[no++] = (uint64_t)YAJL_GET_INTEGER(st);
        }
    }
    for (size_t i = 0; nodes && i < nodes->u.array.len && np < MG_HA_MAX_NODES; i++) {
        const char *kd[] = {"data_dir", NULL};
        yajl_val dd = yajl_tree_get(nodes->u.array.values[i], kd, yajl_t_string);
        pid_t pid = dd ? read_pidfile(ystr(dd)) : 0;

        if (pid > 0 && mg_ha__proc_alive(pid, 0)) {
            pgs[np] = pid;
            pgstart[np++] = mg_ha__proc_starttime(pid);
        }
    }
    yajl_tree_free(t);
    nd += find_daemons_by_config(dir, daemons + nd, dstart + nd, MG_HA_MAX_NODES + 2 - nd);
    /* 1. the daemons stop their Postgres (fast shutdown) and revoke their leases */
    for (int i = 0; i < nd; i++)
        if (mg_ha__proc_alive(daemons[i], dstart[i]))
            kill(daemons[i], SIGTERM);
    if (!wait_all_gone(daemons, dstart, nd, 90000)) {
        for (int i = 0; i < nd; i++)
            if (mg_ha__proc_alive(daemons[i], dstart[i]))
                kill(daemons[i], SIGKILL);
        clean = false;
    }
    /* 2. any Postgres left (a daemon killed or on_stop=leave) */
    for (int i = 0; i < np; i++)
        if (mg_ha__proc_alive(pgs[i], pgstart[i]))
            kill(pgs[i], SIGINT);
    if (!wait_all_gone(pgs, pgstart, np, 30000))
        for (int i = 0; i < np; i++)
            if (mg_ha__proc_alive(pgs[i], pgstart[i]))
                kill(pgs[i], SIGQUIT);
    /* 3. HAProxy and etcd */
    for (int i = 0; i < no; i++)
        if (mg_ha__proc_alive(others[i], ostart[i]))
            kill(others[i], SIGTERM);
    if (!wait_all_gone(others, ostart, no, 10000))
        for (int i = 0; i < no; i++)
            if (mg_ha__proc_alive(others[i], ostart[i]))
                kill(others[i], SIGKILL);
    if (!wait_all_gone(others, ostart, no, 10000) || !wait_all_gone(pgs, pgstart, np, 10000)) {
        fprintf(stderr, "pgdaemon cluster down: some processes did not stop\n");
        return MG_EXIT_FAILURE;
    }
    unlink(path);
    printf("cluster in %s is down%s\n", dir, clean ? "" : " (some daemons had to be killed)");
    return MG_EXIT_OK;
}

int
mg_ha_cmd_cluster(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "up") == 0)
        return cluster_up(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "down") == 0)
        return cluster_down(argc - 1, argv + 1);
    bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    cluster_usage(help ? stdout : stderr);
    return help ? MG_EXIT_OK : MG_EXIT_USAGE;
}

/* ------------------------------------------------------------------------
 * pgdaemon switchover / pgdaemon override
 * ------------------------------------------------------------------------ */

/* put_spec writes spec with a CAS on the mod_revision the view saw (0 = create). */
static bool
put_spec(mg_etcd_t *etcd, const char *prefix, const mg_ha_spec_t *spec, int64_t mod_revision,
         mg_error_t *error)
{
    char key[400];
    mg_etcd_txn_t *txn = mg_etcd_txn_new();
    mg_etcd_txn_result_t res;
    mg_buf_t b;
    bool ok;

    snprintf(key, sizeof(key), "%sspec", prefix);
    mg_buf_init(&b, 64 * 1024);
    memset(&res, 0, sizeof(res));
    ok = txn != NULL && mg_ha_spec_to_json(spec, &b, error) &&
         mg_etcd_txn_compare_int(txn, key, MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL, mod_revision,
                                 error) &&
         mg_etcd_txn_put(txn, true, key, b.data, b.len, 0, error) &&
         mg_etcd_txn_commit(etcd, txn, &res, error);
    if (ok && !res.succeeded)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER,
                          "spec changed concurrently; try again");
    mg_etcd_txn_result_cleanup(&res);
    mg_etcd_txn_destroy(txn);
    mg_buf_cleanup(&b);
    return ok;
}

int
mg_ha_cmd_switchover(int argc, char **argv)
{
    char *to = take_value(&argc, argv, "--to");
    char *wait_text = take_value(&argc, argv, "--timeout");
    bool json = take_flag(&argc, argv, "--json");
    mg_ha_config_t *conf = NULL;
    mg_etcd_t *etcd = NULL;
    mg_ha_view_t *v = calloc(1, sizeof(*v));
    mg_ha_spec_t spec;
    mg_error_t error;
    char prefix[300], old_primary[MG_HA_NAME_SIZE];
    int64_t id, deadline, t0 = mg_ha__wall_ms();
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
    deadline = mg_ha__now_ms() + (wait_text ? atoll(wait_text) * 1000 : 120000);
    if (!load_view(etcd, prefix, v, &error))
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
    spec = v->spec;
    id = (spec.switchover_id > v->status.switchover_id ? spec.switchover_id
                                                       : v->status.switchover_id) +
         1;
    spec.switchover_id = id;
    snprintf(spec.switchover_to, sizeof(spec.switchover_to), "%s", to ? to : "");
    if (!put_spec(etcd, prefix, &spec, v->spec.mod_revision, &error))
        goto fail;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};

        if (load_view(etcd, prefix, v, &error) && v->status.switchover_id >= id &&
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
    mg_etcd_destroy(etcd);
    mg_ha_config_destroy(conf);
    free(v);
    return code;
}

int
mg_ha_cmd_override(int argc, char **argv)
{
    char *value = take_value(&argc, argv, "--allow-data-loss");
    mg_ha_config_t *conf = NULL;
    mg_etcd_t *etcd = NULL;
    mg_ha_view_t *v = calloc(1, sizeof(*v));
    mg_ha_spec_t spec;
    mg_error_t error;
    char prefix[300];
    int code = MG_EXIT_FAILURE;

    if (v == NULL)
        return MG_EXIT_FAILURE;
    if (take_flag(&argc, argv, "--help")) {
        printf("usage: pgdaemon override --allow-data-loss on|off --config FILE\n\n"
               "Allows (on) or forbids again (off) an automatic failover to a replica that is\n"
               "more than failover_max_lag behind the lost primary: commits only the old\n"
               "primary had are lost. Recorded in the cluster's spec in etcd.\n");
        free(v);
        return MG_EXIT_OK;
    }
    if (value == NULL || (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)) {
        fprintf(stderr, "usage: pgdaemon override --allow-data-loss on|off --config FILE\n");
        free(v);
        return MG_EXIT_USAGE;
    }
    if (!open_cluster(argc, argv, &conf, &etcd, prefix, sizeof(prefix), &error)) {
        fprintf(stderr, "pgdaemon override: %s\n", error.message);
        free(v);
        return MG_EXIT_USAGE;
    }
    if (load_view(etcd, prefix, v, &error)) {
        spec = v->spec;
        spec.allow_data_loss = strcmp(value, "on") == 0;
        if (put_spec(etcd, prefix, &spec, v->spec.mod_revision, &error)) {
            printf("allow_data_loss = %s: %s\n", value,
                   spec.allow_data_loss
                       ? "a failover may promote a replica past the lag limit (data loss)"
                       : "failover only within the lag limit");
            code = MG_EXIT_OK;
        }
    }
    if (code != MG_EXIT_OK)
        fprintf(stderr, "pgdaemon override: %s\n", error.message);
    mg_etcd_destroy(etcd);
    mg_ha_config_destroy(conf);
    free(v);
    return code;
}
