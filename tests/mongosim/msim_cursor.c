/*
 * tests/mongosim/msim_cursor.c - cursors over snapshots of document
 * references: batches bounded by count and 16 MiB, getMore, killCursors
 * and the idle timeout. Change-stream cursors delegate to msim_stream.c.
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>

#define BATCH_BYTES (MSIM_MAX_BSON_SIZE - 16 * 1024)

void
msim_cursor_free(msim_cursor_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = c->pos; i < c->ndocs; i++)
        msim_doc_unref(c->docs[i]);
    free(c->docs);
    msim_proj_destroy(c->proj);
    if (c->kind == MSIM_CURSOR_STREAM)
        msim_stream_free(c->stream);
    else if (c->kind == MSIM_CURSOR_MERGED)
        msim_route_stream_free(c->stream);
    else if (c->kind == MSIM_CURSOR_REMOTE)
        msim_router_remote_kill(c);
    free(c);
}

msim_cursor_t *
msim_cursor_register(msim_cursor_t *c)
{
    pthread_mutex_lock(&msim_srv->cursor_mu);
    c->id = msim_srv->next_cursor_id++;
    c->last_use_ms = msim_now_ms();
    c->owner = msim_tls_conn != NULL ? msim_tls_conn->user : NULL;
    c->busy = false;
    c->next = msim_srv->cursors;
    msim_srv->cursors = c;
    pthread_mutex_unlock(&msim_srv->cursor_mu);
    return c;
}

size_t
msim_cursor_open_count(void)
{
    size_t n = 0;
    pthread_mutex_lock(&msim_srv->cursor_mu);
    for (msim_cursor_t *c = msim_srv->cursors; c != NULL; c = c->next)
        n++;
    pthread_mutex_unlock(&msim_srv->cursor_mu);
    return n;
}

/* unlink_locked removes c from the list (cursor_mu held). */
static void
unlink_locked(msim_cursor_t *c)
{
    msim_cursor_t **pp = &msim_srv->cursors;
    while (*pp != NULL && *pp != c)
        pp = &(*pp)->next;
    if (*pp == c)
        *pp = c->next;
}

void
msim_cursor_reap(int64_t now_ms)
{
    msim_cursor_t *dead = NULL, **pp;
    pthread_mutex_lock(&msim_srv->cursor_mu);
    pp = &msim_srv->cursors;
    while (*pp != NULL) {
        msim_cursor_t *c = *pp;
        if (!c->busy && now_ms - c->last_use_ms > msim_srv->cursor_timeout_ms) {
            *pp = c->next;
            c->next = dead;
            dead = c;
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&msim_srv->cursor_mu);
    while (dead != NULL) {
        msim_cursor_t *n = dead->next;
        MG_LOG(MG_LOG_INFO, "mongosim", "cursor %lld on %s timed out", (long long)dead->id,
               dead->ns);
        msim_cursor_free(dead);
        dead = n;
    }
}

void
msim_cursors_kill_ns(const char *ns)
{
    /* Snapshot cursors stay valid (they hold references); nothing to do.
     * Change streams notice drops through the oplog. */
    (void)ns;
}

/* emit appends up to batch_size documents (0 = only the byte bound) to arr. */
static void
emit(msim_cursor_t *c, bson_t *arr, int64_t batch_size)
{
    size_t bytes = 0;
    uint32_t n = 0;
    while (c->pos < c->ndocs && (batch_size <= 0 || (int64_t)n < batch_size)) {
        msim_doc_t *d = c->docs[c->pos];
        char key[16];
        const char *k;
        bson_uint32_to_string(n, &k, key, sizeof key);
        if (c->proj != NULL) {
            bson_t out = BSON_INITIALIZER;
            msim_proj_apply(c->proj, d->data, d->len, &out);
            if (n > 0 && bytes + out.len > BATCH_BYTES) {
                bson_destroy(&out);
                break;
            }
            bytes += out.len;
            bson_append_document(arr, k, -1, &out);
            bson_destroy(&out);
        } else {
            bson_t doc;
            if (n > 0 && bytes + d->len > BATCH_BYTES)
                break;
            bytes += d->len;
            bson_init_static(&doc, d->data, d->len);
            bson_append_document(arr, k, -1, &doc);
        }
        msim_doc_unref(d);
        c->docs[c->pos++] = NULL;
        n++;
    }
}

void
msim_cursor_first_batch(msim_ctx_t *ctx, const char *ns, msim_doc_t **docs, size_t ndocs,
                        msim_proj_t *proj, int64_t batch_size, bool single_batch)
{
    msim_cursor_t *c = calloc(1, sizeof *c);
    bson_t cur, arr;
    if (c == NULL)
        abort();
    snprintf(c->ns, sizeof c->ns, "%s", ns);
    c->docs = docs;
    c->ndocs = ndocs;
    c->proj = proj;
    bson_append_document_begin(ctx->reply, "cursor", -1, &cur);
    bson_append_array_begin(&cur, "firstBatch", -1, &arr);
    if (batch_size >= 0)
        emit(c, &arr, batch_size == 0 ? 101 : batch_size);
    bson_append_array_end(&cur, &arr);
    if (c->pos < c->ndocs && !single_batch) {
        msim_cursor_register(c);
        BSON_APPEND_INT64(&cur, "id", c->id);
    } else {
        BSON_APPEND_INT64(&cur, "id", 0);
        msim_cursor_free(c);
    }
    BSON_APPEND_UTF8(&cur, "ns", ns);
    bson_append_document_end(ctx->reply, &cur);
}

/*
 * getmore_fail_point fires failGetMoreAfterCursorCheckout on a change-stream
 * getMore: the error carries ResumableChangeStreamError when its code is one
 * a server labels so (the resumable codes of the change streams spec).
 */
static bool
getmore_fail_point(msim_ctx_t *ctx, mg_error_t *error)
{
    static const int32_t resumable[] = {6,     7,     89,    91, 189, 262,   9001, 10107, 11600,
                                        11602, 13435, 13436, 63, 150, 13388, 234,  133,   43};
    msim_failpoint_t *fp = &msim_srv->fp_getmore;
    int32_t code = 0;
    bool fire = false;
    pthread_mutex_lock(&msim_srv->fp_mu);
    if (fp->active && fp->has_error_code) {
        fire = true;
        code = fp->error_code;
        if (fp->times > 0 && --fp->times == 0)
            fp->active = false;
    }
    pthread_mutex_unlock(&msim_srv->fp_mu);
    if (!fire)
        return false;
    for (size_t i = 0; i < sizeof resumable / sizeof resumable[0]; i++)
        if (resumable[i] == code)
            ctx->resumable_error = true;
    msim_fail(error, code, "Failing getMore via 'failGetMoreAfterCursorCheckout' failpoint");
    return true;
}

bool
msim_cmd_get_more(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it;
    int64_t id = 0, batch_size = 0, max_time = -1;
    const char *coll = NULL;
    msim_cursor_t *c;
    char ns[256];
    bson_t cur, arr;
    bool ok = true;

    if (!bson_iter_init_find(&it, ctx->cmd, "getMore") || !BSON_ITER_HOLDS_INT64(&it))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "BSON field 'getMore.getMore' is the wrong type, expected type 'long'");
    id = bson_iter_int64(&it);
    if (bson_iter_init_find(&it, ctx->cmd, "collection") && BSON_ITER_HOLDS_UTF8(&it))
        coll = bson_iter_utf8(&it, NULL);
    if (coll == NULL)
        return msim_fail(error, 40414,
                         "BSON field 'getMore.collection' is missing but a required field");
    if (bson_iter_init_find(&it, ctx->cmd, "batchSize") &&
        (!msim_iter_int64(&it, &batch_size) || batch_size < 0))
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "Batch size for getMore must be positive, but "
                         "received: %lld",
                         (long long)batch_size);
    if (bson_iter_init_find(&it, ctx->cmd, "maxTimeMS"))
        msim_iter_int64(&it, &max_time);
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, coll);

    pthread_mutex_lock(&msim_srv->cursor_mu);
    for (c = msim_srv->cursors; c != NULL; c = c->next)
        if (c->id == id)
            break;
    if (c == NULL) {
        pthread_mutex_unlock(&msim_srv->cursor_mu);
        return msim_fail(error, MSIM_E_CURSOR_NOT_FOUND, "cursor id %lld not found", (long long)id);
    }
    if (strcmp(c->ns, ns) != 0) {
        pthread_mutex_unlock(&msim_srv->cursor_mu);
        return msim_fail(error, MSIM_E_UNAUTHORIZED,
                         "Requested getMore on namespace '%s', but cursor belongs to a different "
                         "namespace %s",
                         ns, c->ns);
    }
    if (msim_srv->auth && c->owner != ctx->conn->user) {
        pthread_mutex_unlock(&msim_srv->cursor_mu);
        return msim_fail(error, MSIM_E_UNAUTHORIZED,
                         "cursor id %lld was not created by the authenticated user", (long long)id);
    }
    if (c->busy) {
        pthread_mutex_unlock(&msim_srv->cursor_mu);
        return msim_fail(error, 292, "cursor id %lld is already in use", (long long)id);
    }
    c->busy = true;
    pthread_mutex_unlock(&msim_srv->cursor_mu);

    if (c->stream != NULL && getmore_fail_point(ctx, error)) {
        ok = false;
    } else if (c->kind == MSIM_CURSOR_STREAM) {
        ok = msim_stream_get_more(ctx, c, batch_size, max_time < 0 ? 1000 : max_time, error);
    } else if (c->kind == MSIM_CURSOR_MERGED) {
        ok = msim_route_stream_get_more(ctx, c, batch_size, max_time < 0 ? 1000 : max_time, error);
    } else if (c->kind == MSIM_CURSOR_REMOTE) {
        ok = msim_router_remote_get_more(ctx, c, error);
    } else {
        bson_append_document_begin(ctx->reply, "cursor", -1, &cur);
        bson_append_array_begin(&cur, "nextBatch", -1, &arr);
        emit(c, &arr, batch_size);
        bson_append_array_end(&cur, &arr);
        BSON_APPEND_INT64(&cur, "id", c->pos < c->ndocs ? c->id : 0);
        BSON_APPEND_UTF8(&cur, "ns", c->ns);
        bson_append_document_end(ctx->reply, &cur);
    }

    pthread_mutex_lock(&msim_srv->cursor_mu);
    c->busy = false;
    c->last_use_ms = msim_now_ms();
    if ((c->kind == MSIM_CURSOR_SNAPSHOT && c->pos >= c->ndocs) ||
        (c->kind != MSIM_CURSOR_SNAPSHOT && c->id == 0) || !ok) {
        unlink_locked(c);
        pthread_mutex_unlock(&msim_srv->cursor_mu);
        msim_cursor_free(c);
    } else {
        pthread_mutex_unlock(&msim_srv->cursor_mu);
    }
    return ok;
}

bool
msim_cmd_kill_cursors(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it, c;
    bson_t alive, unknown;
    uint32_t nk = 0, nn = 0;
    if (!bson_iter_init_find(&it, ctx->cmd, "cursors") || !BSON_ITER_HOLDS_ARRAY(&it))
        return msim_fail(error, 40414,
                         "BSON field 'killCursors.cursors' is missing but a required field");
    bson_iter_recurse(&it, &c);
    {
        bson_t k = BSON_INITIALIZER, n = BSON_INITIALIZER;
        while (bson_iter_next(&c)) {
            int64_t id;
            msim_cursor_t *cur, *found = NULL;
            char key[16];
            const char *ks;
            if (!BSON_ITER_HOLDS_INT64(&c))
                continue;
            id = bson_iter_int64(&c);
            pthread_mutex_lock(&msim_srv->cursor_mu);
            for (cur = msim_srv->cursors; cur != NULL; cur = cur->next)
                if (cur->id == id && !cur->busy &&
                    (!msim_srv->auth || cur->owner == ctx->conn->user)) {
                    found = cur;
                    unlink_locked(cur);
                    break;
                }
            pthread_mutex_unlock(&msim_srv->cursor_mu);
            if (found != NULL) {
                bson_uint32_to_string(nk++, &ks, key, sizeof key);
                BSON_APPEND_INT64(&k, ks, id);
                msim_cursor_free(found);
            } else {
                bson_uint32_to_string(nn++, &ks, key, sizeof key);
                BSON_APPEND_INT64(&n, ks, id);
            }
        }
        BSON_APPEND_ARRAY(ctx->reply, "cursorsKilled", &k);
        BSON_APPEND_ARRAY(ctx->reply, "cursorsNotFound", &n);
        bson_destroy(&k);
        bson_destroy(&n);
    }
    bson_append_array_begin(ctx->reply, "cursorsAlive", -1, &alive);
    bson_append_array_end(ctx->reply, &alive);
    bson_append_array_begin(ctx->reply, "cursorsUnknown", -1, &unknown);
    bson_append_array_end(ctx->reply, &unknown);
    return true;
}
