/*
 * core/src/core_etcd.c - etcd v3 client over the JSON gateway (libcurl + yajl).
 *
 * Every request is a POST of a JSON body to /v3/...; keys and values are
 * base64, int64 values travel as strings, and fields that hold their default
 * value are omitted (a failed txn has no "succeeded", a kv with version 1 may
 * lack nothing but a deleted-range answer may lack "deleted"). Endpoints are
 * tried in order; a member that answers with an older raft term than one
 * already seen is treated as stale and skipped, unless every endpoint
 * does: then the cluster went back (restored from a backup), which is
 * accepted once and reported (mg_etcd_replaced).
 */
#include "mg/core.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#define ETCD_MAX_ENDPOINTS 16
#define ETCD_MAX_ANSWER    (64u * 1024 * 1024)
#define ETCD_TXN_MAX       16
#define ETCD_TOKEN_SIZE    512

struct mg_etcd {
    char *endpoints[ETCD_MAX_ENDPOINTS];
    size_t nendpoints;
    size_t current;
    char *username;
    char *password;
    char *ca_file;
    char *cert_file;
    char *key_file;
    int64_t timeout_ms;
    int64_t deadline_ms; /* monotonic; 0 = none (mg_etcd_deadline_set) */
    int64_t max_raft_term;
    int64_t replaced_from_term; /* mg_etcd_replaced: the term before etcd went back (0 = no) */
    int64_t replaced_to_term;
    char token[ETCD_TOKEN_SIZE];
    CURL *curl;
};

/* ------------------------------------------------------------------------
 * JSON helpers over yajl_tree
 * ------------------------------------------------------------------------ */

static yajl_val
field(yajl_val obj, const char *name)
{
    size_t i;

    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], name) == 0)
            return obj->u.object.values[i];
    return NULL;
}

static const char *
sval(yajl_val v)
{
    const char *s = YAJL_GET_STRING(v);

    return s != NULL ? s : "";
}

/* get_int64 reads an int64 sent as a string or a number; absent means 0. */
static bool
get_int64(yajl_val obj, const char *name, int64_t *out, mg_error_t *error)
{
    yajl_val v = field(obj, name);
    char *end;

    *out = 0;
    if (v == NULL || YAJL_IS_NULL(v))
        return true;
    if (YAJL_IS_INTEGER(v)) {
        *out = YAJL_GET_INTEGER(v);
        return true;
    }
    if (YAJL_IS_STRING(v)) {
        const char *s = sval(v);

        errno = 0;
        if (s[0] == '-')
            *out = (int64_t)strtoll(s, &end, 10);
        else
            *out = (int64_t)strtoull(s, &end, 10); /* uint64 ids keep their bits */
        if (errno == 0 && end != s && *end == '\0')
            return true;
    }
    *out = 0;
    return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                        "could not parse etcd answer: field \"%s\" is not an integer", name);
}

static bool
get_bool(yajl_val obj, const char *name)
{
    yajl_val v = field(obj, name);

    return v != NULL && YAJL_IS_TRUE(v);
}

static yajl_val
parse_tree(const char *json, size_t len, mg_error_t *error)
{
    char errbuf[128];
    char *copy;
    yajl_val tree;

    copy = malloc(len + 1);
    if (copy == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    errbuf[0] = '\0';
    tree = yajl_tree_parse(copy, errbuf, sizeof(errbuf));
    free(copy);
    if (tree == NULL) {
        char *nl = strchr(errbuf, '\n');

        if (nl != NULL)
            *nl = '\0';
        mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                     "could not parse etcd answer: %s", errbuf[0] ? errbuf : "invalid JSON");
        return NULL;
    }
    if (!YAJL_IS_OBJECT(tree)) {
        yajl_tree_free(tree);
        mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                     "could not parse etcd answer: not a JSON object");
        return NULL;
    }
    return tree;
}

/*
 * check_error_object maps a gateway error answer ({"error": "...", "code":
 * N, "message": "..."}) to an mg_error_t. Returns false when tree is one.
 */
static bool
check_error_object(yajl_val tree, mg_error_t *error)
{
    yajl_val err = field(tree, "error");
    yajl_val msg = field(tree, "message");
    const char *text;
    int64_t code = 0;
    int32_t ours = MG_ETCD_ERR_SERVER;
    mg_error_t ignored;

    if (err == NULL)
        return true;
    if (YAJL_IS_OBJECT(err)) { /* streamed answers wrap it: {"error": {...}} */
        msg = field(err, "message");
        get_int64(err, "grpc_code", &code, &ignored);
        if (code == 0)
            get_int64(err, "code", &code, &ignored);
    } else {
        get_int64(tree, "code", &code, &ignored);
        if (msg == NULL || !YAJL_IS_STRING(msg))
            msg = err;
    }
    text = (msg != NULL && YAJL_IS_STRING(msg)) ? sval(msg) : "unknown error";
    if (strstr(text, "database space exceeded") != NULL || strstr(text, "NOSPACE") != NULL)
        ours = MG_ETCD_ERR_NOSPACE;
    else if (strstr(text, "compacted") != NULL)
        ours = MG_ETCD_ERR_COMPACTED;
    else if (strstr(text, "lease not found") != NULL)
        ours = MG_ETCD_ERR_LEASE_NOT_FOUND;
    else if (code == 16 || strstr(text, "auth") != NULL || strstr(text, "user name") != NULL ||
             strstr(text, "permission denied") != NULL)
        ours = MG_ETCD_ERR_AUTH;
    return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, ours, "etcd error (grpc code %" PRId64 "): %s",
                        code, text);
}

/* unwrap returns the "result" member of a streamed answer, else tree. */
static yajl_val
unwrap(yajl_val tree)
{
    yajl_val r = field(tree, "result");

    return (r != NULL && YAJL_IS_OBJECT(r)) ? r : tree;
}

static bool
parse_header(yajl_val obj, mg_etcd_header_t *h, mg_error_t *error)
{
    yajl_val hv = field(obj, "header");
    int64_t v;

    memset(h, 0, sizeof(*h));
    if (hv == NULL)
        return true;
    if (!get_int64(hv, "cluster_id", &v, error))
        return false;
    h->cluster_id = (uint64_t)v;
    if (!get_int64(hv, "member_id", &v, error))
        return false;
    h->member_id = (uint64_t)v;
    return get_int64(hv, "revision", &h->revision, error) &&
           get_int64(hv, "raft_term", &h->raft_term, error);
}

static void
kv_cleanup(mg_etcd_kv_t *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

static bool
decode_field(yajl_val obj, const char *name, char **out, size_t *outlen, mg_error_t *error)
{
    yajl_val v = field(obj, name);

    if (v != NULL && !YAJL_IS_STRING(v) && !YAJL_IS_NULL(v))
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                            "could not parse etcd answer: field \"%s\" is not a string", name);
    const char *text = (v != NULL && YAJL_IS_STRING(v)) ? sval(v) : "";
    mg_buf_t b;

    /* the core codec: RFC 4648, standard alphabet, padded, as the gateway writes */
    mg_buf_init(&b, ETCD_MAX_ANSWER);
    if (!mg_buf_reserve(&b, 1, NULL) || !mg_base64_decode(text, strlen(text), &b, NULL)) {
        mg_buf_cleanup(&b);
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                            "could not parse etcd answer: field \"%s\" is not base64", name);
    }
    *out = b.data; /* malloc'd and NUL-terminated by mg_buf */
    *outlen = b.len;
    return true;
}

static bool
parse_kv(yajl_val obj, mg_etcd_kv_t *kv, mg_error_t *error)
{
    memset(kv, 0, sizeof(*kv));
    if (!YAJL_IS_OBJECT(obj))
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                            "could not parse etcd answer: kv is not an object");
    if (!decode_field(obj, "key", &kv->key, &kv->key_len, error) ||
        !decode_field(obj, "value", &kv->value, &kv->value_len, error) ||
        !get_int64(obj, "create_revision", &kv->create_revision, error) ||
        !get_int64(obj, "mod_revision", &kv->mod_revision, error) ||
        !get_int64(obj, "version", &kv->version, error) ||
        !get_int64(obj, "lease", &kv->lease, error)) {
        kv_cleanup(kv);
        return false;
    }
    return true;
}

void
mg_etcd_range_cleanup(mg_etcd_range_t *range)
{
    size_t i;

    if (range == NULL)
        return;
    for (i = 0; i < range->nkvs; i++)
        kv_cleanup(&range->kvs[i]);
    free(range->kvs);
    memset(range, 0, sizeof(*range));
}

static bool
parse_range_obj(yajl_val obj, mg_etcd_range_t *out, mg_error_t *error)
{
    mg_etcd_range_t r;
    yajl_val kvs;
    size_t i;

    memset(&r, 0, sizeof(r));
    if (!parse_header(obj, &r.header, error) || !get_int64(obj, "count", &r.count, error))
        return false;
    r.more = get_bool(obj, "more");
    kvs = field(obj, "kvs");
    if (kvs != NULL && !YAJL_IS_NULL(kvs)) {
        if (!YAJL_IS_ARRAY(kvs))
            return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                                "could not parse etcd answer: \"kvs\" is not an array");
        if (kvs->u.array.len > 0) {
            r.kvs = calloc(kvs->u.array.len, sizeof(*r.kvs));
            if (r.kvs == NULL)
                return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        }
        for (i = 0; i < kvs->u.array.len; i++) {
            if (!parse_kv(kvs->u.array.values[i], &r.kvs[i], error)) {
                mg_etcd_range_cleanup(&r);
                return false;
            }
            r.nkvs++;
        }
    }
    *out = r;
    return true;
}

bool
mg_etcd_parse_range(const char *json, size_t len, mg_etcd_range_t *out, mg_error_t *error)
{
    yajl_val tree = parse_tree(json, len, error);
    bool ok;

    if (tree == NULL)
        return false;
    ok = check_error_object(tree, error) && parse_range_obj(unwrap(tree), out, error);
    yajl_tree_free(tree);
    return ok;
}

void
mg_etcd_txn_result_cleanup(mg_etcd_txn_result_t *result)
{
    size_t i;

    if (result == NULL)
        return;
    for (i = 0; i < result->nranges; i++)
        mg_etcd_range_cleanup(&result->ranges[i]);
    free(result->ranges);
    memset(result, 0, sizeof(*result));
}

static bool
parse_txn_obj(yajl_val obj, mg_etcd_txn_result_t *out, mg_error_t *error)
{
    mg_etcd_txn_result_t r;
    yajl_val resp;
    size_t i;

    memset(&r, 0, sizeof(r));
    if (!parse_header(obj, &r.header, error))
        return false;
    r.succeeded = get_bool(obj, "succeeded"); /* absent when false */
    resp = field(obj, "responses");
    if (resp != NULL && YAJL_IS_ARRAY(resp) && resp->u.array.len > 0) {
        r.ranges = calloc(resp->u.array.len, sizeof(*r.ranges));
        if (r.ranges == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        for (i = 0; i < resp->u.array.len; i++) {
            yajl_val rr = field(resp->u.array.values[i], "response_range");

            if (rr == NULL)
                continue;
            if (!parse_range_obj(rr, &r.ranges[r.nranges], error)) {
                mg_etcd_txn_result_cleanup(&r);
                return false;
            }
            r.nranges++;
        }
    } else if (resp != NULL && !YAJL_IS_ARRAY(resp) && !YAJL_IS_NULL(resp)) {
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                            "could not parse etcd answer: \"responses\" is not an array");
    }
    *out = r;
    return true;
}

bool
mg_etcd_parse_txn(const char *json, size_t len, mg_etcd_txn_result_t *out, mg_error_t *error)
{
    yajl_val tree = parse_tree(json, len, error);
    bool ok;

    if (tree == NULL)
        return false;
    ok = check_error_object(tree, error) && parse_txn_obj(unwrap(tree), out, error);
    yajl_tree_free(tree);
    return ok;
}

static bool
parse_lease_obj(yajl_val obj, mg_etcd_header_t *header, int64_t *id, int64_t *ttl,
                mg_error_t *error)
{
    mg_etcd_header_t h;
    int64_t i, t;
    yajl_val e = field(obj, "error");

    if (e != NULL && YAJL_IS_STRING(e) && sval(e)[0] != '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_SERVER, "etcd error: %s",
                            sval(e));
    if (!parse_header(obj, &h, error) || !get_int64(obj, "ID", &i, error) ||
        !get_int64(obj, "TTL", &t, error))
        return false;
    if (header != NULL)
        *header = h;
    if (id != NULL)
        *id = i;
    if (ttl != NULL)
        *ttl = t;
    return true;
}

bool
mg_etcd_parse_lease(const char *json, size_t len, mg_etcd_header_t *header, int64_t *id,
                    int64_t *ttl, mg_error_t *error)
{
    yajl_val tree = parse_tree(json, len, error);
    bool ok;

    if (tree == NULL)
        return false;
    ok = check_error_object(tree, error) && parse_lease_obj(unwrap(tree), header, id, ttl, error);
    yajl_tree_free(tree);
    return ok;
}

bool
mg_etcd_parse_header_only(const char *json, size_t len, mg_etcd_header_t *header, int64_t *deleted,
                          mg_error_t *error)
{
    yajl_val tree = parse_tree(json, len, error);
    mg_etcd_header_t h;
    int64_t d = 0;
    bool ok;

    if (tree == NULL)
        return false;
    ok = check_error_object(tree, error) && parse_header(unwrap(tree), &h, error) &&
         get_int64(unwrap(tree), "deleted", &d, error);
    yajl_tree_free(tree);
    if (ok && header != NULL)
        *header = h;
    if (ok && deleted != NULL)
        *deleted = d;
    return ok;
}

void
mg_etcd_watch_response_cleanup(mg_etcd_watch_response_t *response)
{
    size_t i;

    if (response == NULL)
        return;
    for (i = 0; i < response->nevents; i++)
        kv_cleanup(&response->events[i].kv);
    free(response->events);
    memset(response, 0, sizeof(*response));
}

static bool
parse_watch_obj(yajl_val obj, mg_etcd_watch_response_t *out, mg_error_t *error)
{
    mg_etcd_watch_response_t r;
    yajl_val events, reason;
    size_t i;

    memset(&r, 0, sizeof(r));
    if (!parse_header(obj, &r.header, error) ||
        !get_int64(obj, "compact_revision", &r.compact_revision, error))
        return false;
    r.created = get_bool(obj, "created");
    r.canceled = get_bool(obj, "canceled");
    reason = field(obj, "cancel_reason");
    if (reason != NULL && YAJL_IS_STRING(reason))
        snprintf(r.cancel_reason, sizeof(r.cancel_reason), "%s", sval(reason));
    events = field(obj, "events");
    if (events != NULL && YAJL_IS_ARRAY(events) && events->u.array.len > 0) {
        r.events = calloc(events->u.array.len, sizeof(*r.events));
        if (r.events == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        for (i = 0; i < events->u.array.len; i++) {
            yajl_val ev = events->u.array.values[i];
            yajl_val type = field(ev, "type");

            r.events[i].type = MG_ETCD_EVENT_PUT; /* PUT = 0 is omitted */
            if (type != NULL && YAJL_IS_STRING(type) && strcmp(sval(type), "DELETE") == 0)
                r.events[i].type = MG_ETCD_EVENT_DELETE;
            else if (type != NULL && YAJL_IS_INTEGER(type) && YAJL_GET_INTEGER(type) == 1)
                r.events[i].type = MG_ETCD_EVENT_DELETE;
            if (!parse_kv(field(ev, "kv"), &r.events[i].kv, error)) {
                mg_etcd_watch_response_cleanup(&r);
                return false;
            }
            r.nevents++;
        }
    }
    *out = r;
    return true;
}

bool
mg_etcd_parse_watch(const char *json, size_t len, mg_etcd_watch_response_t *out, mg_error_t *error)
{
    yajl_val tree = parse_tree(json, len, error);
    bool ok;

    if (tree == NULL)
        return false;
    ok = check_error_object(tree, error) && parse_watch_obj(unwrap(tree), out, error);
    yajl_tree_free(tree);
    return ok;
}

/* ------------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *
dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

mg_etcd_t *
mg_etcd_new(const mg_etcd_options_t *options, mg_error_t *error)
{
    mg_etcd_t *etcd;
    size_t i;

    if (options == NULL || options->nendpoints == 0) {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "no etcd endpoint given");
        return NULL;
    }
    if (options->nendpoints > ETCD_MAX_ENDPOINTS) {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_LIMIT,
                     "too many etcd endpoints: %zu (at most %d)", options->nendpoints,
                     ETCD_MAX_ENDPOINTS);
        return NULL;
    }
    for (i = 0; i < options->nendpoints; i++) {
        const char *ep = options->endpoints[i];

        if (ep == NULL || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
            mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                         "invalid etcd endpoint \"%s\": expected http://HOST:PORT or "
                         "https://HOST:PORT",
                         ep ? ep : "");
            return NULL;
        }
    }
    pthread_once(&curl_once, curl_init_once);
    etcd = calloc(1, sizeof(*etcd));
    if (etcd == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return NULL;
    }
    for (i = 0; i < options->nendpoints; i++) {
        size_t n;

        etcd->endpoints[i] = strdup(options->endpoints[i]);
        if (etcd->endpoints[i] == NULL)
            goto oom;
        etcd->nendpoints++;
        n = strlen(etcd->endpoints[i]);
        while (n > 0 && etcd->endpoints[i][n - 1] == '/')
            etcd->endpoints[i][--n] = '\0';
    }
    etcd->username = dup_or_null(options->username);
    etcd->password = dup_or_null(options->password);
    etcd->ca_file = dup_or_null(options->ca_file);
    etcd->cert_file = dup_or_null(options->cert_file);
    etcd->key_file = dup_or_null(options->key_file);
    etcd->timeout_ms = options->timeout_ms > 0 ? options->timeout_ms : 5000;
    etcd->curl = curl_easy_init();
    if (etcd->curl == NULL)
        goto oom;
    return etcd;
oom:
    mg_etcd_destroy(etcd);
    mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
    return NULL;
}

void
mg_etcd_destroy(mg_etcd_t *etcd)
{
    size_t i;

    if (etcd == NULL)
        return;
    for (i = 0; i < etcd->nendpoints; i++)
        free(etcd->endpoints[i]);
    free(etcd->username);
    if (etcd->password != NULL) {
        memset(etcd->password, 0, strlen(etcd->password));
        free(etcd->password);
    }
    free(etcd->ca_file);
    free(etcd->cert_file);
    free(etcd->key_file);
    if (etcd->curl != NULL)
        curl_easy_cleanup(etcd->curl);
    free(etcd);
}

typedef struct {
    mg_buf_t *buf;
    bool overflow;
} sink_t;

static size_t
sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink_t *sink = userdata;
    size_t n = size * nmemb;

    if (!mg_buf_append(sink->buf, ptr, n, NULL)) {
        sink->overflow = true;
        return 0;
    }
    return n;
}

static int64_t now_ms(void);

void
mg_etcd_deadline_set(mg_etcd_t *etcd, int64_t ms_from_now)
{
    etcd->deadline_ms = now_ms() + (ms_from_now > 0 ? ms_from_now : 0);
    if (etcd->deadline_ms == 0)
        etcd->deadline_ms = 1;
}

void
mg_etcd_deadline_clear(mg_etcd_t *etcd)
{
    etcd->deadline_ms = 0;
}

/* attempt_ms is how long the next HTTP attempt may take: timeout_ms, capped by the deadline. */
static int64_t
attempt_ms(const mg_etcd_t *etcd)
{
    int64_t left;

    if (etcd->deadline_ms == 0)
        return etcd->timeout_ms;
    left = etcd->deadline_ms - now_ms();
    return left < etcd->timeout_ms ? left : etcd->timeout_ms;
}

static void
setup_common(mg_etcd_t *etcd, CURL *curl, struct curl_slist *headers, int64_t timeout_ms)
{
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout_ms < 2000 ? timeout_ms : 2000));
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    if (etcd->ca_file != NULL)
        curl_easy_setopt(curl, CURLOPT_CAINFO, etcd->ca_file);
    if (etcd->cert_file != NULL)
        curl_easy_setopt(curl, CURLOPT_SSLCERT, etcd->cert_file);
    if (etcd->key_file != NULL)
        curl_easy_setopt(curl, CURLOPT_SSLKEY, etcd->key_file);
}

/*
 * http_once sends one request (body NULL = GET) to one endpoint; *status
 * gets the HTTP status. Fails with MG_ETCD_ERR_UNAVAILABLE on transport
 * errors.
 */
static bool
http_once(mg_etcd_t *etcd, const char *endpoint, const char *path, const char *body,
          bool with_token, mg_buf_t *answer, long *status, mg_error_t *error)
{
    char url[1024];
    char auth[ETCD_TOKEN_SIZE + 32];
    struct curl_slist *headers = NULL;
    sink_t sink = {answer, false};
    CURLcode rc;
    CURL *curl = etcd->curl;
    int64_t timeout_ms = attempt_ms(etcd);

    if (timeout_ms <= 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_UNAVAILABLE,
                            "could not reach etcd at \"%s%s\": no time left before the deadline",
                            endpoint, path);
    snprintf(url, sizeof(url), "%s%s", endpoint, path);
    curl_easy_reset(curl);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (with_token && etcd->token[0] != '\0') {
        snprintf(auth, sizeof(auth), "Authorization: %s", etcd->token);
        headers = curl_slist_append(headers, auth);
    }
    setup_common(etcd, curl, headers, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    if (body != NULL) {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    mg_buf_reset(answer);
    rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (sink.overflow)
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                            "etcd answer from %s larger than %u bytes", url, ETCD_MAX_ANSWER);
    if (rc != CURLE_OK)
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_UNAVAILABLE,
                            "could not reach etcd at \"%s\": %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    return true;
}

static bool authenticate(mg_etcd_t *etcd, const char *endpoint, mg_error_t *error);

/*
 * request POSTs body to path on the current endpoint, moving on to the next
 * one when an endpoint is unreachable or stale, and returns the parsed
 * answer (caller frees with yajl_tree_free) after checking the error object
 * and the raft term.
 */
static yajl_val
request(mg_etcd_t *etcd, const char *path, const char *body, mg_error_t *error)
{
    mg_buf_t answer;
    mg_error_t last;
    size_t tries, stale = 0;
    int64_t stale_max = 0;
    yajl_val tree = NULL;

    mg_buf_init(&answer, ETCD_MAX_ANSWER);
    mg_error_clear(&last);
again:
    for (tries = 0; tries < etcd->nendpoints; tries++) {
        const char *ep = etcd->endpoints[etcd->current];
        mg_etcd_header_t h;
        long status = 0;
        int attempt;

        if (attempt_ms(etcd) <= 0) {
            /* out of time: stop here, without blaming (and leaving) this endpoint */
            if (tries == 0 || !mg_error_is_set(&last))
                mg_error_set(&last, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_UNAVAILABLE,
                             "could not reach etcd at \"%s\": no time left before the deadline",
                             ep);
            break;
        }

        for (attempt = 0; attempt < 2; attempt++) {
            if (etcd->username != NULL && etcd->token[0] == '\0' && !authenticate(etcd, ep, &last))
                break;
            if (!http_once(etcd, ep, path, body, true, &answer, &status, &last))
                break;
            tree = parse_tree(answer.data ? answer.data : "", answer.len, &last);
            if (tree == NULL) {
                if (status != 200)
                    mg_error_set(&last, MG_ERROR_DOMAIN_ETCD,
                                 status == 404 ? MG_ETCD_ERR_PROTOCOL : MG_ETCD_ERR_SERVER,
                                 "etcd at \"%s\" answered HTTP %ld to %s", ep, status, path);
                break;
            }
            if (!check_error_object(tree, &last)) {
                yajl_tree_free(tree);
                tree = NULL;
                if (last.code == MG_ETCD_ERR_AUTH && etcd->username != NULL && attempt == 0) {
                    etcd->token[0] = '\0'; /* token expired: authenticate again */
                    continue;
                }
                mg_buf_cleanup(&answer);
                if (error != NULL)
                    *error = last;
                return NULL;
            }
            break;
        }
        if (tree != NULL) {
            if (!parse_header(unwrap(tree), &h, &last)) {
                yajl_tree_free(tree);
                mg_buf_cleanup(&answer);
                if (error != NULL)
                    *error = last;
                return NULL;
            }
            if (h.raft_term != 0 && h.raft_term < etcd->max_raft_term) {
                mg_error_set(&last, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_STALE_MEMBER,
                             "etcd member at \"%s\" is stale: raft term %" PRId64
                             " is older than %" PRId64 " seen before",
                             ep, h.raft_term, etcd->max_raft_term);
                yajl_tree_free(tree);
                tree = NULL;
                stale++;
                if (h.raft_term > stale_max)
                    stale_max = h.raft_term;
            } else {
                if (h.raft_term > etcd->max_raft_term)
                    etcd->max_raft_term = h.raft_term;
                mg_buf_cleanup(&answer);
                return tree;
            }
        }
        if (last.code == MG_ETCD_ERR_AUTH && last.domain == MG_ERROR_DOMAIN_ETCD)
            break;
        etcd->current = (etcd->current + 1) % etcd->nendpoints;
    }
    if (stale == etcd->nendpoints && stale_max > 0) {
        /*
         * Every endpoint answers from an older term: not one stale member but
         * the whole cluster went back (restored from a backup). Take it as the
         * truth, once, and say so (mg_etcd_replaced); skipping every member
         * forever would leave the caller without etcd for good.
         */
        etcd->replaced_from_term = etcd->max_raft_term;
        etcd->replaced_to_term = stale_max;
        etcd->max_raft_term = stale_max;
        stale = 0;
        mg_error_clear(&last);
        goto again;
    }
    mg_buf_cleanup(&answer);
    if (error != NULL)
        *error = last;
    return NULL;
}

bool
mg_etcd_replaced(mg_etcd_t *etcd, int64_t *from_term, int64_t *to_term)
{
    if (etcd->replaced_from_term == 0)
        return false;
    if (from_term != NULL)
        *from_term = etcd->replaced_from_term;
    if (to_term != NULL)
        *to_term = etcd->replaced_to_term;
    etcd->replaced_from_term = etcd->replaced_to_term = 0;
    return true;
}

static bool
gen_b64(yajl_gen g, const char *name, const void *value, size_t len, mg_error_t *error)
{
    mg_buf_t b;

    mg_buf_init(&b, ETCD_MAX_ANSWER);
    if (!mg_buf_append(&b, "", 0, error) || !mg_base64_encode(value, len, &b, error)) {
        mg_buf_cleanup(&b);
        return false;
    }
    mg_json_str(g, name);
    yajl_gen_string(g, (const unsigned char *)(b.data ? b.data : ""), b.len);
    mg_buf_cleanup(&b);
    return true;
}

static void
gen_int(yajl_gen g, const char *name, int64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRId64, v);
    mg_json_str(g, name);
    mg_json_str(g, num); /* int64 as a string, like the gateway */
}

/*
 * prefix_end computes the range_end of a prefix: the prefix with its last
 * byte incremented (trailing 0xff bytes dropped); "\0" means "to the end".
 */
static size_t
prefix_end(const char *key, char *out, size_t outsz)
{
    size_t n = strlen(key);

    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, key, n);
    while (n > 0 && (unsigned char)out[n - 1] == 0xff)
        n--;
    if (n == 0) {
        out[0] = '\0';
        return 1;
    }
    out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
    return n;
}

static bool
gen_range_fields(yajl_gen g, const char *key, bool prefix, mg_error_t *error)
{
    char end[1024];
    size_t n;

    if (!gen_b64(g, "key", key, strlen(key), error))
        return false;
    if (prefix) {
        n = prefix_end(key, end, sizeof(end));
        if (!gen_b64(g, "range_end", end, n, error))
            return false;
    }
    return true;
}

/* finish renders g into body (reset first); frees g. */
static bool
finish(yajl_gen g, mg_buf_t *body, mg_error_t *error)
{
    bool ok;

    mg_buf_reset(body);
    ok = mg_json_take(g, body, error);
    yajl_gen_free(g);
    return ok;
}

static bool
authenticate(mg_etcd_t *etcd, const char *endpoint, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t body, answer;
    yajl_val tree = NULL, tok;
    long status = 0;
    bool ok = false;

    mg_buf_init(&body, 64 * 1024);
    mg_buf_init(&answer, 64 * 1024);
    yajl_gen_map_open(g);
    mg_json_str(g, "name");
    mg_json_str(g, etcd->username);
    mg_json_str(g, "password");
    mg_json_str(g, etcd->password ? etcd->password : "");
    yajl_gen_map_close(g);
    if (!finish(g, &body, error))
        goto done;
    if (!http_once(etcd, endpoint, "/v3/auth/authenticate", body.data, false, &answer, &status,
                   error))
        goto done;
    tree = parse_tree(answer.data ? answer.data : "", answer.len, error);
    if (tree == NULL || !check_error_object(tree, error))
        goto done;
    tok = field(tree, "token");
    if (tok == NULL || !YAJL_IS_STRING(tok) || strlen(sval(tok)) >= sizeof(etcd->token)) {
        mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_AUTH,
                     "etcd authentication as \"%s\" returned no token", etcd->username);
        goto done;
    }
    snprintf(etcd->token, sizeof(etcd->token), "%s", sval(tok));
    ok = true;
done:
    if (tree != NULL)
        yajl_tree_free(tree);
    if (body.data != NULL)
        memset(body.data, 0, body.len);
    mg_buf_cleanup(&body);
    mg_buf_cleanup(&answer);
    return ok;
}

bool
mg_etcd_version(mg_etcd_t *etcd, char *server, size_t serversz, mg_error_t *error)
{
    mg_buf_t answer;
    mg_error_t last;
    size_t tries;

    mg_buf_init(&answer, 64 * 1024);
    mg_error_clear(&last);
    for (tries = 0; tries < etcd->nendpoints; tries++) {
        const char *ep = etcd->endpoints[etcd->current];
        long status = 0;
        yajl_val tree, v;

        if (http_once(etcd, ep, "/version", NULL, false, &answer, &status, &last)) {
            tree = parse_tree(answer.data ? answer.data : "", answer.len, &last);
            v = tree != NULL ? field(tree, "etcdserver") : NULL;
            if (status == 200 && v != NULL && YAJL_IS_STRING(v)) {
                snprintf(server, serversz, "%s", sval(v));
                yajl_tree_free(tree);
                mg_buf_cleanup(&answer);
                return true;
            }
            if (tree != NULL)
                yajl_tree_free(tree);
            mg_error_set(&last, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                         "\"%s/version\" did not answer like etcd (HTTP %ld)", ep, status);
        }
        etcd->current = (etcd->current + 1) % etcd->nendpoints;
    }
    mg_buf_cleanup(&answer);
    if (error != NULL)
        *error = last;
    return false;
}

bool
mg_etcd_range(mg_etcd_t *etcd, const char *key, bool prefix, int64_t limit, bool count_only,
              mg_etcd_range_t *out, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t body;
    yajl_val tree;
    bool ok = false;

    mg_buf_init(&body, ETCD_MAX_ANSWER);
    yajl_gen_map_open(g);
    if (!gen_range_fields(g, key, prefix, error)) {
        yajl_gen_free(g);
        goto done;
    }
    if (limit > 0)
        gen_int(g, "limit", limit);
    if (count_only) {
        mg_json_str(g, "count_only");
        yajl_gen_bool(g, 1);
    }
    yajl_gen_map_close(g);
    if (!finish(g, &body, error))
        goto done;
    tree = request(etcd, "/v3/kv/range", body.data, error);
    if (tree == NULL)
        goto done;
    ok = parse_range_obj(tree, out, error);
    yajl_tree_free(tree);
done:
    mg_buf_cleanup(&body);
    return ok;
}

bool
mg_etcd_put(mg_etcd_t *etcd, const char *key, const void *value, size_t len, int64_t lease,
            int64_t *revision, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t body;
    yajl_val tree;
    mg_etcd_header_t h;
    bool ok = false;

    mg_buf_init(&body, ETCD_MAX_ANSWER);
    yajl_gen_map_open(g);
    if (!gen_b64(g, "key", key, strlen(key), error) || !gen_b64(g, "value", value, len, error)) {
        yajl_gen_free(g);
        goto done;
    }
    if (lease != 0)
        gen_int(g, "lease", lease);
    yajl_gen_map_close(g);
    if (!finish(g, &body, error))
        goto done;
    tree = request(etcd, "/v3/kv/put", body.data, error);
    if (tree == NULL)
        goto done;
    ok = parse_header(tree, &h, error);
    yajl_tree_free(tree);
    if (ok && revision != NULL)
        *revision = h.revision;
done:
    mg_buf_cleanup(&body);
    return ok;
}

bool
mg_etcd_delete(mg_etcd_t *etcd, const char *key, bool prefix, int64_t *deleted, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t body;
    yajl_val tree;
    int64_t d = 0;
    bool ok = false;

    mg_buf_init(&body, 64 * 1024);
    yajl_gen_map_open(g);
    if (!gen_range_fields(g, key, prefix, error)) {
        yajl_gen_free(g);
        goto done;
    }
    yajl_gen_map_close(g);
    if (!finish(g, &body, error))
        goto done;
    tree = request(etcd, "/v3/kv/deleterange", body.data, error);
    if (tree == NULL)
        goto done;
    ok = get_int64(tree, "deleted", &d, error);
    yajl_tree_free(tree);
    if (ok && deleted != NULL)
        *deleted = d;
done:
    mg_buf_cleanup(&body);
    return ok;
}

/* ------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------ */

typedef struct {
    char *key;
    mg_etcd_target_t target;
    mg_etcd_cmp_t cmp;
    int64_t number;
    char *value;
    size_t value_len;
} txn_compare_t;

typedef enum { OP_PUT, OP_DELETE, OP_GET } op_kind_t;

typedef struct {
    op_kind_t kind;
    char *key;
    bool prefix;
    char *value;
    size_t value_len;
    int64_t lease;
} txn_op_t;

struct mg_etcd_txn {
    txn_compare_t compares[ETCD_TXN_MAX];
    size_t ncompares;
    txn_op_t ops[2][ETCD_TXN_MAX]; /* [0] failure, [1] success */
    size_t nops[2];
};

mg_etcd_txn_t *
mg_etcd_txn_new(void)
{
    return calloc(1, sizeof(mg_etcd_txn_t));
}

void
mg_etcd_txn_destroy(mg_etcd_txn_t *txn)
{
    size_t i, b;

    if (txn == NULL)
        return;
    for (i = 0; i < txn->ncompares; i++) {
        free(txn->compares[i].key);
        free(txn->compares[i].value);
    }
    for (b = 0; b < 2; b++)
        for (i = 0; i < txn->nops[b]; i++) {
            free(txn->ops[b][i].key);
            free(txn->ops[b][i].value);
        }
    free(txn);
}

static char *
memdup0(const void *p, size_t n)
{
    char *c = malloc(n + 1);

    if (c == NULL)
        return NULL;
    if (n > 0)
        memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

static txn_compare_t *
add_compare(mg_etcd_txn_t *txn, const char *key, mg_error_t *error)
{
    txn_compare_t *c;

    if (txn->ncompares >= ETCD_TXN_MAX) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "too many compares in one etcd txn (at most %d)", ETCD_TXN_MAX);
        return NULL;
    }
    c = &txn->compares[txn->ncompares];
    memset(c, 0, sizeof(*c));
    c->key = strdup(key);
    if (c->key == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return NULL;
    }
    txn->ncompares++;
    return c;
}

bool
mg_etcd_txn_compare_int(mg_etcd_txn_t *txn, const char *key, mg_etcd_target_t target,
                        mg_etcd_cmp_t cmp, int64_t value, mg_error_t *error)
{
    txn_compare_t *c;

    if (target == MG_ETCD_TARGET_VALUE)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "use mg_etcd_txn_compare_value to compare values");
    c = add_compare(txn, key, error);
    if (c == NULL)
        return false;
    c->target = target;
    c->cmp = cmp;
    c->number = value;
    return true;
}

bool
mg_etcd_txn_compare_value(mg_etcd_txn_t *txn, const char *key, mg_etcd_cmp_t cmp, const void *value,
                          size_t len, mg_error_t *error)
{
    txn_compare_t *c = add_compare(txn, key, error);

    if (c == NULL)
        return false;
    c->target = MG_ETCD_TARGET_VALUE;
    c->cmp = cmp;
    c->value = memdup0(value, len);
    c->value_len = len;
    if (c->value == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
    return true;
}

static bool
add_op(mg_etcd_txn_t *txn, bool on_success, op_kind_t kind, const char *key, bool prefix,
       const void *value, size_t len, int64_t lease, mg_error_t *error)
{
    size_t b = on_success ? 1 : 0;
    txn_op_t *op;

    if (txn->nops[b] >= ETCD_TXN_MAX)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "too many ops in one etcd txn branch (at most %d)", ETCD_TXN_MAX);
    op = &txn->ops[b][txn->nops[b]];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->prefix = prefix;
    op->lease = lease;
    op->key = strdup(key);
    if (value != NULL) {
        op->value = memdup0(value, len);
        op->value_len = len;
    }
    if (op->key == NULL || (value != NULL && op->value == NULL)) {
        free(op->key);
        free(op->value);
        return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
    }
    txn->nops[b]++;
    return true;
}

bool
mg_etcd_txn_put(mg_etcd_txn_t *txn, bool on_success, const char *key, const void *value, size_t len,
                int64_t lease, mg_error_t *error)
{
    return add_op(txn, on_success, OP_PUT, key, false, value ? value : "", len, lease, error);
}

bool
mg_etcd_txn_delete(mg_etcd_txn_t *txn, bool on_success, const char *key, bool prefix,
                   mg_error_t *error)
{
    return add_op(txn, on_success, OP_DELETE, key, prefix, NULL, 0, 0, error);
}

bool
mg_etcd_txn_get(mg_etcd_txn_t *txn, bool on_success, const char *key, bool prefix,
                mg_error_t *error)
{
    return add_op(txn, on_success, OP_GET, key, prefix, NULL, 0, 0, error);
}

static const char *const target_names[] = {"VERSION", "CREATE", "MOD", "VALUE"};
static const char *const cmp_names[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
static const char *const target_fields[] = {"version", "create_revision", "mod_revision", "value"};

static bool
gen_ops(yajl_gen g, const txn_op_t *ops, size_t n, mg_error_t *error)
{
    size_t i;

    yajl_gen_array_open(g);
    for (i = 0; i < n; i++) {
        const txn_op_t *op = &ops[i];

        yajl_gen_map_open(g);
        mg_json_str(g, op->kind == OP_PUT      ? "request_put"
                       : op->kind == OP_DELETE ? "request_delete_range"
                                               : "request_range");
        yajl_gen_map_open(g);
        if (op->kind == OP_PUT) {
            if (!gen_b64(g, "key", op->key, strlen(op->key), error) ||
                !gen_b64(g, "value", op->value, op->value_len, error))
                return false;
            if (op->lease != 0)
                gen_int(g, "lease", op->lease);
        } else if (!gen_range_fields(g, op->key, op->prefix, error)) {
            return false;
        }
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    return true;
}

bool
mg_etcd_txn_commit(mg_etcd_t *etcd, const mg_etcd_txn_t *txn, mg_etcd_txn_result_t *result,
                   mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t body;
    yajl_val tree;
    size_t i;
    bool ok = false;

    mg_buf_init(&body, ETCD_MAX_ANSWER);
    yajl_gen_map_open(g);
    mg_json_str(g, "compare");
    yajl_gen_array_open(g);
    for (i = 0; i < txn->ncompares; i++) {
        const txn_compare_t *c = &txn->compares[i];

        yajl_gen_map_open(g);
        mg_json_str(g, "result");
        mg_json_str(g, cmp_names[c->cmp]);
        mg_json_str(g, "target");
        mg_json_str(g, target_names[c->target]);
        if (!gen_b64(g, "key", c->key, strlen(c->key), error))
            goto gen_failed;
        if (c->target == MG_ETCD_TARGET_VALUE) {
            if (!gen_b64(g, "value", c->value, c->value_len, error))
                goto gen_failed;
        } else {
            gen_int(g, target_fields[c->target], c->number);
        }
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_str(g, "success");
    if (!gen_ops(g, txn->ops[1], txn->nops[1], error))
        goto gen_failed;
    mg_json_str(g, "failure");
    if (!gen_ops(g, txn->ops[0], txn->nops[0], error))
        goto gen_failed;
    yajl_gen_map_close(g);
    if (!finish(g, &body, error))
        goto done;
    tree = request(etcd, "/v3/kv/txn", body.data, error);
    if (tree == NULL)
        goto done;
    ok = parse_txn_obj(tree, result, error);
    yajl_tree_free(tree);
    goto done;
gen_failed:
    yajl_gen_free(g);
done:
    mg_buf_cleanup(&body);
    return ok;
}

/* ------------------------------------------------------------------------
 * Leases
 * ------------------------------------------------------------------------ */

static bool
lease_call(mg_etcd_t *etcd, const char *path, int64_t ttl_s, int64_t id, int64_t *out_id,
           int64_t *out_ttl, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t body;
    yajl_val tree;
    bool ok = false;

    mg_buf_init(&body, 4096);
    yajl_gen_map_open(g);
    if (ttl_s > 0)
        gen_int(g, "TTL", ttl_s);
    if (id != 0)
        gen_int(g, "ID", id);
    yajl_gen_map_close(g);
    if (!finish(g, &body, error))
        goto done;
    tree = request(etcd, path, body.data, error);
    if (tree == NULL)
        goto done;
    ok = parse_lease_obj(unwrap(tree), NULL, out_id, out_ttl, error);
    yajl_tree_free(tree);
done:
    mg_buf_cleanup(&body);
    return ok;
}

bool
mg_etcd_lease_grant(mg_etcd_t *etcd, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
                    mg_error_t *error)
{
    int64_t i = 0, t = 0;

    if (ttl_s <= 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "lease TTL must be positive, got %" PRId64, ttl_s);
    if (!lease_call(etcd, "/v3/lease/grant", ttl_s, 0, &i, &t, error))
        return false;
    if (i == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_PROTOCOL,
                            "etcd granted a lease without an ID");
    *id = i;
    if (granted_ttl != NULL)
        *granted_ttl = t;
    return true;
}

bool
mg_etcd_lease_keepalive(mg_etcd_t *etcd, int64_t id, int64_t *ttl, mg_error_t *error)
{
    int64_t i = 0, t = 0;

    if (!lease_call(etcd, "/v3/lease/keepalive", 0, id, &i, &t, error))
        return false;
    if (t <= 0) /* an expired lease answers with TTL omitted (0) */
        return mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_LEASE_NOT_FOUND,
                            "etcd lease %" PRId64 " has expired", id);
    if (ttl != NULL)
        *ttl = t;
    return true;
}

bool
mg_etcd_lease_revoke(mg_etcd_t *etcd, int64_t id, mg_error_t *error)
{
    return lease_call(etcd, "/v3/lease/revoke", 0, id, NULL, NULL, error);
}

/* ------------------------------------------------------------------------
 * Watch: the gateway streams one JSON object per message.
 * ------------------------------------------------------------------------ */

typedef struct {
    mg_buf_t pending;
    mg_etcd_watch_fn fn;
    void *userdata;
    int64_t next_revision; /* resume point */
    bool stop;             /* the callback said stop */
    bool canceled;         /* the server canceled the watch */
    bool failed;
    mg_error_t error;
} watch_state_t;

/* object_end returns the length of the first complete JSON object in s, or 0. */
static size_t
object_end(const char *s, size_t len, size_t *start)
{
    size_t i;
    int depth = 0;
    bool in_str = false, esc = false, begun = false;

    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!begun) {
            if (c == '{') {
                begun = true;
                *start = i;
                depth = 1;
            }
            continue;
        }
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{')
            depth++;
        else if (c == '}' && --depth == 0)
            return i + 1;
    }
    return 0;
}

static bool
watch_message(watch_state_t *ws, const char *json, size_t len)
{
    mg_etcd_watch_response_t r;
    bool keep = true;

    if (!mg_etcd_parse_watch(json, len, &r, &ws->error)) {
        /* "transport is closing" and other server errors end this stream only */
        if (ws->error.domain == MG_ERROR_DOMAIN_ETCD && ws->error.code != MG_ETCD_ERR_PROTOCOL &&
            ws->error.code != MG_ETCD_ERR_AUTH) {
            ws->canceled = true;
            return false;
        }
        ws->failed = true;
        return false;
    }
    if (r.compact_revision > 0) {
        keep = ws->fn(ws->userdata, NULL, 0, r.compact_revision);
        ws->next_revision = r.compact_revision;
        ws->canceled = true;
    } else {
        if (r.created && ws->next_revision == 0)
            ws->next_revision = r.header.revision + 1;
        if (r.nevents > 0) {
            keep = ws->fn(ws->userdata, r.events, r.nevents, 0);
            ws->next_revision = r.events[r.nevents - 1].kv.mod_revision + 1;
        }
        if (r.canceled)
            ws->canceled = true;
    }
    mg_etcd_watch_response_cleanup(&r);
    if (!keep)
        ws->stop = true;
    return keep && !ws->canceled;
}

static size_t
watch_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    watch_state_t *ws = userdata;
    size_t n = size * nmemb, end, start = 0;

    if (!mg_buf_append(&ws->pending, ptr, n, &ws->error)) {
        ws->failed = true;
        return 0;
    }
    while ((end = object_end(ws->pending.data, ws->pending.len, &start)) > 0) {
        bool go_on = watch_message(ws, ws->pending.data + start, end - start);

        memmove(ws->pending.data, ws->pending.data + end, ws->pending.len - end);
        ws->pending.len -= end;
        ws->pending.data[ws->pending.len] = '\0';
        if (!go_on)
            return 0; /* aborts the transfer */
    }
    return n;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
mg_etcd_watch(mg_etcd_t *etcd, const char *key, bool prefix, int64_t start_revision,
              int64_t timeout_ms, mg_etcd_watch_fn fn, void *userdata, mg_error_t *error)
{
    int64_t deadline = now_ms() + timeout_ms;
    watch_state_t ws;
    bool ok = true;
    int failures = 0;

    memset(&ws, 0, sizeof(ws));
    ws.fn = fn;
    ws.userdata = userdata;
    ws.next_revision = start_revision;
    mg_buf_init(&ws.pending, 16u * 1024 * 1024);
    while (!ws.stop) {
        int64_t left = deadline - now_ms();
        yajl_gen g;
        mg_buf_t body;
        char url[1024], auth[ETCD_TOKEN_SIZE + 32];
        struct curl_slist *headers = NULL;
        CURLcode rc;

        if (left <= 0)
            break;
        if (etcd->username != NULL && etcd->token[0] == '\0' &&
            !authenticate(etcd, etcd->endpoints[etcd->current], error)) {
            ok = false;
            break;
        }
        mg_buf_init(&body, 64 * 1024);
        g = yajl_gen_alloc(NULL);
        yajl_gen_map_open(g);
        mg_json_str(g, "create_request");
        yajl_gen_map_open(g);
        if (!gen_range_fields(g, key, prefix, error)) {
            yajl_gen_free(g);
            mg_buf_cleanup(&body);
            ok = false;
            break;
        }
        if (ws.next_revision > 0)
            gen_int(g, "start_revision", ws.next_revision);
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
        if (!finish(g, &body, error)) {
            mg_buf_cleanup(&body);
            ok = false;
            break;
        }
        snprintf(url, sizeof(url), "%s/v3/watch", etcd->endpoints[etcd->current]);
        curl_easy_reset(etcd->curl);
        headers = curl_slist_append(headers, "Content-Type: application/json");
        if (etcd->token[0] != '\0') {
            snprintf(auth, sizeof(auth), "Authorization: %s", etcd->token);
            headers = curl_slist_append(headers, auth);
        }
        setup_common(etcd, etcd->curl, headers, etcd->timeout_ms);
        curl_easy_setopt(etcd->curl, CURLOPT_URL, url);
        curl_easy_setopt(etcd->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(etcd->curl, CURLOPT_POSTFIELDS, body.data);
        curl_easy_setopt(etcd->curl, CURLOPT_POSTFIELDSIZE, (long)body.len);
        curl_easy_setopt(etcd->curl, CURLOPT_TIMEOUT_MS, (long)left);
        curl_easy_setopt(etcd->curl, CURLOPT_WRITEFUNCTION, watch_write);
        curl_easy_setopt(etcd->curl, CURLOPT_WRITEDATA, &ws);
        ws.canceled = false;
        mg_buf_reset(&ws.pending);
        rc = curl_easy_perform(etcd->curl);
        curl_slist_free_all(headers);
        mg_buf_cleanup(&body);
        if (ws.failed) {
            if (error != NULL)
                *error = ws.error;
            ok = false;
            break;
        }
        if (ws.stop || rc == CURLE_OPERATION_TIMEDOUT)
            break;
        if (ws.canceled) /* compacted or canceled by the server: reconnect */
            continue;
        if (rc != CURLE_OK) {
            /* broken stream or etcd away: retry (next endpoint, backoff) until the deadline */
            int64_t backoff = 100LL << (failures < 4 ? failures : 4);
            struct timespec ts;

            failures++;
            if (deadline - now_ms() <= backoff) {
                mg_error_set(error, MG_ERROR_DOMAIN_ETCD, MG_ETCD_ERR_UNAVAILABLE,
                             "could not keep an etcd watch on \"%s\": %s", url,
                             curl_easy_strerror(rc));
                ok = false;
                break;
            }
            etcd->current = (etcd->current + 1) % etcd->nendpoints;
            ts.tv_sec = backoff / 1000;
            ts.tv_nsec = (backoff % 1000) * 1000000L;
            nanosleep(&ts, NULL);
        } else {
            failures = 0;
        }
    }
    mg_buf_cleanup(&ws.pending);
    return ok;
}
