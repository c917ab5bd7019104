/*
 * tests/mongosim/msim_main.c - mongosim's entry point: options, the
 * listening socket, one thread per connection, message framing and the
 * idle-cursor reaper.
 */
#include "msim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <poll.h>

#define MAX_LISTENERS 17 /* the router and up to 16 shards */

static msim_server_t g_server;
static volatile sig_atomic_t g_stop;
static int g_listen_fds[MAX_LISTENERS];
static msim_server_t *g_listen_srv[MAX_LISTENERS];
static int g_nlisten;
static msim_cluster_t *g_cluster;

/* on_stop asks the accept loop to end (SIGTERM, SIGINT): main returns 0. */
static void
on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
    for (int i = 0; i < g_nlisten; i++)
        shutdown(g_listen_fds[i], SHUT_RDWR);
}

static int
read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 1;
}

static bool
write_full(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return true;
}

static atomic_int g_request_id = 1;

static bool
send_reply(msim_conn_t *c, bool legacy, int32_t response_to, const bson_t *reply)
{
    uint8_t prefix[64];
    struct iovec iov[2];
    size_t n = msim_wire_reply_prefix(prefix, legacy, atomic_fetch_add(&g_request_id, 1),
                                      response_to, reply->len);
    iov[0].iov_base = prefix;
    iov[0].iov_len = n;
    iov[1].iov_base = (void *)bson_get_data(reply);
    iov[1].iov_len = reply->len;
    return write_full(c->fd, iov, 2);
}

static void
error_reply(bson_t *reply, const mg_error_t *err)
{
    bson_reinit(reply);
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", err->message);
    BSON_APPEND_INT32(reply, "code", err->code);
    BSON_APPEND_UTF8(reply, "codeName", msim_code_name(err->code));
}

static void *
conn_main(void *arg)
{
    msim_conn_t *c = arg;
    msim_srv = c->server;
    uint8_t hdr[16];
    uint8_t *buf = NULL;
    size_t bufcap = 0;
    /* replies are built in one buffer kept for the connection's life, so
     * large batches do not fault in fresh pages every time */
    uint8_t *rbuf = NULL;
    size_t rbuflen = 0;

    for (;;) {
        int32_t len, reqid, opcode;
        msim_msg_t msg;
        mg_error_t err;
        bson_t reply;
        int r = read_full(c->fd, hdr, 16);
        if (r <= 0)
            break;
        memcpy(&len, hdr, 4);
        memcpy(&reqid, hdr + 4, 4);
        memcpy(&opcode, hdr + 12, 4);
        if (len < 16 || len > MSIM_MAX_MESSAGE_SIZE) {
            /* framing is lost: answer once and hang up, as mongod does */
            bson_init(&reply);
            msim_fail(&err, MSIM_E_FAILED_TO_PARSE,
                      "recv(): message msgLen %d is invalid. Min 16 Max: %d", len,
                      MSIM_MAX_MESSAGE_SIZE);
            error_reply(&reply, &err);
            send_reply(c, opcode == MSIM_OP_QUERY, reqid, &reply);
            bson_destroy(&reply);
            MG_LOG(MG_LOG_INFO, "mongosim", "closing connection %lld: message length %d",
                   (long long)c->id, len);
            break;
        }
        if ((size_t)len > bufcap) {
            uint8_t *nb = realloc(buf, (size_t)len);
            if (nb == NULL)
                break;
            buf = nb;
            bufcap = (size_t)len;
        }
        memcpy(buf, hdr, 16);
        if (len > 16 && read_full(c->fd, buf + 16, (size_t)len - 16) <= 0)
            break;
        if (!msim_wire_parse(buf, (size_t)len, &msg, &err)) {
            bson_init(&reply);
            error_reply(&reply, &err);
            send_reply(c, opcode == MSIM_OP_QUERY, reqid, &reply);
            bson_destroy(&reply);
            continue;
        }
        {
            bson_t *rp;
            bool sent;
            if (rbuf != NULL) {
                /* bson_new_from_buffer reads what the buffer holds: start empty */
                static const uint8_t empty[5] = {5, 0, 0, 0, 0};
                memcpy(rbuf, empty, sizeof empty);
            }
            rp = bson_new_from_buffer(&rbuf, &rbuflen, bson_realloc_ctx, NULL);
            msim_dispatch(c, &msg.cmd, rp);
            bson_destroy(&msg.cmd);
            if (c->close_after_reply) {
                bson_destroy(rp);
                break;
            }
            sent = msg.more_to_come || send_reply(c, msg.legacy, msg.request_id, rp);
            bson_destroy(rp);
            if (!sent)
                break;
        }
    }
    free(buf);
    bson_free(rbuf);
    close(c->fd);
    atomic_fetch_sub(&msim_srv->connections, 1);
    free(c);
    return NULL;
}

/* background_main runs the periodic jobs: the no-op writer, the
 * transaction lifetime limit, and (every second) idle cursors. */
static void *
background_main(void *arg)
{
    int64_t last_reap = msim_now_ms();
    (void)arg;
    while (!atomic_load(&g_server.stopping)) {
        int64_t now;
        usleep(100 * 1000);
        now = msim_now_ms();
        for (int i = 0; i < g_nlisten; i++) {
            msim_srv = g_listen_srv[i];
            if (!msim_srv->is_router) {
                msim_noop_writer_tick(now);
                msim_txn_expire(now);
            }
            if (now - last_reap >= 1000)
                msim_cursor_reap(now);
        }
        if (now - last_reap >= 1000)
            last_reap = now;
        msim_srv = &g_server;
        if (g_cluster != NULL)
            msim_cluster_tick(g_cluster, now);
    }
    return NULL;
}

/* open_listener binds a listening socket for s (port 0: the kernel picks; s->port gets it). */
static bool
open_listener(msim_server_t *s)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof addr;
    int one = 1, fd;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->port);
    if (inet_pton(AF_INET, s->bind, &addr.sin_addr) != 1)
        return false;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 512) != 0) {
        int e = errno;
        MG_LOG(MG_LOG_FATAL, "mongosim", "could not listen on \"%s:%d\": %s", s->bind, s->port,
               strerror(e));
        close(fd);
        return false;
    }
    getsockname(fd, (struct sockaddr *)&addr, &alen);
    s->port = ntohs(addr.sin_port);
    g_listen_fds[g_nlisten] = fd;
    g_listen_srv[g_nlisten++] = s;
    return true;
}

/* accept_loop serves every listener until a signal; false on a fatal accept error. */
static bool
accept_loop(void)
{
    pthread_attr_t attr;
    struct pollfd pfd[MAX_LISTENERS];
    int one = 1;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1u << 20);
    for (int i = 0; i < g_nlisten; i++) {
        pfd[i].fd = g_listen_fds[i];
        pfd[i].events = POLLIN;
    }
    while (!g_stop) {
        if (poll(pfd, (nfds_t)g_nlisten, 1000) <= 0)
            continue;
        for (int i = 0; i < g_nlisten && !g_stop; i++) {
            pthread_t th;
            msim_conn_t *c;
            msim_server_t *srv = g_listen_srv[i];
            int fd;
            if (!(pfd[i].revents & POLLIN))
                continue;
            fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EMFILE ||
                    errno == ENFILE) {
                    if (errno == EMFILE || errno == ENFILE)
                        usleep(10000);
                    continue;
                }
                if (g_stop)
                    break;
                perror("mongosim: accept");
                pthread_attr_destroy(&attr);
                return false;
            }
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            c = calloc(1, sizeof *c);
            if (c == NULL) {
                close(fd);
                continue;
            }
            c->fd = fd;
            c->server = srv;
            c->id = atomic_fetch_add(&srv->total_connections, 1) + 1;
            c->authenticated = !srv->auth;
            MG_LOG(MG_LOG_DEBUG, "mongosim", "connection %lld accepted by %s", (long long)c->id,
                   srv->name);
            atomic_fetch_add(&srv->connections, 1);
            if (pthread_create(&th, &attr, conn_main, c) != 0) {
                atomic_fetch_sub(&srv->connections, 1);
                close(fd);
                free(c);
            }
        }
    }
    pthread_attr_destroy(&attr);
    return true;
}

/* register_loaded_dbs makes shard0 the primary of every database --load filled there. */
static void
register_loaded_dbs(msim_cluster_t *cl)
{
    msim_server_t *s0 = cl->shards[0];
    pthread_mutex_lock(&cl->mu);
    for (size_t i = 0; i < s0->ncolls; i++) {
        if (msim_cluster_db(cl, s0->colls[i]->db, false) == NULL)
            msim_cluster_db(cl, s0->colls[i]->db, true)->primary = 0;
    }
    pthread_mutex_unlock(&cl->mu);
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: mongosim [options]\n"
               "  --port N              TCP port (default 27017; 0 picks a free one)\n"
               "  --bind ADDR           listen address (default 127.0.0.1)\n"
               "  --port-file PATH      write the port number here once listening\n"
               "  --oplog-size-mb N     change-stream history kept in memory (default 512)\n"
               "  --auth USER[@DB]:PASSWORD[:ROLE[@DB][,ROLE...]]  require SCRAM-SHA-256;\n"
               "                        repeat for more users; built-in roles (default root);\n"
               "                        a role without @DB is on the user's database\n"
               "  --periodic-noop-interval-secs N  no-op write of an idle primary (1-10, default\n"
               "                        10, as MongoDB's periodicNoopIntervalSecs)\n"
               "  --transaction-lifetime-limit-secs N  abort older transactions (default 60)\n"
               "  --server-version V    7.0 (default) or 6.0: the MongoDB version claimed\n"
               "  --shards N            a sharded cluster: this port is the router (mongos),\n"
               "                        N shard replica sets listen on ports of their own\n"
               "  --balancer-interval-secs N  balancer round (default 10)\n"
               "  --orphan-cleanup-delay-secs N  range deletion after a migration (default 900)\n"
               "  --load FILE[,FILE]    load Extended JSON files (one doc per line, or an array)\n"
               "  --load-ns DB.COLL     target of --load (default test.<file name>)\n"
               "  --cursor-timeout-ms N idle cursors are closed after N ms (default 600000)\n"
               "  --log-level LEVEL     debug|info|notice|warning|error (default info)\n"
               "  --log-format FORMAT   auto|json|text\n");
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"port-file", required_argument, NULL, 'f'},
        {"oplog-size-mb", required_argument, NULL, 'o'},
        {"auth", required_argument, NULL, 'a'},
        {"load", required_argument, NULL, 'l'},
        {"load-ns", required_argument, NULL, 'n'},
        {"cursor-timeout-ms", required_argument, NULL, 'c'},
        {"periodic-noop-interval-secs", required_argument, NULL, 'N'},
        {"transaction-lifetime-limit-secs", required_argument, NULL, 'T'},
        {"server-version", required_argument, NULL, 'V'},
        {"shards", required_argument, NULL, 'S'},
        {"balancer-interval-secs", required_argument, NULL, 'B'},
        {"orphan-cleanup-delay-secs", required_argument, NULL, 'O'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *port_file = NULL, *load = NULL, *load_ns = NULL;
    int nshards = 0, balancer_secs = 10;
    long long orphan_secs = 900;
    mg_error_t err;
    pthread_t reaper;
    int opt;

    if (!mg_cli_take_log_options("mongosim", "MONGOSIM_", &argc, argv, &err)) {
        fprintf(stderr, "mongosim: %s\n", err.message);
        return MG_EXIT_USAGE;
    }
    msim_server_init(&g_server);
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'p':
            g_server.port = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || g_server.port < 0 || g_server.port > 65535) {
                fprintf(stderr, "mongosim: invalid --port \"%s\"\n", optarg);
                return MG_EXIT_USAGE;
            }
            break;
        case 'b':
            snprintf(g_server.bind, sizeof g_server.bind, "%s", optarg);
            break;
        case 'f':
            port_file = optarg;
            break;
        case 'o':
            g_server.oplog_max_bytes = strtoll(optarg, &end, 10) << 20;
            if (*end != '\0' || g_server.oplog_max_bytes <= 0) {
                fprintf(stderr, "mongosim: invalid --oplog-size-mb \"%s\"\n", optarg);
                return MG_EXIT_USAGE;
            }
            break;
        case 'c':
            g_server.cursor_timeout_ms = strtoll(optarg, &end, 10);
            if (*end != '\0' || g_server.cursor_timeout_ms <= 0) {
                fprintf(stderr, "mongosim: invalid --cursor-timeout-ms \"%s\"\n", optarg);
                return MG_EXIT_USAGE;
            }
            break;
        case 'a':
            if (!msim_user_add(optarg, &err)) {
                fprintf(stderr, "mongosim: --auth: %s\n", err.message);
                return MG_EXIT_USAGE;
            }
            break;
        case 'N': {
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > 10) {
                fprintf(stderr,
                        "mongosim: invalid --periodic-noop-interval-secs \"%s\" (1-10, as "
                        "MongoDB's periodicNoopIntervalSecs)\n",
                        optarg);
                return MG_EXIT_USAGE;
            }
            g_server.noop_interval_secs = (int)v;
            break;
        }
        case 'T': {
            long long v = strtoll(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > 86400) {
                fprintf(stderr, "mongosim: invalid --transaction-lifetime-limit-secs \"%s\"\n",
                        optarg);
                return MG_EXIT_USAGE;
            }
            g_server.txn_lifetime_ms = v * 1000;
            break;
        }
        case 'S':
        case 'B':
        case 'O': {
            long long v = strtoll(optarg, &end, 10);
            long long lo = opt == 'S' ? 1 : 0, hi = opt == 'S' ? 16 : 86400;
            if (*end != '\0' || v < lo || v > hi || (opt == 'B' && v < 1)) {
                fprintf(stderr, "mongosim: invalid --%s \"%s\"\n",
                        opt == 'S'   ? "shards"
                        : opt == 'B' ? "balancer-interval-secs"
                                     : "orphan-cleanup-delay-secs",
                        optarg);
                return MG_EXIT_USAGE;
            }
            if (opt == 'S')
                nshards = (int)v;
            else if (opt == 'B')
                balancer_secs = (int)v;
            else
                orphan_secs = v;
            break;
        }
        case 'V':
            if (strcmp(optarg, "7.0") == 0) {
                g_server.server_version = MSIM_VERSION_70;
            } else if (strcmp(optarg, "6.0") == 0) {
                g_server.server_version = MSIM_VERSION_60;
            } else {
                fprintf(stderr, "mongosim: invalid --server-version \"%s\" (6.0 or 7.0)\n", optarg);
                return MG_EXIT_USAGE;
            }
            break;
        case 'l':
            load = optarg;
            break;
        case 'n':
            load_ns = optarg;
            break;
        case 'h':
            usage(stdout);
            return MG_EXIT_OK;
        default:
            usage(stderr);
            return MG_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mongosim: unexpected argument \"%s\"\n", argv[optind]);
        return MG_EXIT_USAGE;
    }

    signal(SIGPIPE, SIG_IGN);
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
    }

    if (nshards > 0) {
        g_cluster = msim_cluster_new(&g_server, nshards);
        g_cluster->balancer_interval_secs = balancer_secs;
        g_cluster->orphan_delay_ms = orphan_secs * 1000;
        msim_srv = g_cluster->shards[0]; /* --load fills shard0, the primary of its databases */
    }
    if (load != NULL && !msim_load_files(load, load_ns, &err)) {
        mg_log_error(MG_LOG_FATAL, "mongosim", &err);
        return MG_EXIT_USAGE;
    }
    msim_srv = &g_server;
    if (g_cluster != NULL)
        register_loaded_dbs(g_cluster);

    {
        struct in_addr probe;
        if (inet_pton(AF_INET, g_server.bind, &probe) != 1) {
            fprintf(stderr, "mongosim: invalid --bind address \"%s\" (IPv4 expected)\n",
                    g_server.bind);
            return MG_EXIT_USAGE;
        }
    }
    if (!open_listener(&g_server))
        return MG_EXIT_FAILURE;
    for (int i = 0; i < nshards; i++) {
        msim_server_t *sh = g_cluster->shards[i];
        sh->port = 0;
        if (!open_listener(sh))
            return MG_EXIT_FAILURE;
        MG_LOG_EVENT(MG_LOG_INFO, "mongosim", "mongosim.shard_listening",
                     MG_LOG_FIELDS(MG_LOG_STR("shard", sh->name), MG_LOG_INT("port", sh->port)),
                     "%s listening on %s:%d", sh->name, sh->bind, sh->port);
    }
    if (port_file != NULL) {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", g_server.port) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) != 0) {
            MG_LOG(MG_LOG_FATAL, "mongosim", "could not write port file \"%s\"", port_file);
            return MG_EXIT_FAILURE;
        }
    }
    MG_LOG_EVENT(MG_LOG_INFO, "mongosim", "mongosim.listening",
                 MG_LOG_FIELDS(MG_LOG_STR("bind", g_server.bind), MG_LOG_INT("port", g_server.port),
                               MG_LOG_BOOL("auth", g_server.auth), MG_LOG_INT("shards", nshards)),
                 "listening on %s:%d%s", g_server.bind, g_server.port,
                 nshards > 0 ? " (router)" : "");

    pthread_create(&reaper, NULL, background_main, NULL);
    pthread_detach(reaper);
    if (!accept_loop())
        return MG_EXIT_FAILURE;
    atomic_store(&g_server.stopping, true);
    for (int i = 0; i < g_nlisten; i++) {
        atomic_store(&g_listen_srv[i]->stopping, true);
        close(g_listen_fds[i]);
    }
    MG_LOG_EVENT(MG_LOG_INFO, "mongosim", "mongosim.stopped",
                 MG_LOG_FIELDS(MG_LOG_INT("connections", atomic_load(&g_server.connections))),
                 "stopped on signal");
    return MG_EXIT_OK;
}
