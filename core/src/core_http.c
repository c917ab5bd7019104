/*
 * core/src/core_http.c - a small HTTP endpoint on libmicrohttpd, bounded so
 * that slow, idle or many clients cannot starve the answers that matter
 * (pgdaemon's /primary, which HAProxy checks: issue 17, item 10).
 *
 * Requests are served by a pool of worker threads, each with its own epoll
 * set (libmicrohttpd's thread pool: no select() and its FD_SETSIZE limit).
 * Every connection is tracked from accept to close, and three bounds are
 * kept by closing (shutdown(2)) connections:
 *
 *   max_connections   connections in all;
 *   max_per_client    connections of one client address;
 *   connection_timeout_ms  a connection is closed this long after it was
 *                     accepted, whatever it sends or fails to read.
 *
 * Beyond a bound, the connection closed is the one accepted first among
 * those that sent nothing, else among those that sent a request line only
 * (slow clients), else among all; a connection younger than HTTP_GRACE_MS
 * (150 ms) is spared, so for that long a bound may be passed (unless the
 * table, HTTP_SLOTS_PER_CONNECTION times max_connections, is three
 * quarters full). The bounds are kept at each accept and by a reaper
 * thread every 20 ms (for the clients left above theirs, and in all). So a fresh connection that
 * asks at once and leaves within milliseconds, like HAProxy's health check, gets in and is
 * answered, at the expense of whoever has held a connection longest
 * without asking, even when a flood shares its address and reconnects as
 * fast as it is closed (measured: tests/integration/ha/test_http_flood.py).
 * A request already waiting in a socket at accept counts as sent.
 *
 * Handlers get GET and HEAD requests only (everything else is answered 405
 * here, so an endpoint can never change state). Replies are built in an
 * mg_buf_t and copied into the response.
 */
#include "mg/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define HTTP_REPLY_LIMIT (1024u * 1024)
#define REAP_INTERVAL_MS 20
/* connections tracked (and libmicrohttpd's limit) per max_connections: room for those closing */
#define HTTP_SLOTS_PER_CONNECTION 8
/* a connection without a request line this long after accept counts as idle */
#define HTTP_GRACE_MS 150

/* clients whose bound the reaper retries at a time */
#define HTTP_OVER_CLIENTS 16

/* how much of a request a connection has sent */
enum { ASKED_NOTHING, ASKED_LINE, ASKED_HEAD };

/* one tracked connection (a slot of the server's table) */
typedef struct {
    bool used;
    bool closing; /* shutdown(2) done: libmicrohttpd closes it soon */
    int asked;    /* ASKED_*: how much of a request was received */
    int fd;
    int64_t accepted_ms; /* CLOCK_MONOTONIC */
    uint64_t seq;        /* accept order: the oldest has the lowest */
    struct sockaddr_storage client;
    socklen_t client_len;
} conn_slot_t;

struct mg_http_server {
    struct MHD_Daemon *daemon;
    mg_http_handler_fn handler;
    void *userdata;
    uint16_t port;
    mg_http_options_t opts; /* with the defaults filled in */
    pthread_mutex_t lock;   /* guards the table and the stats */
    pthread_cond_t cond;
    conn_slot_t *slots;
    size_t nslots;
    uint64_t next_seq;
    mg_http_stats_t stats;
    pthread_t reaper;
    bool reaper_running;
    bool stopping;
    /* clients left above max_per_client by young connections: the reaper retries */
    struct sockaddr_storage over[HTTP_OVER_CLIENTS];
    size_t nover;
};

struct mg_http_request {
    struct MHD_Connection *connection;
    mg_http_server_t *server;
};

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *
mg_http_request_query(const mg_http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

mg_http_server_t *
mg_http_request_server(const mg_http_request_t *req)
{
    return req->server;
}

/* ---- the connection table ---- */

/* same_client compares the addresses (not the ports) of two clients. */
static bool
same_client(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

/* close_slot shuts a connection down (lock held); libmicrohttpd then closes it. */
static void
close_slot(conn_slot_t *s)
{
    if (!s->used || s->closing)
        return;
    s->closing = true;
    /* the fd is still libmicrohttpd's: it is closed only after our CLOSED notice */
    (void)shutdown(s->fd, SHUT_RDWR);
}

/*
 * asked_waiting returns how much of a request already waits in the socket
 * of a connection that libmicrohttpd has not read yet (it sat in the accept
 * queue behind a flood, or the workers are busy): it counts as sent.
 */
static int
asked_waiting(int fd)
{
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_PEEK | MSG_DONTWAIT);

    if (n <= 0)
        return ASKED_NOTHING;
    buf[n] = '\0';
    if (strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL)
        return ASKED_HEAD;
    return memchr(buf, '\n', (size_t)n) != NULL ? ASKED_LINE : ASKED_NOTHING;
}

/*
 * victim returns the connection to close when a bound is passed, among the
 * open (not closing) ones of client (all when NULL) accepted at least
 * HTTP_GRACE_MS ago (any age when crowded): the one accepted first of
 * those that sent nothing, else of those that sent a request line only
 * (slow clients), else of all. *n counts every open one of client.
 */
static conn_slot_t *
victim(mg_http_server_t *server, const struct sockaddr_storage *client, int64_t now, bool crowded,
       size_t *n)
{
    conn_slot_t *best[3] = {NULL, NULL, NULL}; /* by ASKED_* */

    *n = 0;
    for (size_t i = 0; i < server->nslots; i++) {
        conn_slot_t *s = &server->slots[i];

        if (!s->used || s->closing || (client != NULL && !same_client(&s->client, client)))
            continue;
        (*n)++;
        if (!crowded && now - s->accepted_ms < HTTP_GRACE_MS)
            continue;
        if (best[s->asked] == NULL || s->seq < best[s->asked]->seq)
            best[s->asked] = s;
    }
    return best[ASKED_NOTHING] != NULL ? best[ASKED_NOTHING]
           : best[ASKED_LINE] != NULL  ? best[ASKED_LINE]
                                       : best[ASKED_HEAD];
}

/*
 * pick is victim, but a connection that looks idle is first asked whether
 * a request waits in its socket unread; if so it is not idle after all.
 */
static conn_slot_t *
pick(mg_http_server_t *server, const struct sockaddr_storage *client, int64_t now, bool crowded,
     size_t *n)
{
    conn_slot_t *v;

    while ((v = victim(server, client, now, crowded, n)) != NULL && v->asked == ASKED_NOTHING &&
           (v->asked = asked_waiting(v->fd)) != ASKED_NOTHING)
        ;
    return v;
}

/* bound_client closes client's connections beyond max_per_client; false when some remain. */
static bool
bound_client(mg_http_server_t *server, const struct sockaddr_storage *client, int64_t now,
             bool crowded)
{
    size_t n = 0;
    conn_slot_t *old;

    while ((old = pick(server, client, now, crowded, &n)) != NULL &&
           n > server->opts.max_per_client) {
        close_slot(old);
        server->stats.closed_client++;
    }
    return n <= server->opts.max_per_client;
}

/*
 * enforce_bounds closes connections beyond the limits, of client's (NULL:
 * of the clients left above theirs) and in all (lock held). It spares
 * connections younger than HTTP_GRACE_MS, which may pass a bound for that
 * long, unless the table is three quarters full.
 */
static void
enforce_bounds(mg_http_server_t *server, const struct sockaddr_storage *client)
{
    size_t n = 0, used = 0;
    int64_t now = mono_ms();
    bool crowded;
    conn_slot_t *old;

    for (size_t i = 0; i < server->nslots; i++)
        used += server->slots[i].used;
    crowded = 4 * used >= 3 * server->nslots;
    if (client != NULL && !bound_client(server, client, now, crowded) &&
        server->nover < HTTP_OVER_CLIENTS) {
        bool known = false;

        for (size_t i = 0; i < server->nover && !known; i++)
            known = same_client(&server->over[i], client);
        if (!known)
            server->over[server->nover++] = *client;
    }
    for (size_t i = 0; client == NULL && i < server->nover;) {
        if (bound_client(server, &server->over[i], now, crowded))
            server->over[i] = server->over[--server->nover];
        else
            i++;
    }
    while ((old = pick(server, NULL, now, crowded, &n)) != NULL &&
           n > server->opts.max_connections) {
        close_slot(old);
        server->stats.closed_total++;
    }
}

/* mark_asked records that connection sent at least level (lock not held). */
static void
mark_asked(mg_http_server_t *server, struct MHD_Connection *connection, int level)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    pthread_mutex_lock(&server->lock);
    if (info != NULL && info->socket_context != NULL) {
        conn_slot_t *slot = info->socket_context;

        if (slot->asked < level)
            slot->asked = level;
    }
    pthread_mutex_unlock(&server->lock);
}

/* on_uri marks a connection whose request line arrived (libmicrohttpd's URI log hook). */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *connection)
{
    (void)uri;
    mark_asked(cls, connection, ASKED_LINE);
    return NULL;
}

/*
 * on_connection tracks connections: STARTED takes a slot (or closes the
 * connection when none is free) and enforces the bounds; CLOSED frees the
 * slot. libmicrohttpd sends CLOSED before it closes the socket, so a slot's
 * fd is always the connection's own while the slot is used.
 */
static void
on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    mg_http_server_t *server = cls;
    conn_slot_t *slot = NULL;

    pthread_mutex_lock(&server->lock);
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        slot = *socket_context;
        if (slot != NULL)
            memset(slot, 0, sizeof(*slot));
        *socket_context = NULL;
        server->stats.open = server->stats.open > 0 ? server->stats.open - 1 : 0;
    } else if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

        server->stats.accepted++;
        server->stats.open++;
        for (size_t i = 0; i < server->nslots && slot == NULL; i++)
            if (!server->slots[i].used)
                slot = &server->slots[i];
        if (slot != NULL && fd != NULL) {
            slot->used = true;
            slot->fd = fd->connect_fd;
            slot->accepted_ms = mono_ms();
            slot->seq = server->next_seq++;
            slot->asked = asked_waiting(slot->fd);
            if (addr != NULL && addr->client_addr != NULL) {
                slot->client_len = addr->client_addr->sa_family == AF_INET6
                                       ? sizeof(struct sockaddr_in6)
                                       : sizeof(struct sockaddr_in);
                memcpy(&slot->client, addr->client_addr, slot->client_len);
            }
            *socket_context = slot;
            enforce_bounds(server, &slot->client);
        } else if (fd != NULL) {
            (void)shutdown(fd->connect_fd, SHUT_RDWR); /* no slot: cannot bound it */
            server->stats.closed_total++;
        }
    }
    pthread_mutex_unlock(&server->lock);
}

/* reaper closes connections open longer than connection_timeout_ms and keeps the bounds. */
static void *
reaper(void *arg)
{
    mg_http_server_t *server = arg;

    pthread_mutex_lock(&server->lock);
    while (!server->stopping) {
        struct timespec until;
        int64_t now = mono_ms();

        for (size_t i = 0; i < server->nslots; i++) {
            conn_slot_t *s = &server->slots[i];

            if (s->used && !s->closing &&
                now - s->accepted_ms >= server->opts.connection_timeout_ms) {
                close_slot(s);
                server->stats.closed_timeout++;
            }
        }
        enforce_bounds(server, NULL); /* those spared at their arrival */
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += REAP_INTERVAL_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&server->cond, &server->lock, &until);
    }
    pthread_mutex_unlock(&server->lock);
    return NULL;
}

void
mg_http_server_stats(mg_http_server_t *server, mg_http_stats_t *out)
{
    pthread_mutex_lock(&server->lock);
    *out = server->stats;
    pthread_mutex_unlock(&server->lock);
}

/* ---- requests ---- */

static enum MHD_Result
send_text(struct MHD_Connection *connection, unsigned int status, const char *type,
          const char *body, size_t len)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    ret = MHD_queue_response(connection, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    mg_http_server_t *server = cls;
    mg_http_request_t req = {connection, server};
    mg_http_reply_t reply;
    enum MHD_Result ret;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    mark_asked(server, connection, ASKED_HEAD);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char msg[] = "method not allowed\n";

        return send_text(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", msg,
                         sizeof(msg) - 1);
    }
    reply.status = 404;
    reply.content_type = "text/plain; charset=utf-8";
    mg_buf_init(&reply.body, HTTP_REPLY_LIMIT);
    server->handler(server->userdata, url, &req, &reply);
    ret = send_text(connection, (unsigned int)reply.status, reply.content_type,
                    reply.body.data ? reply.body.data : "", reply.body.len);
    mg_buf_cleanup(&reply.body);
    return ret;
}

/* ---- the server ---- */

/* fill_defaults copies options (NULL: none) with the defaults filled in. */
static void
fill_defaults(const mg_http_options_t *options, mg_http_options_t *o)
{
    memset(o, 0, sizeof(*o));
    if (options != NULL)
        *o = *options;
    if (o->max_connections == 0)
        o->max_connections = 128;
    if (o->max_per_client == 0)
        o->max_per_client = 16;
    if (o->max_per_client > o->max_connections)
        o->max_per_client = o->max_connections;
    if (o->threads == 0)
        o->threads = 2;
    if (o->connection_timeout_ms <= 0)
        o->connection_timeout_ms = 5000;
}

/* start_daemon starts libmicrohttpd on sa with the server's bounds; false with error. */
static bool
start_daemon(mg_http_server_t *server, struct sockaddr_in *sa, uint16_t port, mg_error_t *error)
{
    unsigned int timeout_s = (unsigned int)((server->opts.connection_timeout_ms + 999) / 1000);
    const unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    struct MHD_OptionItem ops[8];
    size_t n = 0;

#define OPT(o, v, p) ops[n++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (p)}
    OPT(MHD_OPTION_SOCK_ADDR, 0, sa);
    OPT(MHD_OPTION_THREAD_POOL_SIZE, server->opts.threads, NULL);
    /* per worker: the table is the bound, never one worker's share of it */
    OPT(MHD_OPTION_CONNECTION_LIMIT, server->nslots * server->opts.threads, NULL);
    OPT(MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, NULL);
    OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, server);
    OPT(MHD_OPTION_URI_LOG_CALLBACK, on_uri, server);
    OPT(MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL);
    OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
    errno = 0;
    server->daemon = MHD_start_daemon(flags, port, NULL, NULL, on_request, server, MHD_OPTION_ARRAY,
                                      ops, MHD_OPTION_END);
    if (server->daemon == NULL) {
        int e = errno ? errno : EADDRINUSE;
        char addr[INET_ADDRSTRLEN] = "";

        inet_ntop(AF_INET, &sa->sin_addr, addr, sizeof(addr));
        mg_error_set_errno(error, e, "could not listen for HTTP on %s:%u", addr,
                           (unsigned int)port);
        if (error != NULL)
            error->domain = MG_ERROR_DOMAIN_HTTP;
        return false;
    }
    return true;
}

mg_http_server_t *
mg_http_server_start(const char *address, uint16_t port, const mg_http_options_t *options,
                     mg_http_handler_fn handler, void *userdata, mg_error_t *error)
{
    mg_http_server_t *server;
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, address ? address : "127.0.0.1", &sa.sin_addr) != 1) {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "invalid HTTP listen address \"%s\": expected an IPv4 address",
                     address ? address : "");
        return NULL;
    }
    server = calloc(1, sizeof(*server));
    if (server == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return NULL;
    }
    server->handler = handler;
    server->userdata = userdata;
    fill_defaults(options, &server->opts);
    pthread_mutex_init(&server->lock, NULL);
    {
        pthread_condattr_t ca;

        /* the reaper waits on the monotonic clock, like the ages it compares */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&server->cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    server->nslots = HTTP_SLOTS_PER_CONNECTION * (size_t)server->opts.max_connections;
    server->slots = calloc(server->nslots, sizeof(*server->slots));
    if (server->slots == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        goto fail;
    }
    if (pthread_create(&server->reaper, NULL, reaper, server) != 0) {
        mg_error_set_errno(error, errno, "could not start the HTTP reaper thread");
        goto fail;
    }
    server->reaper_running = true;
    if (!start_daemon(server, &sa, port, error))
        goto fail;
    info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info != NULL ? info->port : port;
    return server;
fail:
    mg_http_server_destroy(server);
    return NULL;
}

mg_http_server_t *
mg_http_server_new(const char *address, uint16_t port, mg_http_handler_fn handler, void *userdata,
                   mg_error_t *error)
{
    return mg_http_server_start(address, port, NULL, handler, userdata, error);
}

uint16_t
mg_http_server_port(const mg_http_server_t *server)
{
    return server->port;
}

void
mg_http_server_destroy(mg_http_server_t *server)
{
    if (server == NULL)
        return;
    if (server->daemon != NULL)
        MHD_stop_daemon(server->daemon);
    if (server->reaper_running) {
        pthread_mutex_lock(&server->lock);
        server->stopping = true;
        pthread_cond_signal(&server->cond);
        pthread_mutex_unlock(&server->lock);
        pthread_join(server->reaper, NULL);
    }
    pthread_cond_destroy(&server->cond);
    pthread_mutex_destroy(&server->lock);
    free(server->slots);
    free(server);
}
