/*
 * ha/src/ha_cluster.c - `pgdaemon cluster up | down`: start and stop a whole
 * local cluster (etcd + N nodes + HAProxy on free loopback ports) for
 * development, tests and demos. DIR/cluster.json records what runs.
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
write_node_config(const cluster_t *c, int i, const char *bin_dir, const mg_strlist_t *params,
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
    if (!mg_ha__load_view(etcd, prefix, v, &error)) {
        snprintf(why, whysz, "%s", error.message);
        goto done;
    }
    p = mg_ha_view_find_node(v, v->leader);
    if (p == NULL || p->state != MG_HA_STATE_PRIMARY || !p->pg_queries_ok) {
        snprintf(why, whysz, "no healthy primary yet (%zu of %d nodes reported)", v->nnodes, n);
        goto done;
    }
    for (size_t i = 0; i < v->nnodes; i++) {
        const mg_ha_replication_t *r = mg_ha__replication_of(v, v->nodes[i].name);

        if (v->nodes[i].state == MG_HA_STATE_REPLICA && v->nodes[i].streaming && r != NULL &&
            strcmp(r->state, "streaming") == 0 && mg_ha__has_slot_for(v, v->nodes[i].name))
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

/* the options of `cluster up` */
typedef struct {
    int64_t nodes;
    char *dir;
    char *bin_dir;
    int64_t timeout_s;
    int64_t ttl_s;
    int64_t loop_wait_ms;
    int64_t retry_timeout_ms;
    bool synchronous_mode;
    mg_strlist_t params;
} up_options_t;

#define UP_MAX_PARAMS 32

static const mg_config_option_t up_options[] = {
    {.name = "nodes",
     .type = MG_CONFIG_INT,
     .offset = offsetof(up_options_t, nodes),
     .default_value = "3",
     .min = 1,
     .max = 9,
     .metavar = "N",
     .help = "number of nodes (pgdaemon + PostgreSQL)"},
    {.name = "dir",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(up_options_t, dir),
     .required = true,
     .metavar = "/ABSOLUTE/DIR",
     .help = "directory for the data, configs, logs and cluster.json (created)"},
    {.name = "bin_dir",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(up_options_t, bin_dir),
     .default_value = "/usr/lib/postgresql/15/bin",
     .metavar = "DIR",
     .help = "PostgreSQL programs"},
    {.name = "timeout",
     .type = MG_CONFIG_INT,
     .offset = offsetof(up_options_t, timeout_s),
     .default_value = "90",
     .min = 1,
     .max = 86400,
     .metavar = "SECONDS",
     .help = "how long to wait for one primary and N-1 streaming replicas"},
    {.name = "pg_parameter",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(up_options_t, params),
     .metavar = "NAME=VALUE",
     .help = "a postgresql.conf setting of every node (repeatable, at most 32)"},
    {.name = "ttl",
     .type = MG_CONFIG_INT,
     .offset = offsetof(up_options_t, ttl_s),
     .default_value = "10",
     .min = 1,
     .max = 3600,
     .metavar = "SECONDS",
     .help = "lease ttl of the nodes"},
    {.name = "loop_wait_ms",
     .type = MG_CONFIG_INT,
     .offset = offsetof(up_options_t, loop_wait_ms),
     .default_value = "1000",
     .min = 10,
     .max = 3600000,
     .metavar = "MS",
     .help = "loop interval of the nodes"},
    {.name = "retry_timeout_ms",
     .type = MG_CONFIG_INT,
     .offset = offsetof(up_options_t, retry_timeout_ms),
     .default_value = "3000",
     .min = 10,
     .max = 3600000,
     .metavar = "MS",
     .help = "etcd/Postgres attempt timeout of the nodes (loop + 2 x retry <= ttl)"},
    {.name = "synchronous_mode",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(up_options_t, synchronous_mode),
     .help = "run the cluster in synchronous mode"},
};

/* up_check checks what one option alone cannot: DIR, the timing rule, the parameters. */
static bool
up_check(const void *opts, mg_error_t *error)
{
    const up_options_t *o = opts;

    if (o->dir == NULL || o->dir[0] != '/')
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "option \"--dir\" is required and must be an absolute path");
    if (o->loop_wait_ms + 2 * o->retry_timeout_ms > o->ttl_s * 1000)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "options \"--loop-wait-ms\" + 2 x \"--retry-timeout-ms\" (%lld ms) "
                            "must not exceed \"--ttl\" (%lld s)",
                            (long long)(o->loop_wait_ms + 2 * o->retry_timeout_ms),
                            (long long)o->ttl_s);
    if (o->params.count > UP_MAX_PARAMS)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_LIMIT,
                            "too many values for option \"--pg-parameter\" (at most %d)",
                            UP_MAX_PARAMS);
    for (size_t i = 0; i < o->params.count; i++)
        if (strchr(o->params.items[i], '=') == NULL || o->params.items[i][0] == '=')
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid value for option \"--pg-parameter\": \"%s\" "
                                "(expected NAME=VALUE)",
                                o->params.items[i]);
    return true;
}

/* up_prepare checks the programs and DIR, then fills c: secrets, ports, node names. */
static bool
up_prepare(const up_options_t *o, cluster_t *c, char *etcd_bin, char *haproxy_bin, char *self_bin,
           size_t binsz, mg_error_t *error)
{
    int64_t ports[4 + 3 * MG_HA_MAX_NODES];
    char path[PATH_MAX + 64];
    ssize_t n;

    if (!find_program(getenv("MG_ETCD_BINARY") ? getenv("MG_ETCD_BINARY") : "etcd", etcd_bin,
                      binsz) ||
        !find_program(getenv("MG_HAPROXY_BINARY") ? getenv("MG_HAPROXY_BINARY") : "haproxy",
                      haproxy_bin, binsz))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                            "etcd and haproxy must be on PATH");
    n = readlink("/proc/self/exe", self_bin, binsz - 1);
    if (n <= 0)
        return mg_error_set_errno(error, errno, "could not read /proc/self/exe");
    self_bin[n] = '\0';
    if (mkdir(o->dir, 0755) != 0 && errno != EEXIST)
        return mg_error_set_errno(error, errno, "could not create \"%s\"", o->dir);
    snprintf(path, sizeof(path), "%s/%s", o->dir, STATE_FILE);
    if (access(path, F_OK) == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "\"%s\" exists: run \"pgdaemon cluster down --dir %s\" first", path,
                            o->dir);
    snprintf(c->dir, sizeof(c->dir), "%s", o->dir);
    snprintf(c->cluster, sizeof(c->cluster), "local");
    random_hex(c->superuser_password, 16);
    random_hex(c->replication_password, 16);
    random_hex(c->cluster_secret, 32);
    snprintf(c->ttl, sizeof(c->ttl), "%llds", (long long)o->ttl_s);
    snprintf(c->loop_wait, sizeof(c->loop_wait), "%lldms", (long long)o->loop_wait_ms);
    snprintf(c->retry_timeout, sizeof(c->retry_timeout), "%lldms", (long long)o->retry_timeout_ms);
    c->synchronous_mode = o->synchronous_mode;
    c->nnodes = (int)o->nodes;
    if (!pick_ports(ports, 4 + 3 * c->nnodes, error))
        return false;
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
        snprintf(c->nodes[i].data_dir, sizeof(c->nodes[i].data_dir), "%s/node%d/data", o->dir,
                 i + 1);
    }
    return true;
}

/* up_start_etcd starts etcd and waits (30 s) until it answers; *etcd gets a client. */
static bool
up_start_etcd(cluster_t *c, const char *etcd_bin, mg_etcd_t **etcd, mg_error_t *error)
{
    char client[64], peer[64], initial[128], data[PATH_MAX + 16], log[PATH_MAX + 64];
    char *eargv[] = {(char *)etcd_bin,
                     "--name",
                     "etcd",
                     "--data-dir",
                     data,
                     "--listen-client-urls",
                     client,
                     "--advertise-client-urls",
                     client,
                     "--listen-peer-urls",
                     peer,
                     "--initial-advertise-peer-urls",
                     peer,
                     "--initial-cluster",
                     initial,
                     NULL};
    const char *endpoint = client;
    mg_etcd_options_t eo = {&endpoint, 1, NULL, NULL, NULL, NULL, NULL, 2000};
    char ver[32];
    int64_t deadline = mg_ha__now_ms() + 30000;

    snprintf(client, sizeof(client), "http://127.0.0.1:%lld", (long long)c->etcd_port);
    snprintf(peer, sizeof(peer), "http://127.0.0.1:%lld", (long long)c->etcd_peer_port);
    snprintf(initial, sizeof(initial), "etcd=%s", peer);
    snprintf(data, sizeof(data), "%s/etcd-data", c->dir);
    snprintf(log, sizeof(log), "%s/etcd.log", c->dir);
    if (!start_proc(c, "etcd", "etcd", eargv, log, error))
        return false;
    *etcd = mg_etcd_new(&eo, error);
    if (*etcd == NULL)
        return false;
    while (!mg_etcd_version(*etcd, ver, sizeof(ver), error)) {
        struct timespec ts = {0, 100 * 1000000L};

        if (mg_ha__now_ms() > deadline)
            return false;
        nanosleep(&ts, NULL);
    }
    return true;
}

/* up_start_nodes writes every node's config and starts its `pgdaemon run`. */
static bool
up_start_nodes(cluster_t *c, const up_options_t *o, const char *self_bin, mg_error_t *error)
{

    for (int i = 0; i < c->nnodes; i++) {
        char cfg[PATH_MAX + 64], nodedir[PATH_MAX + 64], log[PATH_MAX + 96];
        char *nargv[] = {(char *)self_bin, "run", "--config", cfg, NULL};

        snprintf(nodedir, sizeof(nodedir), "%s/%s", c->dir, c->nodes[i].name);
        if (mkdir(nodedir, 0755) != 0 && errno != EEXIST)
            return mg_error_set_errno(error, errno, "could not create \"%s\"", nodedir);
        if (!write_node_config(c, i, o->bin_dir, &o->params, error))
            return false;
        snprintf(cfg, sizeof(cfg), "%s/%s.json", c->dir, c->nodes[i].name);
        snprintf(log, sizeof(log), "%s/pgdaemon.log", nodedir);
        if (!start_proc(c, "pgdaemon", c->nodes[i].name, nargv, log, error))
            return false;
    }
    return true;
}

/* up_start_haproxy writes haproxy.cfg (write and read frontends) and starts HAProxy. */
static bool
up_start_haproxy(cluster_t *c, const char *haproxy_bin, mg_error_t *error)
{
    mg_ha_haproxy_server_t servers[MG_HA_MAX_NODES];
    mg_buf_t b;
    char cfgpath[PATH_MAX + 64], sock[PATH_MAX + 64], log[PATH_MAX + 64];
    char *hargv[] = {(char *)haproxy_bin, "-db", "-f", cfgpath, NULL};
    bool ok;

    for (int i = 0; i < c->nnodes; i++) {
        servers[i].name = c->nodes[i].name;
        servers[i].host = "127.0.0.1";
        servers[i].pg_port = c->nodes[i].pg_port;
        servers[i].http_port = c->nodes[i].http_port;
    }
    snprintf(cfgpath, sizeof(cfgpath), "%s/haproxy.cfg", c->dir);
    snprintf(sock, sizeof(sock), "%s/haproxy.sock", c->dir);
    mg_buf_init(&b, 1024 * 1024);
    ok = mg_ha_haproxy_render(servers, (size_t)c->nnodes, "127.0.0.1", c->write_port, c->read_port,
                              sock, &b, error) &&
         mg_ha__write_file(cfgpath, b.data, b.len, 0644, NULL, error);
    mg_buf_cleanup(&b);
    snprintf(log, sizeof(log), "%s/haproxy.log", c->dir);
    return ok && start_proc(c, "haproxy", "haproxy", hargv, log, error);
}

/* up_wait_ready waits until etcd reports one primary and n-1 streaming replicas. */
static bool
up_wait_ready(cluster_t *c, mg_etcd_t *etcd, int64_t timeout_ms, mg_error_t *error)
{
    int64_t deadline = mg_ha__now_ms() + timeout_ms;
    char prefix[128], why[256] = "";

    snprintf(prefix, sizeof(prefix), "/pgdaemon/%s/", c->cluster);
    while (!cluster_ready(etcd, prefix, c->nnodes, why, sizeof(why))) {
        struct timespec ts = {0, 250 * 1000000L};

        for (int i = 0; i < c->nprocs; i++)
            if (!mg_ha__proc_alive(c->procs[i].pid, c->procs[i].starttime))
                return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                    "%s %s exited; see its log in %s", c->procs[i].role,
                                    c->procs[i].name, c->dir);
        if (mg_ha__now_ms() > deadline)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "cluster not healthy within %llds: %s",
                                (long long)(timeout_ms / 1000), why);
        nanosleep(&ts, NULL);
    }
    return true;
}

static void
up_print(const cluster_t *c)
{
    printf("cluster \"%s\" is up: 1 primary, %d replica%s\n"
           "  write:  postgresql://postgres@127.0.0.1:%lld/postgres  (HAProxy, GET /primary)\n"
           "  read:   postgresql://postgres@127.0.0.1:%lld/postgres  (HAProxy, GET /replica)\n"
           "  etcd:   http://127.0.0.1:%lld\n",
           c->cluster, c->nnodes - 1, c->nnodes == 2 ? "" : "s", (long long)c->write_port,
           (long long)c->read_port, (long long)c->etcd_port);
    for (int i = 0; i < c->nnodes; i++)
        printf("  %s:  postgres 127.0.0.1:%lld  http://127.0.0.1:%lld/status  config %s/%s.json\n",
               c->nodes[i].name, (long long)c->nodes[i].pg_port, (long long)c->nodes[i].http_port,
               c->dir, c->nodes[i].name);
    printf("  password of \"postgres\": in %s/%s (mode 0600)\n"
           "  status: pgdaemon status --config %s/node1.json\n"
           "  stop:   pgdaemon cluster down --dir %s\n",
           c->dir, STATE_FILE, c->dir, c->dir);
}

static int
up_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const up_options_t *o = ctx->opts;
    char etcd_bin[PATH_MAX], haproxy_bin[PATH_MAX], self_bin[PATH_MAX];
    cluster_t *c = calloc(1, sizeof(*c));
    mg_etcd_t *etcd = NULL;
    int code = MG_EXIT_FAILURE;

    if (c == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return MG_EXIT_FAILURE;
    }
    if (!up_prepare(o, c, etcd_bin, haproxy_bin, self_bin, PATH_MAX, error)) {
        free(c);
        return error->domain == MG_ERROR_DOMAIN_CONFIG ? MG_EXIT_USAGE : MG_EXIT_FAILURE;
    }
    if (up_start_etcd(c, etcd_bin, &etcd, error) && up_start_nodes(c, o, self_bin, error) &&
        up_start_haproxy(c, haproxy_bin, error) &&
        up_wait_ready(c, etcd, o->timeout_s * 1000, error)) {
        up_print(c);
        code = MG_EXIT_OK;
    } else {
        char msg[MG_ERROR_MESSAGE_SIZE];

        snprintf(msg, sizeof(msg),
                 "%s (processes started so far are recorded in %s/%s; stop them with \"pgdaemon "
                 "cluster down --dir %s\")",
                 error->message, o->dir, STATE_FILE, o->dir);
        mg_error_set(error, error->domain, error->code, "%s", msg);
    }
    mg_etcd_destroy(etcd);
    free(c);
    return code;
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

/* the processes `cluster down` stops: daemons, Postgres postmasters, HAProxy and etcd */
typedef struct {
    pid_t daemons[MG_HA_MAX_NODES + 2], others[4], pgs[MG_HA_MAX_NODES];
    uint64_t dstart[MG_HA_MAX_NODES + 2], ostart[4], pgstart[MG_HA_MAX_NODES];
    int nd, no, np;
} down_procs_t;

/* read_text reads the file at path into text (bounded by the buffer's cap). */
static bool
read_text(const char *path, mg_buf_t *text, mg_error_t *error)
{
    FILE *f = fopen(path, "r");
    char chunk[8192];
    size_t n;
    bool ok = true;

    if (f == NULL)
        return mg_error_set_errno(error, errno, "could not open \"%s\"", path);
    while (ok && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = mg_buf_append(text, chunk, n, error);
    if (ok && ferror(f))
        ok = mg_error_set_errno(error, EIO, "could not read \"%s\"", path);
    fclose(f);
    return ok && mg_buf_append(text, "", 1, error);
}

/* down_read_state reads DIR/cluster.json into the processes to stop. */
static bool
down_read_state(const char *path, down_procs_t *d, mg_error_t *error)
{
    char errbuf[128];
    const char *pp[] = {"processes", NULL}, *pn[] = {"nodes", NULL};
    mg_buf_t text;
    yajl_val t, procs, nodes;

    mg_buf_init(&text, 16 * 1024 * 1024);
    if (!read_text(path, &text, error)) {
        mg_buf_cleanup(&text);
        return false;
    }
    t = yajl_tree_parse(text.data != NULL ? text.data : "", errbuf, sizeof(errbuf));
    mg_buf_cleanup(&text);
    if (t == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "\"%s\" is not valid JSON", path);
    procs = yajl_tree_get(t, pp, yajl_t_array);
    nodes = yajl_tree_get(t, pn, yajl_t_array);
    for (size_t i = 0; procs && i < procs->u.array.len; i++) {
        yajl_val p = procs->u.array.values[i];
        const char *kr[] = {"role", NULL}, *kp[] = {"pid", NULL}, *ks[] = {"starttime", NULL};
        yajl_val role = yajl_tree_get(p, kr, yajl_t_string);
        yajl_val pid = yajl_tree_get(p, kp, yajl_t_number);
        yajl_val st = yajl_tree_get(p, ks, yajl_t_number);

        if (role == NULL || pid == NULL || st == NULL)
            continue;
        if (strcmp(mg_ha__ystr(role), "pgdaemon") == 0 && d->nd < MG_HA_MAX_NODES + 2) {
            d->daemons[d->nd] = (pid_t)YAJL_GET_INTEGER(pid);
            d->dstart[d->nd++] = (uint64_t)YAJL_GET_INTEGER(st);
        } else if (d->no < 4) {
            d->others[d->no] = (pid_t)YAJL_GET_INTEGER(pid);
            d->ostart[d->no++] = (uint64_t)YAJL_GET_INTEGER(st);
        }
    }
    for (size_t i = 0; nodes && i < nodes->u.array.len && d->np < MG_HA_MAX_NODES; i++) {
        const char *kd[] = {"data_dir", NULL};
        yajl_val dd = yajl_tree_get(nodes->u.array.values[i], kd, yajl_t_string);
        pid_t pid = dd ? mg_ha__postmaster_pid(mg_ha__ystr(dd)) : 0;

        if (pid > 0 && mg_ha__proc_alive(pid, 0)) {
            d->pgs[d->np] = pid;
            d->pgstart[d->np++] = mg_ha__proc_starttime(pid);
        }
    }
    yajl_tree_free(t);
    return true;
}

/* stop_all sends sig to every live process of the list, waits, then sends harder; true if all went.
 */
static bool
stop_all(const pid_t *pids, const uint64_t *starts, int n, int sig, int64_t timeout_ms, int harder)
{
    for (int i = 0; i < n; i++)
        if (mg_ha__proc_alive(pids[i], starts[i]))
            kill(pids[i], sig);
    if (wait_all_gone(pids, starts, n, timeout_ms))
        return true;
    for (int i = 0; i < n; i++)
        if (mg_ha__proc_alive(pids[i], starts[i]))
            kill(pids[i], harder);
    return false;
}

typedef struct {
    char *dir;
} down_options_t;

static const mg_config_option_t down_options[] = {
    {.name = "dir",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(down_options_t, dir),
     .required = true,
     .metavar = "DIR",
     .help = "the directory `cluster up` was given"},
};

static int
down_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const down_options_t *o = ctx->opts;
    char path[PATH_MAX + 32];
    down_procs_t d;
    bool clean;

    snprintf(path, sizeof(path), "%s/%s", o->dir, STATE_FILE);
    memset(&d, 0, sizeof(d));
    if (!down_read_state(path, &d, error))
        return error->domain == MG_ERROR_DOMAIN_SYSTEM ? MG_EXIT_USAGE : MG_EXIT_FAILURE;
    d.nd += find_daemons_by_config(o->dir, d.daemons + d.nd, d.dstart + d.nd,
                                   MG_HA_MAX_NODES + 2 - d.nd);
    /* 1. the daemons stop their Postgres (fast shutdown) and revoke their leases */
    clean = stop_all(d.daemons, d.dstart, d.nd, SIGTERM, 90000, SIGKILL);
    /* 2. any Postgres left (a daemon killed or on_stop=leave) */
    (void)stop_all(d.pgs, d.pgstart, d.np, SIGINT, 30000, SIGQUIT);
    /* 3. HAProxy and etcd */
    (void)stop_all(d.others, d.ostart, d.no, SIGTERM, 10000, SIGKILL);
    if (!wait_all_gone(d.others, d.ostart, d.no, 10000) ||
        !wait_all_gone(d.pgs, d.pgstart, d.np, 10000)) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                     "some processes did not stop");
        return MG_EXIT_FAILURE;
    }
    unlink(path);
    printf("cluster in %s is down%s\n", o->dir, clean ? "" : " (some daemons had to be killed)");
    return MG_EXIT_OK;
}

static const mg_cmd_t cluster_up_cmd = {
    .name = "up",
    .summary = "start etcd, N nodes and HAProxy on free loopback ports",
    .usage = "--nodes N --dir /ABSOLUTE/DIR [options]",
    .description = "Start a local cluster on free loopback ports: etcd, N nodes (pgdaemon + "
                   "PostgreSQL) and HAProxy; DIR/cluster.json records what runs, DIR/node<i>.json "
                   "the node configs (0600). Waits for one primary and N-1 streaming replicas.",
    .main = up_main,
    .options = up_options,
    .noptions = sizeof(up_options) / sizeof(up_options[0]),
    .opts_size = sizeof(up_options_t),
    .check = up_check,
};

static const mg_cmd_t cluster_down_cmd = {
    .name = "down",
    .summary = "stop a cluster started with `cluster up`",
    .usage = "--dir DIR",
    .description = "Stop the daemons (which stop their Postgres), any Postgres left, HAProxy "
                   "and etcd of the cluster in DIR, and remove DIR/cluster.json.",
    .main = down_main,
    .options = down_options,
    .noptions = sizeof(down_options) / sizeof(down_options[0]),
    .opts_size = sizeof(down_options_t),
};

static const mg_cmd_t *const cluster_subcommands[] = {&cluster_up_cmd, &cluster_down_cmd};

const mg_cmd_t mg_ha_cmd_cluster = {
    .name = "cluster",
    .summary = "start or stop a local cluster (etcd + N nodes + HAProxy) for development",
    .usage = "up --nodes N --dir DIR | down --dir DIR",
    .description = "A whole cluster on this machine, for development, tests and demos.",
    .subcommands = cluster_subcommands,
    .nsubcommands = sizeof(cluster_subcommands) / sizeof(cluster_subcommands[0]),
};
