/*
 * tests/mongosim/msim_cmd.c - command dispatch (authentication, the
 * failCommand fail point, transactions, reply decoration with
 * operationTime and $clusterTime) and the handshake, catalog and
 * administrative commands.
 */
#include "msim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
append_ts(bson_t *b, const char *key, msim_ts_t ts)
{
    bson_append_timestamp(b, key, -1, ts.t, ts.i);
}

__thread msim_conn_t *msim_tls_conn;
__thread bool msim_tls_filter_orphans;
static __thread msim_ts_t tls_last_op;

void
msim_note_op(msim_ts_t ts)
{
    if (msim_ts_cmp(ts, tls_last_op) > 0)
        tls_last_op = ts;
}

/*
 * append_cluster_time adds operationTime (the time of the command's last
 * write, else the latest oplog time: what a read saw) and $clusterTime.
 */
static void
append_cluster_time(bson_t *reply)
{
    msim_ts_t now = msim_clock_now();
    bson_t ct, sig;
    uint8_t zero[20] = {0};
    /* a router has no oplog: its reads answer with the cluster time */
    append_ts(reply, "operationTime",
              tls_last_op.t != 0    ? tls_last_op
              : msim_srv->is_router ? now
                                    : msim_last_op());
    bson_append_document_begin(reply, "$clusterTime", -1, &ct);
    append_ts(&ct, "clusterTime", now);
    bson_append_document_begin(&ct, "signature", -1, &sig);
    bson_append_binary(&sig, "hash", -1, BSON_SUBTYPE_BINARY, zero, 20);
    bson_append_int64(&sig, "keyId", -1, 0);
    bson_append_document_end(&ct, &sig);
    bson_append_document_end(reply, &ct);
}

static const char *
str_field(const bson_t *cmd, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, cmd, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

bool
msim_write_allowed(const char *db, mg_error_t *error)
{
    if (!atomic_load(&msim_srv->write_blocked))
        return true;
    if (strcmp(db, "admin") == 0 || strcmp(db, "config") == 0 || strcmp(db, "local") == 0)
        return true;
    /* users holding bypassWriteBlockingMode (restore, root) write on, as on mongod */
    if (msim_tls_conn != NULL && msim_tls_conn->user != NULL &&
        msim_tls_conn->user->bypass_write_block)
        return true;
    return msim_fail(error, MSIM_E_USER_WRITES_BLOCKED, "User writes blocked");
}

bool
msim_write_lock(const char *db, mg_error_t *error)
{
    pthread_rwlock_wrlock(&msim_srv->lock);
    if (msim_write_allowed(db, error))
        return true;
    pthread_rwlock_unlock(&msim_srv->lock);
    return false;
}

/* ------------------------------------------------------------------------
 * Handshake and server information
 * ------------------------------------------------------------------------ */

static bool
cmd_hello(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t *r = ctx->reply, hosts, tv, lw, op, mop;
    char me[128];
    bson_iter_t it;
    msim_ts_t now = msim_last_op();
    bool legacy = strcmp(ctx->name, "hello") != 0;

    /* lastWrite: the latest oplog entry (one member: it is majority-committed
     * at once); lastWriteDate has the second granularity of its timestamp */

    /* client metadata: remember the application name for failCommand's appName */
    if (bson_iter_init_find(&it, ctx->cmd, "client") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t app;
        if (bson_iter_recurse(&it, &app) &&
            bson_iter_find_descendant(&app, "application.name", &app) && BSON_ITER_HOLDS_UTF8(&app))
            snprintf(ctx->conn->app_name, sizeof ctx->conn->app_name, "%s",
                     bson_iter_utf8(&app, NULL));
    }
    snprintf(me, sizeof me, "%s:%d", msim_srv->bind, msim_srv->port);
    if (bson_iter_init_find(&it, ctx->cmd, "helloOk") && msim_truthy(&it))
        BSON_APPEND_BOOL(r, "helloOk", true);
    BSON_APPEND_BOOL(r, legacy ? "ismaster" : "isWritablePrimary", true);
    bson_append_document_begin(r, "topologyVersion", -1, &tv);
    BSON_APPEND_OID(&tv, "processId", &msim_srv->process_id);
    BSON_APPEND_INT64(&tv, "counter", 0);
    bson_append_document_end(r, &tv);
    bson_append_array_begin(r, "hosts", -1, &hosts);
    BSON_APPEND_UTF8(&hosts, "0", me);
    bson_append_array_end(r, &hosts);
    BSON_APPEND_UTF8(r, "setName", msim_srv->name);
    BSON_APPEND_INT32(r, "setVersion", 1);
    BSON_APPEND_BOOL(r, "secondary", false);
    BSON_APPEND_UTF8(r, "primary", me);
    BSON_APPEND_UTF8(r, "me", me);
    BSON_APPEND_OID(r, "electionId", &msim_srv->election_id);
    bson_append_document_begin(r, "lastWrite", -1, &lw);
    bson_append_document_begin(&lw, "opTime", -1, &op);
    append_ts(&op, "ts", now);
    BSON_APPEND_INT64(&op, "t", 1);
    bson_append_document_end(&lw, &op);
    BSON_APPEND_DATE_TIME(&lw, "lastWriteDate", (int64_t)now.t * 1000);
    bson_append_document_begin(&lw, "majorityOpTime", -1, &mop);
    append_ts(&mop, "ts", now);
    BSON_APPEND_INT64(&mop, "t", 1);
    bson_append_document_end(&lw, &mop);
    BSON_APPEND_DATE_TIME(&lw, "majorityWriteDate", (int64_t)now.t * 1000);
    bson_append_document_end(r, &lw);
    msim_hello_common(ctx);
    return true;
}

void
msim_hello_common(msim_ctx_t *ctx)
{
    bson_t *r = ctx->reply;
    bson_iter_t it;
    BSON_APPEND_INT32(r, "maxBsonObjectSize", MSIM_MAX_BSON_SIZE);
    BSON_APPEND_INT32(r, "maxMessageSizeBytes", MSIM_MAX_MESSAGE_SIZE);
    BSON_APPEND_INT32(r, "maxWriteBatchSize", MSIM_MAX_WRITE_BATCH);
    BSON_APPEND_DATE_TIME(r, "localTime", msim_now_ms());
    BSON_APPEND_INT32(r, "logicalSessionTimeoutMinutes", 30);
    BSON_APPEND_INT64(r, "connectionId", ctx->conn->id);
    BSON_APPEND_INT32(r, "minWireVersion", 0);
    BSON_APPEND_INT32(r, "maxWireVersion", msim_srv->server_version == MSIM_VERSION_70 ? 21 : 17);
    BSON_APPEND_BOOL(r, "readOnly", false);
    if (msim_srv->auth && bson_iter_init_find(&it, ctx->cmd, "saslSupportedMechs")) {
        bson_t mechs;
        bson_append_array_begin(r, "saslSupportedMechs", -1, &mechs);
        BSON_APPEND_UTF8(&mechs, "0", "SCRAM-SHA-256");
        bson_append_array_end(r, &mechs);
    }
}

bool
msim_cmd_ping(msim_ctx_t *ctx, mg_error_t *error)
{
    return true;
}

/* msim_version_string is the version mongosim claims (--server-version). */
const char *
msim_version_string(int parts[3])
{
    if (msim_srv->server_version == MSIM_VERSION_70) {
        parts[0] = 7, parts[1] = 0, parts[2] = 12;
        return "7.0.12";
    }
    /* 6.0.8: the last 6.0 release before $changeStreamSplitLargeEvent (6.0.9) */
    parts[0] = 6, parts[1] = 0, parts[2] = 8;
    return "6.0.8";
}

bool
msim_cmd_build_info(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t arr;
    int v[3];
    BSON_APPEND_UTF8(ctx->reply, "version", msim_version_string(v));
    BSON_APPEND_UTF8(ctx->reply, "gitVersion", "mongosim");
    bson_append_array_begin(ctx->reply, "versionArray", -1, &arr);
    BSON_APPEND_INT32(&arr, "0", v[0]);
    BSON_APPEND_INT32(&arr, "1", v[1]);
    BSON_APPEND_INT32(&arr, "2", v[2]);
    BSON_APPEND_INT32(&arr, "3", 0);
    bson_append_array_end(ctx->reply, &arr);
    BSON_APPEND_INT32(ctx->reply, "bits", 64);
    BSON_APPEND_BOOL(ctx->reply, "debug", false);
    BSON_APPEND_INT32(ctx->reply, "maxBsonObjectSize", MSIM_MAX_BSON_SIZE);
    bson_append_array_begin(ctx->reply, "storageEngines", -1, &arr);
    BSON_APPEND_UTF8(&arr, "0", "mongosim-memory");
    bson_append_array_end(ctx->reply, &arr);
    return true;
}

static bool
cmd_end_sessions(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_txn_end_sessions(ctx->cmd);
    return true;
}

bool
msim_cmd_whatsmyuri(msim_ctx_t *ctx, mg_error_t *error)
{
    BSON_APPEND_UTF8(ctx->reply, "you", "127.0.0.1:0");
    return true;
}

bool
msim_cmd_get_parameter(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t fcv;
    bson_append_document_begin(ctx->reply, "featureCompatibilityVersion", -1, &fcv);
    BSON_APPEND_UTF8(&fcv, "version", msim_srv->server_version == MSIM_VERSION_70 ? "7.0" : "6.0");
    bson_append_document_end(ctx->reply, &fcv);
    BSON_APPEND_INT32(ctx->reply, "periodicNoopIntervalSecs", msim_srv->noop_interval_secs);
    BSON_APPEND_INT32(ctx->reply, "transactionLifetimeLimitSeconds",
                      (int32_t)(msim_srv->txn_lifetime_ms / 1000));
    return true;
}

bool
msim_cmd_server_status(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t conns, ops, mem;
    int64_t now = msim_now_ms();
    BSON_APPEND_UTF8(ctx->reply, "host", msim_srv->bind);
    {
        int v[3];
        BSON_APPEND_UTF8(ctx->reply, "version", msim_version_string(v));
    }
    BSON_APPEND_UTF8(ctx->reply, "process", msim_srv->is_router ? "mongos" : "mongod");
    BSON_APPEND_INT64(ctx->reply, "pid", (int64_t)getpid());
    BSON_APPEND_INT64(ctx->reply, "uptime", (now - msim_srv->start_ms) / 1000);
    BSON_APPEND_INT64(ctx->reply, "uptimeMillis", now - msim_srv->start_ms);
    BSON_APPEND_DATE_TIME(ctx->reply, "localTime", now);
    bson_append_document_begin(ctx->reply, "connections", -1, &conns);
    BSON_APPEND_INT32(&conns, "current", (int32_t)atomic_load(&msim_srv->connections));
    BSON_APPEND_INT32(&conns, "available", 100000);
    BSON_APPEND_INT32(&conns, "totalCreated", (int32_t)atomic_load(&msim_srv->total_connections));
    bson_append_document_end(ctx->reply, &conns);
    bson_append_document_begin(ctx->reply, "opcounters", -1, &ops);
    BSON_APPEND_INT64(&ops, "insert", atomic_load(&msim_srv->op_counts[0]));
    BSON_APPEND_INT64(&ops, "query", atomic_load(&msim_srv->op_counts[1]));
    BSON_APPEND_INT64(&ops, "update", atomic_load(&msim_srv->op_counts[2]));
    BSON_APPEND_INT64(&ops, "delete", atomic_load(&msim_srv->op_counts[3]));
    BSON_APPEND_INT64(&ops, "getmore", atomic_load(&msim_srv->op_counts[4]));
    BSON_APPEND_INT64(&ops, "command", atomic_load(&msim_srv->op_counts[5]));
    bson_append_document_end(ctx->reply, &ops);
    bson_append_document_begin(ctx->reply, "mem", -1, &mem);
    BSON_APPEND_INT32(&mem, "bits", 64);
    bson_append_document_end(ctx->reply, &mem);
    if (!msim_srv->is_router) {
        /* a replica-set member's repl section; userWriteBlockMode as mongod gives it:
         * 1 disabled, 2 enabled (0, unknown, only while it changes); mongos has none */
        bson_t repl;
        char me[128];
        snprintf(me, sizeof me, "%s:%d", msim_srv->bind, msim_srv->port);
        bson_append_document_begin(ctx->reply, "repl", -1, &repl);
        BSON_APPEND_UTF8(&repl, "setName", msim_srv->name);
        BSON_APPEND_BOOL(&repl, "isWritablePrimary", true);
        BSON_APPEND_BOOL(&repl, "secondary", false);
        BSON_APPEND_UTF8(&repl, "primary", me);
        BSON_APPEND_UTF8(&repl, "me", me);
        BSON_APPEND_INT32(&repl, "userWriteBlockMode",
                          atomic_load(&msim_srv->write_blocked) ? 2 : 1);
        bson_append_document_end(ctx->reply, &repl);
    }
    {
        bson_t cur, m;
        bson_append_document_begin(ctx->reply, "metrics", -1, &m);
        bson_append_document_begin(&m, "cursor", -1, &cur);
        BSON_APPEND_INT64(&cur, "open", (int64_t)msim_cursor_open_count());
        bson_append_document_end(&m, &cur);
        bson_append_document_end(ctx->reply, &m);
    }
    return true;
}

static bool
cmd_repl_status(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t members, m;
    char me[128];
    snprintf(me, sizeof me, "%s:%d", msim_srv->bind, msim_srv->port);
    BSON_APPEND_UTF8(ctx->reply, "set", msim_srv->name);
    BSON_APPEND_INT32(ctx->reply, "myState", 1);
    bson_append_array_begin(ctx->reply, "members", -1, &members);
    bson_append_document_begin(&members, "0", -1, &m);
    BSON_APPEND_INT32(&m, "_id", 0);
    BSON_APPEND_UTF8(&m, "name", me);
    BSON_APPEND_INT32(&m, "state", 1);
    BSON_APPEND_UTF8(&m, "stateStr", "PRIMARY");
    BSON_APPEND_BOOL(&m, "self", true);
    bson_append_document_end(&members, &m);
    bson_append_array_end(ctx->reply, &members);
    return true;
}

/* ------------------------------------------------------------------------
 * Catalog
 * ------------------------------------------------------------------------ */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool
cmd_list_databases(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t dbs;
    const char **names;
    size_t n = 0;
    uint64_t total = 0;
    bool name_only = false, filter = false;
    bson_iter_t it;
    uint32_t idx = 0;

    if (bson_iter_init_find(&it, ctx->cmd, "nameOnly"))
        name_only = msim_truthy(&it);
    if (msim_srv->auth) {
        /* as mongod: all databases with the listDatabases action, else (or
         * with authorizedDatabases: true) the ones the user has privileges on */
        bool has_list = msim_authz_has(ctx->conn, NULL, NULL, "listDatabases");
        bool given = bson_iter_init_find(&it, ctx->cmd, "authorizedDatabases");
        bool authorized_only = given ? msim_truthy(&it) : !has_list;
        if (given && !authorized_only && !has_list)
            return msim_fail(error, MSIM_E_UNAUTHORIZED,
                             "not authorized on admin to execute command { listDatabases: 1, "
                             "authorizedDatabases: false }");
        filter = authorized_only;
    }
    pthread_rwlock_rdlock(&msim_srv->lock);
    names = calloc(msim_srv->ncolls + 1, sizeof *names);
    for (size_t i = 0; i < msim_srv->ncolls; i++) {
        bool seen = false;
        for (size_t j = 0; j < n; j++)
            seen |= strcmp(names[j], msim_srv->colls[i]->db) == 0;
        if (!seen && (!filter || msim_authz_may_list_db(ctx->conn, msim_srv->colls[i]->db)))
            names[n++] = msim_srv->colls[i]->db;
    }
    qsort(names, n, sizeof *names, cmp_str);
    bson_append_array_begin(ctx->reply, "databases", -1, &dbs);
    for (size_t j = 0; j < n; j++) {
        bson_t d;
        char key[16];
        const char *k;
        uint64_t size = 0;
        for (size_t i = 0; i < msim_srv->ncolls; i++)
            if (strcmp(msim_srv->colls[i]->db, names[j]) == 0)
                size += msim_srv->colls[i]->bytes;
        total += size;
        bson_uint32_to_string(idx++, &k, key, sizeof key);
        bson_append_document_begin(&dbs, k, -1, &d);
        BSON_APPEND_UTF8(&d, "name", names[j]);
        if (!name_only) {
            BSON_APPEND_INT64(&d, "sizeOnDisk", (int64_t)size);
            BSON_APPEND_BOOL(&d, "empty", size == 0);
        }
        bson_append_document_end(&dbs, &d);
    }
    bson_append_array_end(ctx->reply, &dbs);
    pthread_rwlock_unlock(&msim_srv->lock);
    free(names);
    if (!name_only)
        BSON_APPEND_INT64(ctx->reply, "totalSize", (int64_t)total);
    return true;
}

static void
append_uuid(bson_t *b, const char *key, const uint8_t *uuid)
{
    bson_append_binary(b, key, -1, BSON_SUBTYPE_UUID, uuid, 16);
}

static bool
cmd_list_collections(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t filter_doc = BSON_INITIALIZER, cur, batch;
    bson_iter_t it;
    msim_matcher_t *m = NULL;
    bool name_only = false, only_authorized = false;
    uint32_t idx = 0;
    char ns[256];

    if (bson_iter_init_find(&it, ctx->cmd, "filter") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_t f;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&f, d, l);
        m = msim_matcher_new(&f, error);
        if (m == NULL)
            return false;
    }
    if (bson_iter_init_find(&it, ctx->cmd, "nameOnly"))
        name_only = msim_truthy(&it);
    /* authorizedCollections + nameOnly without listCollections: only the
     * collections the user has privileges on */
    only_authorized = name_only && bson_iter_init_find(&it, ctx->cmd, "authorizedCollections") &&
                      msim_truthy(&it) &&
                      !msim_authz_has(ctx->conn, ctx->db, NULL, "listCollections");
    snprintf(ns, sizeof ns, "%s.$cmd.listCollections", ctx->db);
    bson_append_document_begin(ctx->reply, "cursor", -1, &cur);
    BSON_APPEND_INT64(&cur, "id", 0);
    BSON_APPEND_UTF8(&cur, "ns", ns);
    bson_append_array_begin(&cur, "firstBatch", -1, &batch);
    pthread_rwlock_rdlock(&msim_srv->lock);
    for (size_t i = 0; i < msim_srv->ncolls; i++) {
        msim_coll_t *c = msim_srv->colls[i];
        bson_t d = BSON_INITIALIZER, info, idd;
        char key[16];
        const char *k;
        if (strcmp(c->db, ctx->db) != 0 ||
            (only_authorized && !msim_authz_may_see_coll(ctx->conn, c->db, c->name))) {
            bson_destroy(&d);
            continue;
        }
        BSON_APPEND_UTF8(&d, "name", c->name);
        {
            /* a view is a catalog entry created with viewOn; reading one is not
             * supported (docs/mongosim.md), listing it is */
            bson_iter_t vo;
            bool view = bson_iter_init_find(&vo, &c->options, "viewOn");
            BSON_APPEND_UTF8(&d, "type", view ? "view" : "collection");
        }
        if (!name_only) {
            bson_t opts;
            bson_append_document_begin(&d, "options", -1, &opts);
            bson_concat(&opts, &c->options);
            bson_append_document_end(&d, &opts);
            bson_append_document_begin(&d, "info", -1, &info);
            BSON_APPEND_BOOL(&info, "readOnly", false);
            append_uuid(&info, "uuid", c->uuid);
            bson_append_document_end(&d, &info);
            bson_append_document_begin(&d, "idIndex", -1, &idd);
            BSON_APPEND_INT32(&idd, "v", 2);
            {
                bson_t key2;
                bson_append_document_begin(&idd, "key", -1, &key2);
                BSON_APPEND_INT32(&key2, "_id", 1);
                bson_append_document_end(&idd, &key2);
            }
            BSON_APPEND_UTF8(&idd, "name", "_id_");
            bson_append_document_end(&d, &idd);
        }
        if (m == NULL || msim_matcher_match(m, bson_get_data(&d), d.len)) {
            bson_uint32_to_string(idx++, &k, key, sizeof key);
            bson_append_document(&batch, k, -1, &d);
        }
        bson_destroy(&d);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    bson_append_array_end(&cur, &batch);
    bson_append_document_end(ctx->reply, &cur);
    msim_matcher_destroy(m);
    bson_destroy(&filter_doc);
    return true;
}

static bool
coll_name_arg(msim_ctx_t *ctx, const char **coll, mg_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, ctx->cmd, ctx->name) || !BSON_ITER_HOLDS_UTF8(&it))
        return msim_fail(error, MSIM_E_INVALID_NAMESPACE, "collection name has invalid type %s",
                         bson_iter_init_find(&it, ctx->cmd, ctx->name)
                             ? msim_type_name(bson_iter_type(&it))
                             : "missing");
    *coll = bson_iter_utf8(&it, NULL);
    return msim_valid_coll_name(ctx->db, *coll, error);
}

static bool
cmd_create(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bool created;
    msim_coll_t *c;
    bson_iter_t it;
    if (!coll_name_arg(ctx, &coll, error) || !msim_write_allowed(ctx->db, error))
        return false;
    if (ctx->txn != NULL)
        return msim_fail(error, MSIM_E_OP_NOT_IN_TXN,
                         "Cannot run 'create' in a multi-document transaction (mongosim)");
    pthread_rwlock_wrlock(&msim_srv->lock);
    c = msim_catalog_ensure(ctx->db, coll, &created);
    if (!created) {
        pthread_rwlock_unlock(&msim_srv->lock);
        return msim_fail(error, MSIM_E_NAMESPACE_EXISTS, "Collection %s.%s already exists.",
                         ctx->db, coll);
    }
    bson_iter_init(&it, ctx->cmd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "create") == 0 || k[0] == '$' || strcmp(k, "lsid") == 0 ||
            strcmp(k, "txnNumber") == 0 || strcmp(k, "writeConcern") == 0 ||
            strcmp(k, "apiVersion") == 0)
            continue;
        msim_append_iter(&c->options, k, -1, &it);
        if (strcmp(k, "changeStreamPreAndPostImages") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_t e;
            bson_iter_recurse(&it, &e);
            c->pre_post_images = bson_iter_find(&e, "enabled") && msim_truthy(&e);
        }
    }
    {
        msim_oplog_entry_t *e = msim_oplog_entry_new("create", ctx->db, coll);
        msim_oplog_append(e);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    return true;
}

static bool
cmd_coll_mod(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    msim_coll_t *c;
    bson_iter_t it;
    if (!coll_name_arg(ctx, &coll, error))
        return false;
    pthread_rwlock_wrlock(&msim_srv->lock);
    c = msim_catalog_get(ctx->db, coll);
    if (c == NULL) {
        pthread_rwlock_unlock(&msim_srv->lock);
        return msim_fail(error, MSIM_E_NAMESPACE_NOT_FOUND, "ns does not exist: %s.%s", ctx->db,
                         coll);
    }
    if (bson_iter_init_find(&it, ctx->cmd, "changeStreamPreAndPostImages") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t e;
        bson_iter_recurse(&it, &e);
        c->pre_post_images = bson_iter_find(&e, "enabled") && msim_truthy(&e);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    return true;
}

/* drop_locked removes c and logs drop (+ the caller's invalidations). */
static void
drop_locked(msim_coll_t *c)
{
    msim_oplog_entry_t *e = msim_oplog_entry_new("drop", c->db, c->name);
    char ns[512];
    snprintf(ns, sizeof ns, "%s", c->ns);
    msim_oplog_append(e);
    msim_catalog_drop(c);
    msim_cursors_kill_ns(ns);
}

void
msim_drop_quiet(const char *db, const char *coll)
{
    msim_coll_t *c;
    pthread_rwlock_wrlock(&msim_srv->lock);
    c = msim_catalog_get(db, coll);
    if (c != NULL) {
        drop_locked(c);
        msim_srv->oplog_tail->from_migrate = true;
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
}

void
msim_drop_database_quiet(const char *db)
{
    bool any = false;
    pthread_rwlock_wrlock(&msim_srv->lock);
    for (size_t i = 0; i < msim_srv->ncolls;) {
        if (strcmp(msim_srv->colls[i]->db, db) == 0) {
            drop_locked(msim_srv->colls[i]);
            msim_srv->oplog_tail->from_migrate = true;
            any = true;
        } else {
            i++;
        }
    }
    if (any) {
        msim_oplog_append(msim_oplog_entry_new("dropDatabase", db, NULL));
        msim_srv->oplog_tail->from_migrate = true;
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
}

static bool
cmd_drop(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    msim_coll_t *c;
    if (!coll_name_arg(ctx, &coll, error) || !msim_write_allowed(ctx->db, error))
        return false;
    pthread_rwlock_wrlock(&msim_srv->lock);
    c = msim_catalog_get(ctx->db, coll);
    if (c == NULL) {
        pthread_rwlock_unlock(&msim_srv->lock);
        /* MongoDB 6.0 returns NamespaceNotFound; drivers ignore it */
        return msim_fail(error, MSIM_E_NAMESPACE_NOT_FOUND, "ns not found");
    }
    BSON_APPEND_INT32(ctx->reply, "nIndexesWas", 1);
    BSON_APPEND_UTF8(ctx->reply, "ns", c->ns);
    drop_locked(c);
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    return true;
}

static bool
cmd_drop_database(msim_ctx_t *ctx, mg_error_t *error)
{
    bool any = false;
    if (!msim_write_allowed(ctx->db, error))
        return false;
    pthread_rwlock_wrlock(&msim_srv->lock);
    for (size_t i = 0; i < msim_srv->ncolls;) {
        if (strcmp(msim_srv->colls[i]->db, ctx->db) == 0) {
            drop_locked(msim_srv->colls[i]);
            any = true;
        } else {
            i++;
        }
    }
    if (any) {
        msim_oplog_entry_t *e = msim_oplog_entry_new("dropDatabase", ctx->db, NULL);
        msim_oplog_append(e);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    BSON_APPEND_UTF8(ctx->reply, "dropped", ctx->db);
    return true;
}

static bool
split_ns(const char *ns, char *db, size_t dbsz, const char **coll)
{
    const char *dot = ns ? strchr(ns, '.') : NULL;
    if (dot == NULL || (size_t)(dot - ns) >= dbsz || dot == ns || dot[1] == '\0')
        return false;
    memcpy(db, ns, (size_t)(dot - ns));
    db[dot - ns] = '\0';
    *coll = dot + 1;
    return true;
}

/*
 * rename_locked renames c to to_db.to_coll as one oplog entry, dropping
 * target (when not NULL) inside it, as mongod's renameCollection with
 * dropTarget: one rename event, no drop event for the target (lock held).
 */
static void
rename_locked(msim_coll_t *c, const char *to_db, const char *to_coll, msim_coll_t *target)
{
    msim_oplog_entry_t *e = msim_oplog_entry_new("rename", c->db, c->name);
    e->to_db = strdup(to_db);
    e->to_coll = strdup(to_coll);
    e->drop_target = target != NULL;
    msim_oplog_append(e);
    if (target != NULL) {
        char ns[512];
        snprintf(ns, sizeof ns, "%s", target->ns);
        msim_catalog_drop(target);
        msim_cursors_kill_ns(ns);
    }
    msim_cursors_kill_ns(c->ns);
    free(c->db);
    free(c->name);
    bson_free(c->ns);
    c->db = strdup(to_db);
    c->name = strdup(to_coll);
    c->ns = bson_strdup_printf("%s.%s", to_db, to_coll);
}

/*
 * rename_across_locked moves c to another database the way mongod does:
 * the documents are inserted into a temporary collection
 * "tmpXXXXX.renameCollection" of the target database (insert events), that
 * collection is renamed to the target (dropping an existing target inside
 * the rename), and the source is dropped (a drop event). Lock held.
 */
static void
rename_across_locked(msim_coll_t *c, const char *to_db, const char *to_coll, msim_coll_t *target)
{
    static const char alnum[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    char tmp[64];
    msim_coll_t *t;
    msim_coll_iter_t it;
    msim_doc_t *d;
    do {
        char rnd[6];
        for (int i = 0; i < 5; i++)
            rnd[i] = alnum[rand() % (int)(sizeof alnum - 1)];
        rnd[5] = '\0';
        snprintf(tmp, sizeof tmp, "tmp%s.renameCollection", rnd);
    } while (msim_catalog_get(to_db, tmp) != NULL);
    t = msim_catalog_ensure(to_db, tmp, NULL);
    bson_concat(&t->options, &c->options);
    bson_destroy(&t->indexes);
    bson_copy_to(&c->indexes, &t->indexes);
    t->pre_post_images = c->pre_post_images;
    msim_oplog_append(msim_oplog_entry_new("create", to_db, tmp));
    msim_coll_iter_first(c, &it);
    while ((d = msim_coll_iter_next(&it)) != NULL) {
        bson_iter_t id;
        msim_doc_ref(d);
        if (msim_coll_insert(t, d, NULL)) {
            msim_doc_id(d, &id);
            msim_log_write("insert", t, d, NULL, &id, NULL, NULL, 0, false, (msim_ts_t){0, 0}, 0);
        }
    }
    rename_locked(t, to_db, to_coll, target);
    drop_locked(c);
}

void
msim_rename_quiet(const char *db, const char *from, const char *to)
{
    msim_coll_t *c;
    pthread_rwlock_wrlock(&msim_srv->lock);
    c = msim_catalog_get(db, from);
    if (c != NULL && msim_catalog_get(db, to) == NULL) {
        rename_locked(c, db, to, NULL);
        msim_srv->oplog_tail->from_migrate = true;
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
}

static bool
cmd_rename_collection(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *from = str_field(ctx->cmd, "renameCollection"), *to = str_field(ctx->cmd, "to");
    char fdb[128], tdb[128];
    const char *fcoll, *tcoll;
    msim_coll_t *c, *t;
    bson_iter_t it;
    bool drop_target = false;

    if (strcmp(ctx->db, "admin") != 0)
        return msim_fail(error, MSIM_E_UNAUTHORIZED,
                         "renameCollection may only be run against the admin database.");
    if (!split_ns(from, fdb, sizeof fdb, &fcoll) || !split_ns(to, tdb, sizeof tdb, &tcoll))
        return msim_fail(error, MSIM_E_INVALID_NAMESPACE, "Invalid namespace specified");
    if (!msim_valid_coll_name(tdb, tcoll, error) || !msim_write_allowed(fdb, error) ||
        !msim_write_allowed(tdb, error))
        return false;
    if (bson_iter_init_find(&it, ctx->cmd, "dropTarget"))
        drop_target = msim_truthy(&it);
    pthread_rwlock_wrlock(&msim_srv->lock);
    c = msim_catalog_get(fdb, fcoll);
    if (c == NULL) {
        pthread_rwlock_unlock(&msim_srv->lock);
        return msim_fail(error, MSIM_E_NAMESPACE_NOT_FOUND, "Source collection %s does not exist",
                         from);
    }
    t = msim_catalog_get(tdb, tcoll);
    if (t == c) {
        pthread_rwlock_unlock(&msim_srv->lock);
        return msim_fail(error, MSIM_E_ILLEGAL_OPERATION, "Can't rename a collection to itself");
    }
    if (t != NULL && !drop_target) {
        pthread_rwlock_unlock(&msim_srv->lock);
        return msim_fail(error, MSIM_E_NAMESPACE_EXISTS, "target namespace exists");
    }
    if (strcmp(fdb, tdb) == 0)
        rename_locked(c, tdb, tcoll, t);
    else
        rename_across_locked(c, tdb, tcoll, t);
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    return true;
}

/* index_named: c has an index of that name (lock held). */
static bool
index_named(const msim_coll_t *c, const char *name)
{
    bson_iter_t cur;
    bson_iter_init(&cur, &c->indexes);
    while (bson_iter_next(&cur)) {
        bson_iter_t n;
        if (bson_iter_recurse(&cur, &n) && bson_iter_find(&n, "name") && BSON_ITER_HOLDS_UTF8(&n) &&
            strcmp(bson_iter_utf8(&n, NULL), name) == 0)
            return true;
    }
    return false;
}

/* creates_index: createIndexes would build at least one new index (an index build starts). */
static bool
creates_index(const char *db, const char *coll, const bson_iter_t *indexes)
{
    bson_iter_t ix;
    bool any = false;
    msim_coll_t *c;
    pthread_rwlock_rdlock(&msim_srv->lock);
    c = msim_catalog_get(db, coll);
    bson_iter_recurse(indexes, &ix);
    while (!any && bson_iter_next(&ix)) {
        bson_iter_t f;
        if (BSON_ITER_HOLDS_DOCUMENT(&ix) && bson_iter_recurse(&ix, &f) &&
            bson_iter_find(&f, "name") && BSON_ITER_HOLDS_UTF8(&f))
            any = c == NULL || !index_named(c, bson_iter_utf8(&f, NULL));
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    return any;
}

static bool
cmd_create_indexes(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bson_iter_t it, ix;
    msim_coll_t *c;
    bool created;
    int before, after;
    if (!coll_name_arg(ctx, &coll, error) || !msim_write_allowed(ctx->db, error))
        return false;
    if (!bson_iter_init_find(&it, ctx->cmd, "indexes") || !BSON_ITER_HOLDS_ARRAY(&it))
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "BSON field 'createIndexes.indexes' is missing but a required field");
    if (creates_index(ctx->db, coll, &it) && !msim_index_build_begin(ctx->db, error))
        return false;
    pthread_rwlock_wrlock(&msim_srv->lock);
    /* checked again: write blocking may have been enabled during the build */
    if (!msim_write_allowed(ctx->db, error)) {
        pthread_rwlock_unlock(&msim_srv->lock);
        return false;
    }
    c = msim_catalog_ensure(ctx->db, coll, &created);
    before = (int)bson_count_keys(&c->indexes);
    bson_iter_recurse(&it, &ix);
    while (bson_iter_next(&ix)) {
        bson_iter_t f, e;
        const char *name;
        bool exists = false;
        char key[16];
        const char *k;
        const uint8_t *d;
        uint32_t l;
        bson_t spec;
        if (!BSON_ITER_HOLDS_DOCUMENT(&ix) || !bson_iter_recurse(&ix, &f) ||
            !bson_iter_find(&f, "name") || !BSON_ITER_HOLDS_UTF8(&f) ||
            !bson_iter_recurse(&ix, &e) || !bson_iter_find(&e, "key") ||
            !BSON_ITER_HOLDS_DOCUMENT(&e)) {
            pthread_rwlock_unlock(&msim_srv->lock);
            return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                             "index specification must have a 'key' document and a 'name'");
        }
        name = bson_iter_utf8(&f, NULL);
        exists = index_named(c, name);
        if (exists)
            continue;
        bson_iter_document(&ix, &l, &d);
        bson_init_static(&spec, d, l);
        bson_uint32_to_string(bson_count_keys(&c->indexes), &k, key, sizeof key);
        {
            bson_t copy = BSON_INITIALIZER, *nidx = bson_copy(&c->indexes);
            bson_append_document_begin(nidx, k, -1, &copy);
            BSON_APPEND_INT32(&copy, "v", 2);
            bson_concat(&copy, &spec);
            bson_append_document_end(nidx, &copy);
            bson_destroy(&c->indexes);
            bson_init(&c->indexes);
            bson_concat(&c->indexes, nidx);
            bson_destroy(nidx);
        }
    }
    after = (int)bson_count_keys(&c->indexes);
    pthread_rwlock_unlock(&msim_srv->lock);
    BSON_APPEND_INT32(ctx->reply, "numIndexesBefore", before);
    BSON_APPEND_INT32(ctx->reply, "numIndexesAfter", after);
    BSON_APPEND_BOOL(ctx->reply, "createdCollectionAutomatically", created);
    return true;
}

static bool
cmd_list_indexes(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    msim_coll_t *c;
    bson_t cur, batch;
    if (!coll_name_arg(ctx, &coll, error))
        return false;
    pthread_rwlock_rdlock(&msim_srv->lock);
    c = msim_catalog_get(ctx->db, coll);
    if (c == NULL) {
        pthread_rwlock_unlock(&msim_srv->lock);
        return msim_fail(error, MSIM_E_NAMESPACE_NOT_FOUND, "ns does not exist: %s.%s", ctx->db,
                         coll);
    }
    bson_append_document_begin(ctx->reply, "cursor", -1, &cur);
    BSON_APPEND_INT64(&cur, "id", 0);
    BSON_APPEND_UTF8(&cur, "ns", c->ns);
    bson_append_array_begin(&cur, "firstBatch", -1, &batch);
    bson_concat(&batch, &c->indexes);
    bson_append_array_end(&cur, &batch);
    bson_append_document_end(ctx->reply, &cur);
    pthread_rwlock_unlock(&msim_srv->lock);
    return true;
}

static bool
cmd_drop_indexes(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    msim_coll_t *c;
    bson_iter_t it, cur;
    bson_t kept = BSON_INITIALIZER;
    const char *name = NULL;
    bool all = false, found = false;
    uint32_t idx = 0;
    int before;
    if (!coll_name_arg(ctx, &coll, error) || !msim_write_allowed(ctx->db, error))
        return false;
    if (bson_iter_init_find(&it, ctx->cmd, "index")) {
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            name = bson_iter_utf8(&it, NULL);
            all = strcmp(name, "*") == 0;
        } else if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return msim_fail(error, MSIM_E_TYPE_MISMATCH, "index must be a string or a document");
        }
    }
    pthread_rwlock_wrlock(&msim_srv->lock);
    c = msim_catalog_get(ctx->db, coll);
    if (c == NULL) {
        pthread_rwlock_unlock(&msim_srv->lock);
        bson_destroy(&kept);
        return msim_fail(error, MSIM_E_NAMESPACE_NOT_FOUND, "ns not found %s.%s", ctx->db, coll);
    }
    if (name != NULL && strcmp(name, "_id_") == 0) {
        pthread_rwlock_unlock(&msim_srv->lock);
        bson_destroy(&kept);
        return msim_fail(error, 72, "cannot drop _id index");
    }
    before = (int)bson_count_keys(&c->indexes);
    bson_iter_init(&cur, &c->indexes);
    while (bson_iter_next(&cur)) {
        bson_iter_t n, k;
        bool drop = false;
        bson_iter_recurse(&cur, &n);
        bson_iter_find(&n, "name");
        if (strcmp(bson_iter_utf8(&n, NULL), "_id_") != 0) {
            if (all)
                drop = true;
            else if (name != NULL)
                drop = strcmp(bson_iter_utf8(&n, NULL), name) == 0;
            else if (bson_iter_recurse(&cur, &k) && bson_iter_find(&k, "key")) {
                drop = msim_cmp(&k, &it) == 0;
            }
        }
        if (drop) {
            found = true;
        } else {
            char key[16];
            const char *ks;
            bson_uint32_to_string(idx++, &ks, key, sizeof key);
            msim_append_iter(&kept, ks, -1, &cur);
        }
    }
    if (!found && !all) {
        pthread_rwlock_unlock(&msim_srv->lock);
        bson_destroy(&kept);
        return msim_fail(error, MSIM_E_INDEX_NOT_FOUND, "index not found with name [%s]",
                         name ? name : "?");
    }
    bson_destroy(&c->indexes);
    bson_init(&c->indexes);
    bson_concat(&c->indexes, &kept);
    pthread_rwlock_unlock(&msim_srv->lock);
    bson_destroy(&kept);
    BSON_APPEND_INT32(ctx->reply, "nIndexesWas", before);
    return true;
}

void
msim_coll_stats(const msim_coll_t *c, bson_t *b, int64_t scale)
{
    int64_t count = (int64_t)msim_coll_count(c), size = (int64_t)c->bytes;
    int nidx = (int)bson_count_keys(&c->indexes);
    bson_t sizes;
    BSON_APPEND_INT64(b, "size", size / scale);
    BSON_APPEND_INT64(b, "count", count);
    BSON_APPEND_INT64(b, "avgObjSize", count ? size / count : 0);
    BSON_APPEND_INT64(b, "storageSize", (size + 4095) / 4096 * 4096 / scale);
    BSON_APPEND_INT64(b, "freeStorageSize", 0);
    BSON_APPEND_BOOL(b, "capped", false);
    BSON_APPEND_INT32(b, "nindexes", nidx);
    BSON_APPEND_INT64(b, "totalIndexSize", (count * 24 + 4096) / scale);
    BSON_APPEND_INT64(b, "totalSize", ((size + 4095) / 4096 * 4096 + count * 24 + 4096) / scale);
    bson_append_document_begin(b, "indexSizes", -1, &sizes);
    BSON_APPEND_INT64(&sizes, "_id_", (count * 24 + 4096) / scale);
    bson_append_document_end(b, &sizes);
    BSON_APPEND_INT32(b, "scaleFactor", (int32_t)scale);
}

static bool
cmd_coll_stats(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    msim_coll_t *c;
    bson_iter_t it;
    int64_t scale = 1;
    if (!coll_name_arg(ctx, &coll, error))
        return false;
    if (bson_iter_init_find(&it, ctx->cmd, "scale") && (!msim_iter_int64(&it, &scale) || scale < 1))
        return msim_fail(error, MSIM_E_BAD_VALUE, "scale has to be >= 1");
    pthread_rwlock_rdlock(&msim_srv->lock);
    c = msim_catalog_get(ctx->db, coll);
    BSON_APPEND_UTF8(ctx->reply, "ns", c ? c->ns : coll);
    if (c == NULL) {
        /* 6.0 answers with zeros for a missing collection */
        BSON_APPEND_INT64(ctx->reply, "size", 0);
        BSON_APPEND_INT64(ctx->reply, "count", 0);
        BSON_APPEND_INT64(ctx->reply, "storageSize", 0);
        BSON_APPEND_INT32(ctx->reply, "nindexes", 0);
        BSON_APPEND_INT64(ctx->reply, "totalIndexSize", 0);
    } else {
        msim_coll_stats(c, ctx->reply, scale);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    return true;
}

static bool
cmd_db_stats(msim_ctx_t *ctx, mg_error_t *error)
{
    int64_t colls = 0, objects = 0, size = 0, idx = 0;
    pthread_rwlock_rdlock(&msim_srv->lock);
    for (size_t i = 0; i < msim_srv->ncolls; i++) {
        msim_coll_t *c = msim_srv->colls[i];
        if (strcmp(c->db, ctx->db) != 0)
            continue;
        colls++;
        objects += (int64_t)msim_coll_count(c);
        size += (int64_t)c->bytes;
        idx += (int64_t)bson_count_keys(&c->indexes);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    BSON_APPEND_UTF8(ctx->reply, "db", ctx->db);
    BSON_APPEND_INT64(ctx->reply, "collections", colls);
    BSON_APPEND_INT64(ctx->reply, "views", 0);
    BSON_APPEND_INT64(ctx->reply, "objects", objects);
    BSON_APPEND_DOUBLE(ctx->reply, "avgObjSize", objects ? (double)size / (double)objects : 0);
    BSON_APPEND_INT64(ctx->reply, "dataSize", size);
    BSON_APPEND_INT64(ctx->reply, "storageSize", (size + 4095) / 4096 * 4096);
    BSON_APPEND_INT64(ctx->reply, "indexes", idx);
    BSON_APPEND_INT64(ctx->reply, "indexSize", objects * 24);
    BSON_APPEND_INT64(ctx->reply, "totalSize", (size + 4095) / 4096 * 4096 + objects * 24);
    BSON_APPEND_DOUBLE(ctx->reply, "scaleFactor", 1);
    return true;
}

/* ------------------------------------------------------------------------
 * Write blocking and fail points
 * ------------------------------------------------------------------------ */

static void
fp_clear(msim_failpoint_t *fp)
{
    for (size_t i = 0; i < fp->ncommands; i++)
        free(fp->commands[i]);
    free(fp->commands);
    bson_destroy(&fp->error_labels);
    bson_destroy(&fp->write_concern_error);
    memset(fp, 0, sizeof *fp);
    bson_init(&fp->error_labels);
    bson_init(&fp->write_concern_error);
}

/*
 * hang_index_build_fail_point: mode "alwaysOn" makes user index builds hang
 * after they start (createIndexes waits), "off" lets them finish; as the
 * fail point of that name on mongod, it gives tests an index build in
 * progress.
 */
static bool
hang_index_build_fail_point(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it;
    const char *mode;
    if (!bson_iter_init_find(&it, ctx->cmd, "mode") || !BSON_ITER_HOLDS_UTF8(&it))
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "hangAfterStartingIndexBuild supports mode alwaysOn and off");
    mode = bson_iter_utf8(&it, NULL);
    if (strcmp(mode, "alwaysOn") != 0 && strcmp(mode, "off") != 0)
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "hangAfterStartingIndexBuild supports mode alwaysOn and off");
    pthread_mutex_lock(&msim_srv->glock_mu);
    atomic_store(&msim_srv->fp_hang_index_build, strcmp(mode, "alwaysOn") == 0);
    pthread_cond_broadcast(&msim_srv->glock_cv);
    pthread_mutex_unlock(&msim_srv->glock_mu);
    BSON_APPEND_INT32(ctx->reply, "count", 0);
    return true;
}

bool
msim_cmd_configure_fail_point(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *name = str_field(ctx->cmd, "configureFailPoint");
    bson_iter_t it, d;
    msim_failpoint_t fp;
    if (strcmp(ctx->db, "admin") != 0)
        return msim_fail(error, MSIM_E_UNAUTHORIZED,
                         "configureFailPoint may only be run against the admin database.");
    if (name != NULL && strcmp(name, "hangAfterStartingIndexBuild") == 0)
        return hang_index_build_fail_point(ctx, error);
    if (name == NULL ||
        (strcmp(name, "failCommand") != 0 && strcmp(name, "failGetMoreAfterCursorCheckout") != 0))
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "Cannot find failpoint: %s (mongosim implements failCommand, "
                         "failGetMoreAfterCursorCheckout and hangAfterStartingIndexBuild)",
                         name ? name : "?");
    memset(&fp, 0, sizeof fp);
    bson_init(&fp.error_labels);
    bson_init(&fp.write_concern_error);
    if (!bson_iter_init_find(&it, ctx->cmd, "mode")) {
        fp_clear(&fp);
        bson_destroy(&fp.error_labels);
        bson_destroy(&fp.write_concern_error);
        return msim_fail(error, MSIM_E_BAD_VALUE, "mode is required");
    }
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        const char *mode = bson_iter_utf8(&it, NULL);
        if (strcmp(mode, "alwaysOn") == 0) {
            fp.active = true;
            fp.times = -1;
        } else if (strcmp(mode, "off") == 0) {
            fp.active = false;
        } else {
            bson_destroy(&fp.error_labels);
            bson_destroy(&fp.write_concern_error);
            return msim_fail(error, MSIM_E_BAD_VALUE, "unknown mode %s", mode);
        }
    } else if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t m;
        bson_iter_recurse(&it, &m);
        if (bson_iter_find(&m, "times") && msim_iter_int64(&m, &fp.times) && fp.times > 0) {
            fp.active = true;
        } else {
            bson_destroy(&fp.error_labels);
            bson_destroy(&fp.write_concern_error);
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "mongosim supports mode alwaysOn, off and {times: n}");
        }
    } else {
        bson_destroy(&fp.error_labels);
        bson_destroy(&fp.write_concern_error);
        return msim_fail(error, MSIM_E_TYPE_MISMATCH, "mode must be a string or a document");
    }
    if (bson_iter_init_find(&it, ctx->cmd, "data") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_recurse(&it, &d);
        while (bson_iter_next(&d)) {
            const char *k = bson_iter_key(&d);
            if (strcmp(k, "failCommands") == 0 && BSON_ITER_HOLDS_ARRAY(&d)) {
                bson_iter_t c;
                bson_iter_recurse(&d, &c);
                while (bson_iter_next(&c)) {
                    if (!BSON_ITER_HOLDS_UTF8(&c))
                        continue;
                    fp.commands = realloc(fp.commands, (fp.ncommands + 1) * sizeof(char *));
                    fp.commands[fp.ncommands++] = strdup(bson_iter_utf8(&c, NULL));
                }
            } else if (strcmp(k, "errorCode") == 0) {
                int64_t code = 0;
                msim_iter_int64(&d, &code);
                fp.error_code = (int32_t)code;
                fp.has_error_code = true;
            } else if (strcmp(k, "errorLabels") == 0 && BSON_ITER_HOLDS_ARRAY(&d)) {
                bson_iter_t c;
                uint32_t n = 0;
                bson_iter_recurse(&d, &c);
                while (bson_iter_next(&c)) {
                    char key[16];
                    const char *idx;
                    if (!BSON_ITER_HOLDS_UTF8(&c))
                        continue;
                    bson_uint32_to_string(n++, &idx, key, sizeof key);
                    msim_append_iter(&fp.error_labels, idx, -1, &c);
                }
            } else if (strcmp(k, "closeConnection") == 0) {
                fp.close_connection = msim_truthy(&d);
            } else if (strcmp(k, "blockConnection") == 0) {
                fp.block_connection = msim_truthy(&d);
            } else if (strcmp(k, "blockTimeMS") == 0) {
                msim_iter_int64(&d, &fp.block_ms);
            } else if (strcmp(k, "appName") == 0 && BSON_ITER_HOLDS_UTF8(&d)) {
                snprintf(fp.app_name, sizeof fp.app_name, "%s", bson_iter_utf8(&d, NULL));
            } else if (strcmp(k, "writeConcernError") == 0 && BSON_ITER_HOLDS_DOCUMENT(&d)) {
                const uint8_t *dd;
                uint32_t l;
                bson_t w;
                bson_iter_document(&d, &l, &dd);
                bson_init_static(&w, dd, l);
                bson_concat(&fp.write_concern_error, &w);
                fp.has_wce = true;
            }
        }
    }
    pthread_mutex_lock(&msim_srv->fp_mu);
    {
        /* bson_t must not be copied by value (a grown one points into itself) */
        msim_failpoint_t *dst =
            strcmp(name, "failCommand") == 0 ? &msim_srv->fp : &msim_srv->fp_getmore;
        fp_clear(dst);
        bson_concat(&dst->error_labels, &fp.error_labels);
        bson_concat(&dst->write_concern_error, &fp.write_concern_error);
        bson_destroy(&fp.error_labels);
        bson_destroy(&fp.write_concern_error);
        dst->active = fp.active;
        dst->times = fp.times;
        dst->commands = fp.commands;
        dst->ncommands = fp.ncommands;
        dst->error_code = fp.error_code;
        dst->has_error_code = fp.has_error_code;
        dst->close_connection = fp.close_connection;
        dst->block_connection = fp.block_connection;
        dst->block_ms = fp.block_ms;
        memcpy(dst->app_name, fp.app_name, sizeof dst->app_name);
        dst->has_wce = fp.has_wce;
    }
    pthread_mutex_unlock(&msim_srv->fp_mu);
    BSON_APPEND_INT32(ctx->reply, "count", 0);
    return true;
}

typedef enum { FP_NONE, FP_ERROR, FP_CLOSE, FP_WCE } fp_action_t;

/* check_fail_point decides whether the fail point fires for this command. */
static fp_action_t
check_fail_point(msim_conn_t *conn, const char *name, int32_t *code, bson_t *labels, bson_t *wce,
                 int64_t *block_ms)
{
    msim_failpoint_t *fp = &msim_srv->fp;
    fp_action_t act = FP_NONE;
    bool hit = false;
    *block_ms = 0;
    pthread_mutex_lock(&msim_srv->fp_mu);
    if (fp->active) {
        for (size_t i = 0; i < fp->ncommands; i++)
            hit |= strcmp(fp->commands[i], name) == 0;
        if (hit && fp->app_name[0] != '\0' && strcmp(fp->app_name, conn->app_name) != 0)
            hit = false;
    }
    if (hit) {
        if (fp->block_connection)
            *block_ms = fp->block_ms;
        if (fp->close_connection)
            act = FP_CLOSE;
        else if (fp->has_error_code)
            act = FP_ERROR;
        else if (fp->has_wce)
            act = FP_WCE;
        *code = fp->error_code;
        bson_concat(labels, &fp->error_labels);
        bson_concat(wce, &fp->write_concern_error);
        if (fp->times > 0 && --fp->times == 0)
            fp->active = false;
    }
    pthread_mutex_unlock(&msim_srv->fp_mu);
    return act;
}

/* ------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */

static const msim_cmd_entry_t commands[] = {
    {"hello", cmd_hello, true, 5, false},
    {"isMaster", cmd_hello, true, 5, false},
    {"ismaster", cmd_hello, true, 5, false},
    {"ping", msim_cmd_ping, true, 5, false},
    {"buildInfo", msim_cmd_build_info, true, 5, false},
    {"buildinfo", msim_cmd_build_info, true, 5, false},
    {"endSessions", cmd_end_sessions, true, 5, false},
    {"saslStart", msim_cmd_sasl_start, true, 5, false},
    {"saslContinue", msim_cmd_sasl_continue, true, 5, false},
    {"whatsmyuri", msim_cmd_whatsmyuri, true, 5, false},
    {"connectionStatus", msim_cmd_connection_status, true, 5, false},
    {"usersInfo", msim_cmd_users_info, false, 5, true},
    {"getParameter", msim_cmd_get_parameter, false, 5, false},
    {"serverStatus", msim_cmd_server_status, false, 5, false},
    {"replSetGetStatus", cmd_repl_status, false, 5, false},
    {"listDatabases", cmd_list_databases, false, 5, true},
    {"listCollections", cmd_list_collections, false, 5, true},
    {"create", cmd_create, false, 5, true},
    {"collMod", cmd_coll_mod, false, 5, true},
    {"drop", cmd_drop, false, 5, true},
    {"dropDatabase", cmd_drop_database, false, 5, true},
    {"renameCollection", cmd_rename_collection, false, 5, true},
    {"createIndexes", cmd_create_indexes, false, 5, true},
    {"listIndexes", cmd_list_indexes, false, 5, true},
    {"dropIndexes", cmd_drop_indexes, false, 5, true},
    {"deleteIndexes", cmd_drop_indexes, false, 5, true},
    {"collStats", cmd_coll_stats, false, 5, true},
    {"dbStats", cmd_db_stats, false, 5, true},
    {"setUserWriteBlockMode", msim_cmd_set_user_write_block_mode, false, 5, false},
    {"configureFailPoint", msim_cmd_configure_fail_point, false, 5, false},
    {"insert", msim_cmd_insert, false, 0, true},
    {"update", msim_cmd_update, false, 2, true},
    {"delete", msim_cmd_delete, false, 3, true},
    {"find", msim_cmd_find, false, 1, true},
    {"findAndModify", msim_cmd_find_and_modify, false, 5, true},
    {"findandmodify", msim_cmd_find_and_modify, false, 5, true},
    {"count", msim_cmd_count, false, 5, true},
    {"distinct", msim_cmd_distinct, false, 5, true},
    {"getMore", msim_cmd_get_more, false, 4, true},
    {"killCursors", msim_cmd_kill_cursors, false, 5, false},
    {"aggregate", msim_cmd_aggregate, false, 5, true},
    {"commitTransaction", msim_cmd_commit_txn, false, 5, false},
    {"abortTransaction", msim_cmd_abort_txn, false, 5, false},
};

/* error_reply replaces ctx's reply with the error, its code name and labels:
 * the fail point's, else ResumableChangeStreamError or TransientTransactionError. */
static void
error_reply(msim_ctx_t *ctx, mg_error_t *err, const bson_t *fp_labels)
{
    bson_t *reply = ctx->reply;
    const char *label = NULL;
    bson_reinit(reply);
    msim_utf8_sanitize(err->message);
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", err->message);
    BSON_APPEND_INT32(reply, "code", err->code);
    BSON_APPEND_UTF8(reply, "codeName", msim_code_name(err->code));
    if (!bson_empty(fp_labels)) {
        BSON_APPEND_ARRAY(reply, "errorLabels", fp_labels);
        return;
    }
    if (ctx->resumable_error)
        label = "ResumableChangeStreamError";
    else if ((ctx->txn != NULL || bson_has_field(ctx->cmd, "autocommit")) &&
             (err->code == MSIM_E_NO_SUCH_TRANSACTION || err->code == MSIM_E_WRITE_CONFLICT ||
              err->code == MSIM_E_LOCK_TIMEOUT))
        label = "TransientTransactionError";
    if (label != NULL) {
        bson_t labels;
        bson_append_array_begin(reply, "errorLabels", -1, &labels);
        BSON_APPEND_UTF8(&labels, "0", label);
        bson_append_array_end(reply, &labels);
    }
}

void
msim_dispatch(msim_conn_t *conn, const bson_t *cmd, bson_t *reply)
{
    bson_iter_t it;
    const msim_cmd_entry_t *entry = NULL;
    msim_ctx_t ctx;
    mg_error_t err;
    bool ok;
    const char *name;
    int32_t fp_code = 0;
    bson_t fp_labels = BSON_INITIALIZER, fp_wce = BSON_INITIALIZER;
    int64_t block_ms;
    fp_action_t fp;

    memset(&ctx, 0, sizeof ctx);
    memset(&err, 0, sizeof err);
    msim_tls_conn = conn;
    tls_last_op = (msim_ts_t){0, 0};
    ctx.conn = conn;
    ctx.cmd = cmd;
    ctx.reply = reply;
    if (!bson_iter_init(&it, cmd) || !bson_iter_next(&it)) {
        ok = msim_fail(&err, MSIM_E_FAILED_TO_PARSE, "empty command document");
        goto done;
    }
    name = bson_iter_key(&it);
    ctx.name = name;
    ctx.db = str_field(cmd, "$db");
    if (ctx.db == NULL) {
        ok = msim_fail(&err, 40571, "OP_MSG requests require a $db argument");
        goto done;
    }
    if (msim_srv->is_router) {
        entry = msim_router_command(name);
    } else {
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(commands[i].name, name) == 0) {
                entry = &commands[i];
                break;
            }
    }
    if (entry == NULL) {
        ok = msim_fail(&err, MSIM_E_COMMAND_NOT_FOUND, "no such command: '%s'", name);
        goto done;
    }
    atomic_fetch_add(&msim_srv->op_counts[entry->counter], 1);
    if (!conn->authenticated && !entry->no_auth) {
        ok = msim_fail(&err, MSIM_E_UNAUTHORIZED, "command %s requires authentication", name);
        goto done;
    }
    if (!msim_authz_command(&ctx, &err)) {
        ok = false;
        goto done;
    }
    if (strcmp(name, "configureFailPoint") != 0) {
        fp = check_fail_point(conn, name, &fp_code, &fp_labels, &fp_wce, &block_ms);
        if (msim_srv->wait_cap_ms >= 0 && block_ms > msim_srv->wait_cap_ms)
            block_ms = msim_srv->wait_cap_ms;
        if (block_ms > 0) {
            struct timespec ts = {.tv_sec = block_ms / 1000,
                                  .tv_nsec = (block_ms % 1000) * 1000000};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
        }
        if (fp == FP_CLOSE) {
            conn->close_after_reply = true;
            ok = true;
            goto done;
        }
        if (fp == FP_ERROR) {
            ok = msim_fail(&err, fp_code, "Failing command %s via 'failCommand' failpoint", name);
            goto done;
        }
    } else {
        fp = FP_NONE;
    }
    if (bson_iter_init_find(&it, cmd, "lsid") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&ctx.lsid_storage, d, l);
        ctx.lsid = &ctx.lsid_storage;
    }
    if (bson_iter_init_find(&it, cmd, "txnNumber") && msim_iter_int64(&it, &ctx.txn_number))
        ctx.has_txn_number = true;
    /* a router coordinates transactions itself (msim_router.c) */
    if (!msim_srv->is_router && !msim_txn_begin_command(&ctx, &err)) {
        ok = false;
        goto done;
    }
    /* routed by a router: operations skip documents this shard does not own */
    msim_tls_filter_orphans = conn->internal && bson_has_field(cmd, "shardVersion");
    /* a transaction holds the global lock from its first statement on */
    if (entry->locks && ctx.txn == NULL)
        msim_glock_enter();
    ok = entry->fn(&ctx, &err);
    msim_glock_leave();
    if (ctx.txn != NULL && strcmp(name, "commitTransaction") != 0 &&
        strcmp(name, "abortTransaction") != 0 && (!ok || bson_has_field(reply, "writeErrors")))
        msim_txn_fail(ctx.txn); /* a failed statement aborts the transaction */
    if (ok && fp == FP_WCE)
        BSON_APPEND_DOCUMENT(reply, "writeConcernError", &fp_wce);

done:
    if (ok) {
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    } else {
        error_reply(&ctx, &err, &fp_labels);
    }
    if (!ok && mg_log_enabled(MG_LOG_DEBUG))
        mg_log_write(MG_LOG_DEBUG, "mongosim", "mongosim.command_failed",
                     MG_LOG_FIELDS(MG_LOG_STR("command", ctx.name ? ctx.name : "?"),
                                   MG_LOG_INT("err_code", err.code),
                                   MG_LOG_INT("connection", conn->id)),
                     "%s", err.message);
    append_cluster_time(reply);
    bson_destroy(&fp_labels);
    bson_destroy(&fp_wce);
}

void
msim_dispatch_internal(msim_server_t *target, const bson_t *cmd, bson_t *reply)
{
    msim_server_t *saved_srv = msim_srv;
    msim_conn_t *saved_conn = msim_tls_conn, iconn;
    msim_ts_t saved_op = tls_last_op;
    bool saved_filter = msim_tls_filter_orphans;
    msim_snapshot_hook_t saved_hook = msim_tls_snapshot_hook;
    void *saved_arg = msim_tls_snapshot_arg;
    msim_tls_snapshot_hook = NULL; /* the shard reads its own store */
    memset(&iconn, 0, sizeof iconn);
    iconn.fd = -1;
    iconn.id = saved_conn ? saved_conn->id : 0;
    iconn.authenticated = true;
    iconn.user = saved_conn ? saved_conn->user : NULL;
    iconn.internal = true;
    iconn.server = target;
    msim_srv = target;
    msim_dispatch(&iconn, cmd, reply);
    if (iconn.close_after_reply) {
        /* a fail point closed the shard's connection: the router sees a network error */
        bson_reinit(reply);
        BSON_APPEND_DOUBLE(reply, "ok", 0.0);
        BSON_APPEND_UTF8(reply, "errmsg", "connection to the shard closed");
        BSON_APPEND_INT32(reply, "code", 6);
        BSON_APPEND_UTF8(reply, "codeName", msim_code_name(6));
    }
    msim_srv = saved_srv;
    msim_tls_conn = saved_conn;
    msim_tls_filter_orphans = saved_filter;
    msim_tls_snapshot_hook = saved_hook;
    msim_tls_snapshot_arg = saved_arg;
    if (msim_ts_cmp(saved_op, tls_last_op) > 0)
        tls_last_op = saved_op;
}
