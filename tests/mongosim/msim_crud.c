/*
 * tests/mongosim/msim_crud.c - insert, update, delete, find,
 * findAndModify, count and distinct, with ordered/unordered bulk
 * semantics, writeErrors, write blocking, transactions (statements are
 * staged and applied at commit) and change events.
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>

void
msim_log_write(const char *op, const msim_coll_t *c, msim_doc_t *post, msim_doc_t *pre,
               const bson_iter_t *id, bson_t *desc, const bson_t *lsid, int64_t txn_number,
               bool has_ts, msim_ts_t ts, uint32_t txn_index)
{
    msim_oplog_entry_t *e = msim_oplog_entry_new(op, c->db, c->name);
    const msim_doc_t *src = post != NULL ? post : pre;
    e->doc_key = bson_new();
    /* a sharded collection's documentKey holds the shard key fields too */
    msim_document_key(c->shard_key, src ? src->data : NULL, src ? src->len : 0, id, e->doc_key);
    e->images = c->pre_post_images;
    e->post = msim_doc_ref(post);
    if (c->pre_post_images)
        e->pre = msim_doc_ref(pre);
    if (desc != NULL)
        e->update_desc = bson_copy(desc);
    if (lsid != NULL) {
        e->lsid = bson_copy(lsid);
        e->txn_number = txn_number;
        e->in_txn = true;
    }
    if (has_ts) {
        e->ts = ts;
        e->txn_index = txn_index;
    }
    msim_oplog_append(e);
}

/* coll_arg reads the command's collection name (the value of its first field). */
static bool
coll_arg(msim_ctx_t *ctx, const char **coll, mg_error_t *error)
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
doc_arg(const bson_t *cmd, const char *key, bson_t *out, bool *present, mg_error_t *error)
{
    bson_iter_t it;
    const uint8_t *d;
    uint32_t l;
    *present = false;
    bson_init(out);
    if (!bson_iter_init_find(&it, cmd, key) || BSON_ITER_HOLDS_NULL(&it))
        return true;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "BSON field '%s' is the wrong type '%s', expected type 'object'", key,
                         msim_type_name(bson_iter_type(&it)));
    bson_iter_document(&it, &l, &d);
    bson_destroy(out);
    bson_init_static(out, d, l);
    *present = true;
    return true;
}

/*
 * prepare_doc makes the stored form of a document to insert, as mongod's
 * fixDocumentForInsert: the storage rules (size, 180 levels of nesting,
 * no $-prefixed top-level names, _id's type, one _id), _id first (an
 * ObjectId when it has none), each empty top-level Timestamp(0, 0) but _id
 * replaced by a new cluster time.
 */
static msim_doc_t *
prepare_doc(const bson_iter_t *it, mg_error_t *error)
{
    const uint8_t *d;
    uint32_t l;
    bson_t src, out, rest = BSON_INITIALIZER;
    bson_iter_t f, id;
    msim_doc_t *doc;
    bool has_id, changed;
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        msim_fail(error, MSIM_E_TYPE_MISMATCH, "document to insert must be an object");
        return NULL;
    }
    bson_iter_document(it, &l, &d);
    if (l > MSIM_MAX_BSON_SIZE) {
        msim_fail(error, MSIM_E_BAD_VALUE,
                  "object to insert too large. size in bytes: %u, "
                  "max size: %d",
                  l, MSIM_MAX_BSON_SIZE);
        return NULL;
    }
    bson_init_static(&src, d, l);
    if (!msim_check_storage(&src, true, error))
        return NULL;
    has_id = bson_iter_init_find(&id, &src, "_id");
    bson_init(&out);
    if (has_id) {
        msim_append_iter(&out, "_id", 3, &id);
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(&out, "_id", &oid);
    }
    bson_iter_init(&f, &src);
    while (bson_iter_next(&f))
        if (strcmp(bson_iter_key(&f), "_id") != 0)
            msim_append_iter(&rest, NULL, 0, &f);
    {
        bson_t fixed = BSON_INITIALIZER;
        msim_fix_timestamps(&rest, &fixed, &changed);
        bson_concat(&out, &fixed);
        bson_destroy(&fixed);
    }
    bson_destroy(&rest);
    if (!changed && has_id && bson_iter_init(&f, &src) && bson_iter_next(&f) &&
        strcmp(bson_iter_key(&f), "_id") == 0)
        doc = msim_doc_new(d, l); /* already in stored form: byte for byte */
    else
        doc = msim_doc_from_bson(&out);
    bson_destroy(&out);
    return doc;
}

void
msim_write_error(bson_t *errs, uint32_t *nerr, int32_t index, const mg_error_t *e)
{
    bson_t we;
    char key[16];
    const char *k;
    bson_uint32_to_string((*nerr)++, &k, key, sizeof key);
    bson_append_document_begin(errs, k, -1, &we);
    BSON_APPEND_INT32(&we, "index", index);
    BSON_APPEND_INT32(&we, "code", e->code);
    BSON_APPEND_UTF8(&we, "codeName", msim_code_name(e->code));
    BSON_APPEND_UTF8(&we, "errmsg", e->message);
    bson_append_document_end(errs, &we);
}

bool
msim_ordered_arg(const bson_t *cmd)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, cmd, "ordered"))
        return msim_truthy(&it);
    return true;
}

static bool
array_arg(const bson_t *cmd, const char *cmdname, const char *key, bson_iter_t *out,
          mg_error_t *error)
{
    bson_iter_t it;
    uint32_t n = 0;
    if (!bson_iter_init_find(&it, cmd, key))
        return msim_fail(error, 40414, "BSON field '%s.%s' is missing but a required field",
                         cmdname, key);
    if (!BSON_ITER_HOLDS_ARRAY(&it))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "BSON field '%s.%s' is the wrong type '%s', expected type 'array'",
                         cmdname, key, msim_type_name(bson_iter_type(&it)));
    bson_iter_recurse(&it, out);
    {
        bson_iter_t c = *out;
        while (bson_iter_next(&c))
            n++;
    }
    if (n > MSIM_MAX_WRITE_BATCH)
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "Write batch sizes must be between 1 and %d. Got %u operations.",
                         MSIM_MAX_WRITE_BATCH, n);
    return true;
}

/* ------------------------------------------------------------------------
 * insert
 * ------------------------------------------------------------------------ */

bool
msim_cmd_insert(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bson_iter_t docs;
    bool ordered = msim_ordered_arg(ctx->cmd);
    bson_t errs = BSON_INITIALIZER;
    uint32_t nerr = 0;
    int32_t n = 0, index = 0;
    msim_coll_t *c;

    if (!coll_arg(ctx, &coll, error) || !array_arg(ctx->cmd, "insert", "documents", &docs, error))
        return false;
    if (!msim_write_lock(ctx->db, error)) {
        bson_destroy(&errs);
        return false;
    }
    c = ctx->txn ? msim_catalog_get(ctx->db, coll) : msim_catalog_ensure(ctx->db, coll, NULL);
    while (bson_iter_next(&docs)) {
        mg_error_t e;
        msim_doc_t *doc = prepare_doc(&docs, &e);
        bool ok = doc != NULL;
        if (ok && ctx->txn != NULL) {
            bson_iter_t id;
            msim_doc_id(doc, &id);
            int staged = msim_txn_state_of(ctx->txn, ctx->db, coll, &id);
            if (staged == 1 || (staged == -1 && c != NULL && msim_coll_find(c, &id) != NULL)) {
                char *j = msim_value_json(&id);
                ok = msim_fail(&e, MSIM_E_DUPLICATE_KEY,
                               "E11000 duplicate key error collection: %s.%s index: _id_ dup "
                               "key: { _id: %s }",
                               ctx->db, coll, j);
                bson_free(j);
                msim_doc_unref(doc);
            } else {
                msim_txn_op_t op = {.op = 'i', .doc = doc};
                snprintf(op.db, sizeof op.db, "%s", ctx->db);
                snprintf(op.coll, sizeof op.coll, "%s", coll);
                msim_txn_stage(ctx->txn, &op);
            }
        } else if (ok) {
            bson_iter_t id;
            msim_doc_ref(doc);
            ok = msim_coll_insert(c, doc, &e);
            if (ok) {
                msim_doc_id(doc, &id);
                msim_log_write("insert", c, doc, NULL, &id, NULL, NULL, 0, false, (msim_ts_t){0, 0},
                               0);
            }
            msim_doc_unref(doc);
        }
        if (ok) {
            n++;
        } else {
            msim_write_error(&errs, &nerr, index, &e);
            if (ordered)
                break;
        }
        index++;
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    BSON_APPEND_INT32(ctx->reply, "n", n);
    if (nerr > 0)
        BSON_APPEND_ARRAY(ctx->reply, "writeErrors", &errs);
    bson_destroy(&errs);
    if (ctx->txn != NULL && nerr > 0)
        return msim_fail(error, MSIM_E_DUPLICATE_KEY, "%s",
                         "E11000 duplicate key error in "
                         "transaction");
    return true;
}

/* ------------------------------------------------------------------------
 * Finding targets
 * ------------------------------------------------------------------------ */

__thread msim_snapshot_hook_t msim_tls_snapshot_hook;
__thread void *msim_tls_snapshot_arg;

/* owned: d is this shard's, or the operation was not routed (orphans stay visible). */
static bool
owned(const msim_coll_t *c, const msim_doc_t *d)
{
    return !msim_tls_filter_orphans || c->owned == NULL ||
           msim_owned_contains(c->owned, d->data, d->len);
}

/* collect returns references to the docs of c matching m (store lock held). */
static msim_doc_t **
collect(const msim_coll_t *c, const msim_matcher_t *m, size_t stop_after, size_t *n)
{
    size_t cap = 64, cnt = 0;
    msim_doc_t **out = malloc(cap * sizeof *out);
    bson_iter_t eq;
    if (out == NULL)
        abort();
    *n = 0;
    if (c == NULL)
        return out;
    if (m != NULL && msim_matcher_id_eq(m, &eq)) {
        msim_doc_t *d = msim_coll_find(c, &eq);
        if (d != NULL && msim_matcher_match(m, d->data, d->len) && owned(c, d))
            out[cnt++] = msim_doc_ref(d);
    } else {
        msim_coll_iter_t it;
        msim_doc_t *d;
        bson_iter_t lo, hi;
        bool has_lo = false, has_hi = false;
        if (m != NULL)
            msim_matcher_id_bounds(m, &lo, &has_lo, &hi, &has_hi);
        if (has_lo)
            msim_coll_iter_seek(c, &lo, &it); /* _id range scans (partitioned copies) */
        else
            msim_coll_iter_first(c, &it);
        while ((d = msim_coll_iter_next(&it)) != NULL) {
            if (has_hi) {
                bson_iter_t id;
                if (msim_doc_id(d, &id) && msim_cmp(&id, &hi) > 0)
                    break;
            }
            if ((m != NULL && !msim_matcher_match(m, d->data, d->len)) || !owned(c, d))
                continue;
            if (cnt == cap) {
                cap *= 2;
                out = realloc(out, cap * sizeof *out);
                if (out == NULL)
                    abort();
            }
            out[cnt++] = msim_doc_ref(d);
            if (stop_after > 0 && cnt >= stop_after)
                break;
        }
    }
    *n = cnt;
    return out;
}

static void
unref_all(msim_doc_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        msim_doc_unref(docs[i]);
    free(docs);
}

/*
 * collect_in is collect() as transaction txn sees the collection (store
 * lock held): committed documents merged with the transaction's staged
 * writes, then filtered.
 */
static msim_doc_t **
collect_in(msim_txn_t *txn, const char *db, const char *coll, const msim_coll_t *c,
           const msim_matcher_t *m, size_t stop_after, size_t *n)
{
    msim_doc_t **all, **merged;
    size_t na, nm, cnt = 0;
    if (txn == NULL || !msim_txn_touches(txn, db, coll))
        return collect(c, m, stop_after, n);
    all = collect(c, NULL, 0, &na);
    merged = msim_txn_merge(txn, db, coll, all, na, &nm);
    for (size_t i = 0; i < nm; i++) {
        msim_doc_t *d = merged[i];
        if ((stop_after == 0 || cnt < stop_after) &&
            (m == NULL || msim_matcher_match(m, d->data, d->len)))
            merged[cnt++] = d;
        else
            msim_doc_unref(d);
    }
    *n = cnt;
    return merged;
}

msim_doc_t **
msim_snapshot(msim_txn_t *txn, const char *db, const char *coll, const msim_matcher_t *m,
              size_t stop_after, size_t *n)
{
    msim_doc_t **docs;
    if (msim_tls_snapshot_hook != NULL) {
        /* a router: the documents come from the shards (in _id order) */
        size_t all, cnt = 0;
        docs = msim_tls_snapshot_hook(msim_tls_snapshot_arg, db, coll, &all);
        for (size_t i = 0; i < all; i++) {
            if ((stop_after == 0 || cnt < stop_after) &&
                (m == NULL || msim_matcher_match(m, docs[i]->data, docs[i]->len)))
                docs[cnt++] = docs[i];
            else
                msim_doc_unref(docs[i]);
        }
        *n = cnt;
        return docs;
    }
    pthread_rwlock_rdlock(&msim_srv->lock);
    docs = collect_in(txn, db, coll, msim_catalog_get(db, coll), m, stop_after, n);
    pthread_rwlock_unlock(&msim_srv->lock);
    return docs;
}

/*
 * apply_update updates one existing doc (lock held): computes the new
 * version, stores it (or stages it in the transaction) and logs the event.
 * pos is the query's positional match. *modified is false for a no-op.
 * new_out (optional) receives a reference. c is NULL when the collection
 * exists only in the transaction.
 */
static bool
apply_update(msim_ctx_t *ctx, msim_coll_t *c, const char *coll, msim_doc_t *old,
             const msim_update_t *up, const char *pos, bool *modified, msim_doc_t **new_out,
             mg_error_t *error)
{
    bson_t olddoc, out = BSON_INITIALIZER, desc = BSON_INITIALIZER;
    bool replaced;
    msim_doc_t *nd;
    bson_iter_t id;

    *modified = false;
    bson_init_static(&olddoc, old->data, old->len);
    if (!msim_update_run(up, &olddoc, pos, &out, &desc, &replaced, error)) {
        bson_destroy(&out);
        bson_destroy(&desc);
        return false;
    }
    if (out.len > MSIM_MAX_BSON_SIZE) {
        bson_destroy(&out);
        bson_destroy(&desc);
        return msim_fail(error, 17419, "Resulting document after update is larger than %d",
                         MSIM_MAX_BSON_SIZE);
    }
    if (out.len == old->len && memcmp(bson_get_data(&out), old->data, old->len) == 0) {
        if (new_out != NULL)
            *new_out = msim_doc_ref(old);
        bson_destroy(&out);
        bson_destroy(&desc);
        return true;
    }
    nd = msim_doc_from_bson(&out);
    bson_destroy(&out);
    *modified = true;
    if (new_out != NULL)
        *new_out = msim_doc_ref(nd);
    if (ctx->txn != NULL) {
        msim_txn_op_t op = {.op = replaced ? 'r' : 'u', .doc = nd};
        snprintf(op.db, sizeof op.db, "%s", ctx->db);
        snprintf(op.coll, sizeof op.coll, "%s", coll);
        op.desc = replaced ? NULL : bson_copy(&desc);
        msim_txn_stage(ctx->txn, &op);
    } else {
        msim_doc_t *prev = msim_coll_replace(c, nd);
        msim_doc_id(nd, &id);
        msim_log_write(replaced ? "replace" : "update", c, nd, prev, &id, replaced ? NULL : &desc,
                       NULL, 0, false, (msim_ts_t){0, 0}, 0);
        msim_doc_unref(prev);
    }
    bson_destroy(&desc);
    return true;
}

/* upsert_insert builds and inserts the upserted document (lock held). */
static bool
upsert_insert(msim_ctx_t *ctx, const char *coll, const msim_matcher_t *query,
              const msim_update_t *up, bson_t *id_out, msim_doc_t **new_out, mg_error_t *error)
{
    bson_t out = BSON_INITIALIZER;
    msim_doc_t *nd;
    msim_coll_t *c;
    bson_iter_t id;

    if (!msim_update_upsert(up, query, &out, error)) {
        bson_destroy(&out);
        return false;
    }
    nd = msim_doc_from_bson(&out);
    bson_destroy(&out);
    msim_doc_id(nd, &id);
    msim_append_iter(id_out, "_id", 3, &id);
    if (new_out != NULL)
        *new_out = msim_doc_ref(nd);
    if (ctx->txn != NULL) {
        msim_txn_op_t op = {.op = 'i', .doc = nd};
        snprintf(op.db, sizeof op.db, "%s", ctx->db);
        snprintf(op.coll, sizeof op.coll, "%s", coll);
        msim_txn_stage(ctx->txn, &op);
        return true;
    }
    c = msim_catalog_ensure(ctx->db, coll, NULL);
    msim_doc_ref(nd);
    if (!msim_coll_insert(c, nd, error)) {
        msim_doc_unref(nd);
        if (new_out != NULL) {
            msim_doc_unref(*new_out);
            *new_out = NULL;
        }
        return false;
    }
    msim_doc_id(nd, &id);
    msim_log_write("insert", c, nd, NULL, &id, NULL, NULL, 0, false, (msim_ts_t){0, 0}, 0);
    msim_doc_unref(nd);
    return true;
}

/* update_targets applies up to each target (stopping at the first error). */
static bool
update_targets(msim_ctx_t *ctx, msim_coll_t *c, const char *coll, const msim_matcher_t *m,
               const msim_update_t *up, msim_doc_t **targets, size_t cnt, int32_t *n, int32_t *nmod,
               mg_error_t *error)
{
    for (size_t i = 0; i < cnt; i++) {
        bool modified;
        char pos[24] = "";
        if (m != NULL)
            msim_matcher_match_pos(m, targets[i]->data, targets[i]->len, pos, sizeof pos);
        if (!apply_update(ctx, c, coll, targets[i], up, pos, &modified, NULL, error))
            return false;
        (*n)++;
        *nmod += modified;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * update
 * ------------------------------------------------------------------------ */

bool
msim_cmd_update(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bson_iter_t stmts;
    bool ordered = msim_ordered_arg(ctx->cmd);
    bson_t errs = BSON_INITIALIZER, upserted = BSON_INITIALIZER;
    uint32_t nerr = 0, nups = 0;
    int32_t n = 0, nmod = 0, index = 0;

    if (!coll_arg(ctx, &coll, error) || !array_arg(ctx->cmd, "update", "updates", &stmts, error))
        return false;
    if (!msim_write_lock(ctx->db, error))
        return false;
    while (bson_iter_next(&stmts)) {
        mg_error_t e;
        bool ok = true, multi = false, upsert = false, present, has_af;
        bson_iter_t f, u, af;
        bson_t q;
        msim_matcher_t *m = NULL;
        msim_update_t *up = NULL;
        msim_coll_t *c = msim_catalog_get(ctx->db, coll);
        const uint8_t *d;
        uint32_t l;
        bson_t stmt;

        if (!BSON_ITER_HOLDS_DOCUMENT(&stmts)) {
            ok = msim_fail(&e, MSIM_E_TYPE_MISMATCH, "update statement must be an object");
            goto stmt_done;
        }
        bson_iter_document(&stmts, &l, &d);
        bson_init_static(&stmt, d, l);
        if (!doc_arg(&stmt, "q", &q, &present, &e)) {
            ok = false;
            goto stmt_done;
        }
        if (!bson_iter_init_find(&u, &stmt, "u")) {
            ok = msim_fail(&e, 40414,
                           "BSON field 'update.updates.u' is missing but a required field");
            goto stmt_done;
        }
        if (bson_iter_init_find(&f, &stmt, "multi"))
            multi = msim_truthy(&f);
        if (bson_iter_init_find(&f, &stmt, "upsert"))
            upsert = msim_truthy(&f);
        has_af = bson_iter_init_find(&af, &stmt, "arrayFilters");
        up = msim_update_new(&u, has_af ? &af : NULL, multi, &e);
        if (up == NULL) {
            ok = false;
            goto stmt_done;
        }
        m = msim_matcher_new(&q, &e);
        if (m == NULL) {
            ok = false;
            goto stmt_done;
        }
        {
            size_t cnt;
            msim_doc_t **targets = collect_in(ctx->txn, ctx->db, coll, c, m, multi ? 0 : 1, &cnt);
            ok = update_targets(ctx, c, coll, m, up, targets, cnt, &n, &nmod, &e);
            unref_all(targets, cnt);
            if (ok && cnt == 0 && upsert) {
                bson_t id = BSON_INITIALIZER;
                ok = upsert_insert(ctx, coll, m, up, &id, NULL, &e);
                if (ok) {
                    bson_t upd;
                    bson_iter_t idv;
                    char key[16];
                    const char *k;
                    bson_uint32_to_string(nups++, &k, key, sizeof key);
                    bson_append_document_begin(&upserted, k, -1, &upd);
                    BSON_APPEND_INT32(&upd, "index", index);
                    bson_iter_init_find(&idv, &id, "_id");
                    msim_append_iter(&upd, "_id", 3, &idv);
                    bson_append_document_end(&upserted, &upd);
                    n++;
                }
                bson_destroy(&id);
            }
        }
    stmt_done:
        msim_matcher_destroy(m);
        msim_update_destroy(up);
        if (!ok) {
            msim_write_error(&errs, &nerr, index, &e);
            if (ordered)
                break;
        }
        index++;
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    BSON_APPEND_INT32(ctx->reply, "n", n);
    BSON_APPEND_INT32(ctx->reply, "nModified", nmod);
    if (nups > 0)
        BSON_APPEND_ARRAY(ctx->reply, "upserted", &upserted);
    if (nerr > 0)
        BSON_APPEND_ARRAY(ctx->reply, "writeErrors", &errs);
    bson_destroy(&errs);
    bson_destroy(&upserted);
    return true;
}

/* ------------------------------------------------------------------------
 * delete
 * ------------------------------------------------------------------------ */

static void
remove_doc(msim_ctx_t *ctx, msim_coll_t *c, const char *coll, msim_doc_t *d)
{
    bson_iter_t id;
    msim_doc_id(d, &id);
    if (ctx->txn != NULL) {
        /* c is NULL when the collection exists only in the transaction */
        msim_txn_op_t op = {.op = 'd', .doc = msim_doc_ref(d)};
        snprintf(op.db, sizeof op.db, "%s", ctx->db);
        snprintf(op.coll, sizeof op.coll, "%s", coll);
        msim_txn_stage(ctx->txn, &op);
    } else {
        msim_doc_t *gone = msim_coll_remove(c, &id);
        if (gone != NULL) {
            msim_doc_id(gone, &id);
            msim_log_write("delete", c, NULL, gone, &id, NULL, NULL, 0, false, (msim_ts_t){0, 0},
                           0);
            msim_doc_unref(gone);
        }
    }
}

bool
msim_cmd_delete(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bson_iter_t stmts;
    bool ordered = msim_ordered_arg(ctx->cmd);
    bson_t errs = BSON_INITIALIZER;
    uint32_t nerr = 0;
    int32_t n = 0, index = 0;

    if (!coll_arg(ctx, &coll, error) || !array_arg(ctx->cmd, "delete", "deletes", &stmts, error))
        return false;
    if (!msim_write_lock(ctx->db, error))
        return false;
    while (bson_iter_next(&stmts)) {
        mg_error_t e;
        bool ok = true, present;
        bson_iter_t f;
        bson_t q, stmt;
        int64_t limit = 0;
        msim_matcher_t *m = NULL;
        msim_coll_t *c = msim_catalog_get(ctx->db, coll);
        const uint8_t *d;
        uint32_t l;

        if (!BSON_ITER_HOLDS_DOCUMENT(&stmts)) {
            ok = msim_fail(&e, MSIM_E_TYPE_MISMATCH, "delete statement must be an object");
            goto stmt_done;
        }
        bson_iter_document(&stmts, &l, &d);
        bson_init_static(&stmt, d, l);
        if (!doc_arg(&stmt, "q", &q, &present, &e)) {
            ok = false;
            goto stmt_done;
        }
        if (!bson_iter_init_find(&f, &stmt, "limit") || !msim_iter_int64(&f, &limit) ||
            (limit != 0 && limit != 1)) {
            ok = msim_fail(&e, MSIM_E_FAILED_TO_PARSE,
                           "The limit field in delete objects must be 0 or 1. Got %lld",
                           (long long)limit);
            goto stmt_done;
        }
        m = msim_matcher_new(&q, &e);
        if (m == NULL) {
            ok = false;
            goto stmt_done;
        }
        {
            size_t cnt;
            msim_doc_t **targets = collect_in(ctx->txn, ctx->db, coll, c, m, (size_t)limit, &cnt);
            for (size_t i = 0; i < cnt; i++)
                remove_doc(ctx, c, coll, targets[i]);
            n += (int32_t)cnt;
            unref_all(targets, cnt);
        }
    stmt_done:
        msim_matcher_destroy(m);
        if (!ok) {
            msim_write_error(&errs, &nerr, index, &e);
            if (ordered)
                break;
        }
        index++;
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    BSON_APPEND_INT32(ctx->reply, "n", n);
    if (nerr > 0)
        BSON_APPEND_ARRAY(ctx->reply, "writeErrors", &errs);
    bson_destroy(&errs);
    return true;
}

/* ------------------------------------------------------------------------
 * find
 * ------------------------------------------------------------------------ */

static bool
int_arg(const bson_t *cmd, const char *key, int64_t *out, mg_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, cmd, key))
        return true;
    if (!msim_iter_int64(&it, out))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "BSON field '%s' is the wrong type '%s', expected a number", key,
                         msim_type_name(bson_iter_type(&it)));
    return true;
}

/* find_docs runs filter/sort/skip/limit; returns references (caller unrefs). */
static bool
find_docs(msim_txn_t *txn, const char *db, const char *coll, const bson_t *filter,
          const bson_t *sort_spec, int64_t skip, int64_t limit, msim_doc_t ***out, size_t *nout,
          mg_error_t *error)
{
    msim_matcher_t *m = msim_matcher_new(filter, error);
    msim_sort_t *s;
    msim_doc_t **docs;
    size_t n, first;
    if (m == NULL)
        return false;
    s = msim_sort_new(sort_spec, error);
    if (s == NULL) {
        msim_matcher_destroy(m);
        return false;
    }
    if (msim_sort_is_id_asc(s) && limit > 0)
        docs = msim_snapshot(txn, db, coll, m, (size_t)(skip + limit), &n);
    else
        docs = msim_snapshot(txn, db, coll, m, 0, &n);
    if (!msim_sort_is_id_asc(s))
        msim_sort_docs(s, docs, n); /* the snapshot is already in _id order */
    first = skip < 0 ? 0 : (size_t)skip > n ? n : (size_t)skip;
    for (size_t i = 0; i < first; i++)
        msim_doc_unref(docs[i]);
    memmove(docs, docs + first, (n - first) * sizeof *docs);
    n -= first;
    if (limit > 0 && (size_t)limit < n) {
        for (size_t i = (size_t)limit; i < n; i++)
            msim_doc_unref(docs[i]);
        n = (size_t)limit;
    }
    msim_matcher_destroy(m);
    msim_sort_destroy(s);
    *out = docs;
    *nout = n;
    return true;
}

bool
msim_cmd_find(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bson_t filter, sort, proj_spec;
    bool present, single = false;
    int64_t skip = 0, limit = 0, batch = 0;
    bson_iter_t it;
    msim_doc_t **docs;
    size_t n;
    msim_proj_t *proj;
    char ns[512];

    if (!coll_arg(ctx, &coll, error) || !doc_arg(ctx->cmd, "filter", &filter, &present, error) ||
        !doc_arg(ctx->cmd, "sort", &sort, &present, error) ||
        !doc_arg(ctx->cmd, "projection", &proj_spec, &present, error) ||
        !int_arg(ctx->cmd, "skip", &skip, error) || !int_arg(ctx->cmd, "limit", &limit, error) ||
        !int_arg(ctx->cmd, "batchSize", &batch, error))
        return false;
    if (skip < 0)
        return msim_fail(error, 51024, "BSON field 'skip' value must be >= 0, actual value '%lld'",
                         (long long)skip);
    if (limit < 0)
        return msim_fail(error, 51024, "BSON field 'limit' value must be >= 0, actual value '%lld'",
                         (long long)limit);
    if (batch < 0)
        return msim_fail(error, 51024,
                         "BSON field 'batchSize' value must be >= 0, actual value '%lld'",
                         (long long)batch);
    if (bson_iter_init_find(&it, ctx->cmd, "singleBatch"))
        single = msim_truthy(&it);
    if (bson_iter_init_find(&it, ctx->cmd, "hint") && BSON_ITER_HOLDS_UTF8(&it) &&
        strcmp(bson_iter_utf8(&it, NULL), "_id_") != 0)
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "error processing query: planner returned error :: caused by :: hint "
                         "provided does not correspond to an existing index");
    proj = msim_proj_new(&proj_spec, error);
    if (proj == NULL)
        return false;
    if (!find_docs(ctx->txn, ctx->db, coll, &filter, &sort, skip, limit, &docs, &n, error)) {
        msim_proj_destroy(proj);
        return false;
    }
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, coll);
    if (batch == 0 && limit > 0 && limit <= 101)
        batch = limit;
    if (batch == 0 && bson_has_field(ctx->cmd, "batchSize"))
        batch = -1; /* an explicit batchSize 0: empty first batch */
    msim_cursor_first_batch(ctx, ns, docs, n, proj, batch == 0 ? 101 : batch, single);
    return true;
}

/* ------------------------------------------------------------------------
 * findAndModify
 * ------------------------------------------------------------------------ */

bool
msim_cmd_find_and_modify(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bson_t query, sort, fields;
    bool present, remove = false, ret_new = false, upsert = false, ok = true, has_update;
    bson_iter_t it, u, af;
    msim_matcher_t *m = NULL;
    msim_sort_t *s = NULL;
    msim_proj_t *proj = NULL;
    msim_update_t *up = NULL;
    msim_doc_t **docs = NULL, *result = NULL;
    size_t n = 0;
    int32_t nres = 0;
    bool updated_existing = false;
    bson_t upserted_id = BSON_INITIALIZER;

    if (!coll_arg(ctx, &coll, error) || !doc_arg(ctx->cmd, "query", &query, &present, error) ||
        !doc_arg(ctx->cmd, "sort", &sort, &present, error) ||
        !doc_arg(ctx->cmd, "fields", &fields, &present, error))
        return false;
    if (bson_iter_init_find(&it, ctx->cmd, "remove"))
        remove = msim_truthy(&it);
    if (bson_iter_init_find(&it, ctx->cmd, "new"))
        ret_new = msim_truthy(&it);
    if (bson_iter_init_find(&it, ctx->cmd, "upsert"))
        upsert = msim_truthy(&it);
    has_update = bson_iter_init_find(&u, ctx->cmd, "update");
    if (remove == has_update)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "Either an update or remove=true must be specified");
    if (remove && (ret_new || upsert))
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "Cannot specify both an update and remove=true");
    if (!msim_write_allowed(ctx->db, error))
        return false;
    if (has_update) {
        bool has_af = bson_iter_init_find(&af, ctx->cmd, "arrayFilters");
        up = msim_update_new(&u, has_af ? &af : NULL, false, error);
        if (up == NULL)
            return false;
    }
    m = msim_matcher_new(&query, error);
    s = m ? msim_sort_new(&sort, error) : NULL;
    proj = s ? msim_proj_new(&fields, error) : NULL;
    if (proj == NULL) {
        msim_matcher_destroy(m);
        msim_sort_destroy(s);
        msim_update_destroy(up);
        bson_destroy(&upserted_id);
        return false;
    }
    pthread_rwlock_wrlock(&msim_srv->lock);
    /* checked again under the lock: a freeze may have come in between */
    if (!msim_write_allowed(ctx->db, error)) {
        ok = false;
    } else {
        msim_coll_t *c = msim_catalog_get(ctx->db, coll);
        docs = collect_in(ctx->txn, ctx->db, coll, c, m, msim_sort_is_id_asc(s) ? 1 : 0, &n);
        msim_sort_docs(s, docs, n);
        if (n > 0) {
            msim_doc_t *target = docs[0];
            nres = 1;
            if (remove) {
                remove_doc(ctx, c, coll, target);
                result = msim_doc_ref(target);
            } else {
                bool modified;
                msim_doc_t *nd = NULL;
                char pos[24] = "";
                msim_matcher_match_pos(m, target->data, target->len, pos, sizeof pos);
                ok = apply_update(ctx, c, coll, target, up, pos, &modified, &nd, error);
                updated_existing = true;
                if (ok)
                    result = ret_new ? nd : msim_doc_ref(target);
                if (ok && ret_new)
                    nd = NULL;
                msim_doc_unref(nd);
            }
        } else if (upsert) {
            msim_doc_t *nd = NULL;
            ok = upsert_insert(ctx, coll, m, up, &upserted_id, &nd, error);
            if (ok) {
                nres = 1;
                result = ret_new ? nd : NULL;
                if (!ret_new)
                    msim_doc_unref(nd);
            }
        }
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    unref_all(docs, n);
    if (ok) {
        bson_t le;
        bson_append_document_begin(ctx->reply, "lastErrorObject", -1, &le);
        BSON_APPEND_INT32(&le, "n", nres);
        if (!remove)
            BSON_APPEND_BOOL(&le, "updatedExisting", updated_existing);
        if (!bson_empty(&upserted_id)) {
            bson_iter_t idv;
            bson_iter_init_find(&idv, &upserted_id, "_id");
            msim_append_iter(&le, "upserted", -1, &idv);
        }
        bson_append_document_end(ctx->reply, &le);
        if (result != NULL) {
            bson_t out = BSON_INITIALIZER;
            msim_proj_apply(proj, result->data, result->len, &out);
            BSON_APPEND_DOCUMENT(ctx->reply, "value", &out);
            bson_destroy(&out);
        } else {
            BSON_APPEND_NULL(ctx->reply, "value");
        }
    }
    msim_doc_unref(result);
    msim_matcher_destroy(m);
    msim_sort_destroy(s);
    msim_proj_destroy(proj);
    msim_update_destroy(up);
    bson_destroy(&upserted_id);
    return ok;
}

/* ------------------------------------------------------------------------
 * count, distinct
 * ------------------------------------------------------------------------ */

bool
msim_cmd_count(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = NULL;
    bson_t query;
    bool present;
    int64_t skip = 0, limit = 0;
    msim_doc_t **docs;
    size_t n;
    if (!coll_arg(ctx, &coll, error) || !doc_arg(ctx->cmd, "query", &query, &present, error) ||
        !int_arg(ctx->cmd, "skip", &skip, error) || !int_arg(ctx->cmd, "limit", &limit, error))
        return false;
    if ((!present || bson_empty(&query)) && !msim_txn_touches(ctx->txn, ctx->db, coll) &&
        !msim_tls_filter_orphans && msim_tls_snapshot_hook == NULL) {
        msim_coll_t *c;
        pthread_rwlock_rdlock(&msim_srv->lock);
        c = msim_catalog_get(ctx->db, coll);
        n = c ? msim_coll_count(c) : 0;
        pthread_rwlock_unlock(&msim_srv->lock);
    } else {
        if (!find_docs(ctx->txn, ctx->db, coll, &query, NULL, 0, 0, &docs, &n, error))
            return false;
        unref_all(docs, n);
    }
    if (skip > 0)
        n = (size_t)skip >= n ? 0 : n - (size_t)skip;
    if (limit < 0)
        limit = -limit;
    if (limit > 0 && (size_t)limit < n)
        n = (size_t)limit;
    BSON_APPEND_INT32(ctx->reply, "n", (int32_t)n);
    return true;
}

bool
msim_cmd_distinct(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll, *key;
    bson_t query, values = BSON_INITIALIZER, vals;
    bool present;
    bson_iter_t it;
    msim_doc_t **docs;
    size_t n;
    uint32_t nv = 0;
    if (!coll_arg(ctx, &coll, error) || !doc_arg(ctx->cmd, "query", &query, &present, error))
        return false;
    if (!bson_iter_init_find(&it, ctx->cmd, "key") || !BSON_ITER_HOLDS_UTF8(&it))
        return msim_fail(error, 40414, "BSON field 'distinct.key' is missing but a required field");
    key = bson_iter_utf8(&it, NULL);
    if (!find_docs(ctx->txn, ctx->db, coll, &query, NULL, 0, 0, &docs, &n, error))
        return false;
    for (size_t i = 0; i < n; i++) {
        bson_t d;
        bson_iter_t v;
        bson_init_static(&d, docs[i]->data, docs[i]->len);
        if (!msim_get_path(&d, key, &v))
            continue;
        {
            bson_iter_t el, single = v;
            bool arr = BSON_ITER_HOLDS_ARRAY(&v);
            if (arr)
                bson_iter_recurse(&v, &el);
            for (;;) {
                const bson_iter_t *cand;
                bool dup = false;
                bson_iter_t ex;
                if (arr) {
                    if (!bson_iter_next(&el))
                        break;
                    cand = &el;
                } else {
                    cand = &single;
                }
                bson_iter_init(&ex, &values);
                while (!dup && bson_iter_next(&ex))
                    dup = msim_cmp(&ex, cand) == 0;
                if (!dup) {
                    char k[16];
                    const char *ks;
                    bson_uint32_to_string(nv++, &ks, k, sizeof k);
                    msim_append_iter(&values, ks, -1, cand);
                }
                if (!arr)
                    break;
            }
        }
    }
    unref_all(docs, n);
    bson_append_array_begin(ctx->reply, "values", -1, &vals);
    bson_concat(&vals, &values);
    bson_append_array_end(ctx->reply, &vals);
    bson_destroy(&values);
    return true;
}
