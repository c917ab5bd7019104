/*
 * core/src/core_http.c - a small read-only HTTP endpoint on libmicrohttpd.
 *
 * The server runs on libmicrohttpd's internal polling thread; handlers get
 * GET and HEAD requests only (everything else is answered 405 here, so an
 * endpoint can never change state). Replies are built in an mg_buf_t and
 * copied into the response.
 */
#include "mg/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define HTTP_REPLY_LIMIT (1024u * 1024)

struct mg_http_server {
    struct MHD_Daemon *daemon;
    mg_http_handler_fn handler;
    void *userdata;
    uint16_t port;
};

struct mg_http_request {
    struct MHD_Connection *connection;
};

const char *
mg_http_request_query(const mg_http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

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
    mg_http_request_t req = {connection};
    mg_http_reply_t reply;
    enum MHD_Result ret;
    static int first_call_marker;

    /* The first call only announces the request; answer on the second. */
    if (*con_cls == NULL) {
        *con_cls = &first_call_marker;
        if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)
            return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* discard bodies; they are refused below */
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char msg[] = "method not allowed: the endpoints are read-only\n";

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

mg_http_server_t *
mg_http_server_new(const char *address, uint16_t port, mg_http_handler_fn handler, void *userdata,
                   mg_error_t *error)
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
    errno = 0;
    server->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD, port, NULL, NULL, on_request, server, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    if (server->daemon == NULL) {
        int e = errno ? errno : EADDRINUSE;

        free(server);
        mg_error_set_errno(error, e, "could not listen for HTTP on %s:%u",
                           address ? address : "127.0.0.1", (unsigned int)port);
        if (error != NULL)
            error->domain = MG_ERROR_DOMAIN_HTTP;
        return NULL;
    }
    info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info != NULL ? info->port : port;
    return server;
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
    free(server);
}
