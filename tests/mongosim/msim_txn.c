/*
 * tests/mongosim/msim_txn.c - multi-document transactions. Statements run
 * against committed data and their writes are staged; commitTransaction
 * applies them atomically under the store lock, all with one cluster time,
 * producing change events that carry lsid and txnNumber.
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>

enum { TXN_NONE, TXN_ACTIVE, TXN_COMMITTED, TXN_ABORTED };

struct msim_txn {
    msim_txn_t *next;
    bson_t *lsid;
    int64_t txn_number;
    int state;
    bool holds_glock;   /* the global lock, from the first statement to the end */
    int64_t started_ms; /* for transactionLifetimeLimitSeconds */
    msim_txn_op_t *ops;
    size_t nops, cap;
};

static void
clear_ops(msim_txn_t *t)
{
    for (size_t i = 0; i < t->nops; i++) {
        msim_doc_unref(t->ops[i].doc);
        if (t->ops[i].desc)
            bson_destroy(t->ops[i].desc);
    }
    free(t->ops);
    t->ops = NULL;
    t->nops = t->cap = 0;
}

/* finish ends t's current transaction in state (txn_mu held): staged writes
 * are dropped and the global lock it held is released. */
static void
finish(msim_txn_t *t, int state)
{
    clear_ops(t);
    t->state = state;
    if (t->holds_glock) {
        t->holds_glock = false;
        msim_glock_release_shared();
    }
}

static bool
lsid_equal(const bson_t *a, const bson_t *b)
{
    return a->len == b->len && memcmp(bson_get_data(a), bson_get_data(b), a->len) == 0;
}

/* session finds (or creates) the state of a logical session (txn_mu held). */
static msim_txn_t *
session(const bson_t *lsid, bool create)
{
    msim_txn_t *t;
    for (t = msim_srv->txns; t != NULL; t = t->next)
        if (lsid_equal(t->lsid, lsid))
            return t;
    if (!create)
        return NULL;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        abort();
    t->lsid = bson_copy(lsid);
    t->txn_number = -1;
    t->next = msim_srv->txns;
    msim_srv->txns = t;
    return t;
}

void
msim_txn_end_sessions(const bson_t *cmd)
{
    bson_iter_t it, c;
    if (!bson_iter_init_find(&it, cmd, "endSessions") || !BSON_ITER_HOLDS_ARRAY(&it))
        return;
    bson_iter_recurse(&it, &c);
    pthread_mutex_lock(&msim_srv->txn_mu);
    while (bson_iter_next(&c)) {
        const uint8_t *d;
        uint32_t l;
        bson_t lsid;
        msim_txn_t **pp;
        if (!BSON_ITER_HOLDS_DOCUMENT(&c))
            continue;
        bson_iter_document(&c, &l, &d);
        bson_init_static(&lsid, d, l);
        for (pp = &msim_srv->txns; *pp != NULL; pp = &(*pp)->next) {
            if (lsid_equal((*pp)->lsid, &lsid)) {
                msim_txn_t *t = *pp;
                *pp = t->next;
                finish(t, TXN_ABORTED);
                bson_destroy(t->lsid);
                free(t);
                break;
            }
        }
    }
    pthread_mutex_unlock(&msim_srv->txn_mu);
}

static bool
allowed_in_txn(const char *name)
{
    static const char *ok[] = {"find",
                               "insert",
                               "update",
                               "delete",
                               "findAndModify",
                               "findandmodify",
                               "aggregate",
                               "getMore",
                               "distinct",
                               "count",
                               "killCursors",
                               "commitTransaction",
                               "abortTransaction"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(ok[i], name) == 0)
            return true;
    return false;
}

bool
msim_txn_begin_command(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it;
    bool start = false, need_lock = false;
    msim_txn_t *t;
    bool ok = true;

    ctx->txn = NULL;
    if (ctx->lsid == NULL || !ctx->has_txn_number)
        return true;
    if (!bson_iter_init_find(&it, ctx->cmd, "autocommit"))
        return true; /* a retryable write: runs on its own */
    if (!BSON_ITER_HOLDS_BOOL(&it) || bson_iter_bool(&it))
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "Specifying autocommit=true is not allowed.");
    if (bson_iter_init_find(&it, ctx->cmd, "startTransaction"))
        start = msim_truthy(&it);
    if (!allowed_in_txn(ctx->name))
        return msim_fail(error, MSIM_E_OP_NOT_IN_TXN,
                         "Cannot run '%s' in a multi-document transaction.", ctx->name);
    pthread_mutex_lock(&msim_srv->txn_mu);
    t = session(ctx->lsid, true);
    if (start) {
        if (ctx->txn_number < t->txn_number) {
            ok = msim_fail(error, 225,
                           "Cannot start transaction %lld on session because a newer "
                           "transaction %lld has already started",
                           (long long)ctx->txn_number, (long long)t->txn_number);
        } else if (ctx->txn_number == t->txn_number && t->state != TXN_NONE) {
            ok = msim_fail(error, MSIM_E_CONFLICTING_OPERATION_IN_PROGRESS,
                           "Transaction with { txnNumber: %lld } has already been started",
                           (long long)ctx->txn_number);
        } else {
            finish(t, TXN_NONE); /* a newer transaction aborts an open one */
            t->txn_number = ctx->txn_number;
            t->state = TXN_ACTIVE;
            t->started_ms = msim_now_ms();
            need_lock = true;
        }
    } else if (t->txn_number != ctx->txn_number || t->state == TXN_NONE) {
        ok = msim_fail(error, MSIM_E_NO_SUCH_TRANSACTION,
                       "Transaction with { txnNumber: %lld } has been aborted.",
                       (long long)ctx->txn_number);
    } else if (t->state == TXN_ABORTED && strcmp(ctx->name, "abortTransaction") != 0) {
        ok = msim_fail(error, MSIM_E_NO_SUCH_TRANSACTION,
                       "Transaction with { txnNumber: %lld } has been aborted.",
                       (long long)ctx->txn_number);
    } else if (t->state == TXN_COMMITTED && strcmp(ctx->name, "commitTransaction") != 0) {
        ok = msim_fail(error, MSIM_E_TRANSACTION_COMMITTED,
                       "Transaction with { txnNumber: %lld } has been committed.",
                       (long long)ctx->txn_number);
    }
    pthread_mutex_unlock(&msim_srv->txn_mu);
    if (ok && need_lock) {
        /* the first statement takes the global lock for the transaction and
         * waits at most maxTransactionLockRequestTimeoutMillis (5 ms) */
        bool got = msim_glock_acquire_shared(5);
        pthread_mutex_lock(&msim_srv->txn_mu);
        if (got && t->state == TXN_ACTIVE && t->txn_number == ctx->txn_number) {
            t->holds_glock = true;
        } else {
            if (got)
                msim_glock_release_shared();
            if (t->txn_number == ctx->txn_number)
                finish(t, TXN_ABORTED);
            ok = msim_fail(error, MSIM_E_LOCK_TIMEOUT,
                           "Unable to acquire IX lock on '{Global}' within 5ms. (transaction "
                           "%lld)",
                           (long long)ctx->txn_number);
        }
        pthread_mutex_unlock(&msim_srv->txn_mu);
    }
    if (ok)
        ctx->txn = t;
    return ok;
}

void
msim_txn_stage(msim_txn_t *t, const msim_txn_op_t *op)
{
    pthread_mutex_lock(&msim_srv->txn_mu);
    if (t->nops == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->ops = realloc(t->ops, t->cap * sizeof *t->ops);
        if (t->ops == NULL)
            abort();
    }
    t->ops[t->nops++] = *op;
    pthread_mutex_unlock(&msim_srv->txn_mu);
}

static int
doc_id_cmp(const void *pa, const void *pb)
{
    msim_doc_t *a = *(msim_doc_t *const *)pa, *b = *(msim_doc_t *const *)pb;
    bson_iter_t ia, ib;
    msim_doc_id(a, &ia);
    msim_doc_id(b, &ib);
    return msim_cmp(&ia, &ib);
}

bool
msim_txn_touches(msim_txn_t *t, const char *db, const char *coll)
{
    bool found = false;
    if (t == NULL)
        return false;
    pthread_mutex_lock(&msim_srv->txn_mu);
    for (size_t i = 0; i < t->nops && !found; i++)
        found = strcmp(t->ops[i].db, db) == 0 && strcmp(t->ops[i].coll, coll) == 0;
    pthread_mutex_unlock(&msim_srv->txn_mu);
    return found;
}

/* latest_op returns the last staged op on (db, coll, id), or NULL (txn_mu held). */
static msim_txn_op_t *
latest_op(msim_txn_t *t, const char *db, const char *coll, const bson_iter_t *id, size_t *first)
{
    msim_txn_op_t *last = NULL;
    for (size_t k = 0; k < t->nops; k++) {
        bson_iter_t oid;
        msim_txn_op_t *op = &t->ops[k];
        if (strcmp(op->db, db) != 0 || strcmp(op->coll, coll) != 0)
            continue;
        msim_doc_id(op->doc, &oid);
        if (msim_cmp(&oid, id) != 0)
            continue;
        if (last == NULL && first != NULL)
            *first = k;
        last = op;
    }
    return last;
}

static void
push_doc(msim_doc_t ***out, size_t *cnt, size_t *cap, msim_doc_t *d)
{
    if (*cnt == *cap) {
        *cap *= 2;
        *out = realloc(*out, *cap * sizeof **out);
        if (*out == NULL)
            abort();
    }
    (*out)[(*cnt)++] = msim_doc_ref(d);
}

int
msim_txn_state_of(msim_txn_t *t, const char *db, const char *coll, const bson_iter_t *id)
{
    msim_txn_op_t *op;
    int r;
    pthread_mutex_lock(&msim_srv->txn_mu);
    op = latest_op(t, db, coll, id, NULL);
    r = op == NULL ? -1 : op->op == 'd' ? 0 : 1;
    pthread_mutex_unlock(&msim_srv->txn_mu);
    return r;
}

msim_doc_t **
msim_txn_merge(msim_txn_t *t, const char *db, const char *coll, msim_doc_t **docs, size_t n,
               size_t *nout)
{
    size_t cap = n + 16, cnt = 0;
    msim_doc_t **out = malloc(cap * sizeof *out);
    if (out == NULL)
        abort();
    pthread_mutex_lock(&msim_srv->txn_mu);
    /* committed documents as the transaction sees them */
    for (size_t i = 0; i < n; i++) {
        bson_iter_t id;
        msim_txn_op_t *op;
        msim_doc_id(docs[i], &id);
        op = latest_op(t, db, coll, &id, NULL);
        if (op == NULL)
            push_doc(&out, &cnt, &cap, docs[i]);
        else if (op->op != 'd')
            push_doc(&out, &cnt, &cap, op->doc);
    }
    /* documents that exist only in the transaction */
    for (size_t k = 0; k < t->nops; k++) {
        msim_txn_op_t *op = &t->ops[k], *last;
        bson_iter_t oid;
        bool committed = false;
        size_t first = 0;
        if (op->op != 'i' || strcmp(op->db, db) != 0 || strcmp(op->coll, coll) != 0)
            continue;
        msim_doc_id(op->doc, &oid);
        for (size_t i = 0; i < n && !committed; i++) {
            bson_iter_t id;
            msim_doc_id(docs[i], &id);
            committed = msim_cmp(&id, &oid) == 0;
        }
        last = latest_op(t, db, coll, &oid, &first);
        if (committed || first != k || last == NULL || last->op == 'd')
            continue;
        push_doc(&out, &cnt, &cap, last->doc);
    }
    pthread_mutex_unlock(&msim_srv->txn_mu);
    for (size_t i = 0; i < n; i++)
        msim_doc_unref(docs[i]);
    free(docs);
    qsort(out, cnt, sizeof *out, doc_id_cmp);
    *nout = cnt;
    return out;
}

/* conflicts_locked: a staged insert whose _id now exists, or a staged
 * update/delete of a document that is gone (store lock held). */
static bool
conflicts_locked(const msim_txn_t *t, mg_error_t *error)
{
    for (size_t i = 0; i < t->nops; i++) {
        const msim_txn_op_t *op = &t->ops[i];
        msim_coll_t *c = msim_catalog_get(op->db, op->coll);
        bson_iter_t id;
        bool earlier = false, bad;
        msim_doc_id(op->doc, &id);
        for (size_t j = 0; j < i && !earlier; j++) {
            bson_iter_t id2;
            msim_doc_id(t->ops[j].doc, &id2);
            earlier = strcmp(t->ops[j].db, op->db) == 0 && strcmp(t->ops[j].coll, op->coll) == 0 &&
                      msim_cmp(&id, &id2) == 0; /* an earlier statement of this txn touched it */
        }
        if (earlier)
            continue;
        bad = op->op == 'i' ? c != NULL && msim_coll_find(c, &id) != NULL
                            : c == NULL || msim_coll_find(c, &id) == NULL;
        if (bad)
            return msim_fail(error, MSIM_E_WRITE_CONFLICT,
                             "WriteConflict error: this operation conflicted with another "
                             "operation. Please retry your operation or multi-document "
                             "transaction.");
    }
    return true;
}

/* apply_locked applies t's staged writes with commit time ts, numbering the
 * events from *index (store lock held). */
static void
apply_locked(const msim_txn_t *t, msim_ts_t ts, uint32_t *index)
{
    for (size_t i = 0; i < t->nops; i++) {
        const msim_txn_op_t *op = &t->ops[i];
        msim_coll_t *c = msim_catalog_ensure(op->db, op->coll, NULL);
        bson_iter_t id;
        msim_doc_id(op->doc, &id);
        switch (op->op) {
        case 'i':
            msim_doc_ref(op->doc);
            if (msim_coll_insert(c, op->doc, NULL))
                msim_log_write("insert", c, op->doc, NULL, &id, NULL, t->lsid, t->txn_number, true,
                               ts, (*index)++);
            break;
        case 'u':
        case 'r': {
            msim_doc_t *prev;
            msim_doc_ref(op->doc);
            prev = msim_coll_replace(c, op->doc);
            if (prev == NULL) {
                msim_doc_unref(op->doc);
                msim_doc_ref(op->doc);
                msim_coll_insert(c, op->doc, NULL);
            }
            msim_log_write(op->op == 'u' ? "update" : "replace", c, op->doc, prev, &id, op->desc,
                           t->lsid, t->txn_number, true, ts, (*index)++);
            msim_doc_unref(prev);
            break;
        }
        case 'd': {
            msim_doc_t *gone = msim_coll_remove(c, &id);
            if (gone != NULL) {
                msim_doc_id(gone, &id);
                msim_log_write("delete", c, NULL, gone, &id, NULL, t->lsid, t->txn_number, true, ts,
                               (*index)++);
                msim_doc_unref(gone);
            }
            break;
        }
        default:
            break;
        }
    }
}

bool
msim_cmd_commit_txn(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_txn_t *t = ctx->txn;
    uint32_t index = 0;
    bool ok;

    if (t == NULL)
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "commitTransaction must be run within a transaction");
    pthread_mutex_lock(&msim_srv->txn_mu);
    if (t->state == TXN_COMMITTED) {
        pthread_mutex_unlock(&msim_srv->txn_mu);
        return true; /* retried commit */
    }
    pthread_mutex_unlock(&msim_srv->txn_mu);
    if (t->nops > 0) {
        if (!msim_write_lock(t->ops[0].db, error))
            return false;
    } else {
        pthread_rwlock_wrlock(&msim_srv->lock);
    }
    ok = conflicts_locked(t, error);
    if (ok && t->nops > 0)
        apply_locked(t, msim_clock_tick(), &index);
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    pthread_mutex_lock(&msim_srv->txn_mu);
    finish(t, ok ? TXN_COMMITTED : TXN_ABORTED);
    pthread_mutex_unlock(&msim_srv->txn_mu);
    return ok;
}

bool
msim_txn_commit_shards(msim_server_t **members, int n, const bson_t *lsid, int64_t txn_number,
                       mg_error_t *error)
{
    msim_server_t *prev = msim_srv;
    msim_txn_t **ts = calloc((size_t)n + 1, sizeof *ts);
    bool ok = true;
    int locked = 0;
    uint32_t index = 0;
    if (ts == NULL)
        abort();
    for (int k = 0; k < n && ok; k++) {
        msim_srv = members[k];
        pthread_mutex_lock(&msim_srv->txn_mu);
        ts[k] = session(lsid, false);
        if (ts[k] == NULL || ts[k]->txn_number != txn_number || ts[k]->state != TXN_ACTIVE)
            ok = msim_fail(error, MSIM_E_NO_SUCH_TRANSACTION,
                           "Transaction with { txnNumber: %lld } has been aborted.",
                           (long long)txn_number);
        pthread_mutex_unlock(&msim_srv->txn_mu);
    }
    /* prepare: every participant locked (in order) and free of conflicts */
    for (int k = 0; k < n && ok; k++) {
        msim_srv = members[k];
        pthread_rwlock_wrlock(&msim_srv->lock);
        locked++;
        if (ts[k]->nops > 0 && !msim_write_allowed(ts[k]->ops[0].db, error))
            ok = false;
        else
            ok = conflicts_locked(ts[k], error);
    }
    if (ok) {
        msim_ts_t at = msim_clock_tick(); /* one commit time for all participants */
        for (int k = 0; k < n; k++) {
            msim_srv = members[k];
            apply_locked(ts[k], at, &index);
        }
    }
    for (int k = 0; k < locked; k++) {
        msim_srv = members[k];
        pthread_rwlock_unlock(&msim_srv->lock);
        msim_oplog_publish();
    }
    for (int k = 0; k < n; k++) {
        if (ts[k] == NULL)
            continue;
        msim_srv = members[k];
        pthread_mutex_lock(&msim_srv->txn_mu);
        if (ts[k]->state == TXN_ACTIVE)
            finish(ts[k], ok ? TXN_COMMITTED : TXN_ABORTED);
        pthread_mutex_unlock(&msim_srv->txn_mu);
    }
    msim_srv = prev;
    free(ts);
    return ok;
}

void
msim_txn_abort_session(const bson_t *lsid)
{
    msim_txn_t *t;
    pthread_mutex_lock(&msim_srv->txn_mu);
    t = session(lsid, false);
    if (t != NULL && t->state == TXN_ACTIVE)
        finish(t, TXN_ABORTED);
    pthread_mutex_unlock(&msim_srv->txn_mu);
}

void
msim_txn_fail(msim_txn_t *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&msim_srv->txn_mu);
    if (t->state == TXN_ACTIVE)
        finish(t, TXN_ABORTED);
    pthread_mutex_unlock(&msim_srv->txn_mu);
}

void
msim_txn_expire(int64_t now_ms)
{
    pthread_mutex_lock(&msim_srv->txn_mu);
    for (msim_txn_t *t = msim_srv->txns; t != NULL; t = t->next) {
        if (t->state == TXN_ACTIVE && now_ms - t->started_ms > msim_srv->txn_lifetime_ms) {
            MG_LOG(MG_LOG_INFO, "mongosim",
                   "aborting transaction %lld: open longer than transactionLifetimeLimitSeconds",
                   (long long)t->txn_number);
            finish(t, TXN_ABORTED);
        }
    }
    pthread_mutex_unlock(&msim_srv->txn_mu);
}

bool
msim_cmd_abort_txn(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_txn_t *t = ctx->txn;
    if (t == NULL)
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "abortTransaction must be run within a transaction");
    pthread_mutex_lock(&msim_srv->txn_mu);
    if (t->state != TXN_ACTIVE) {
        int st = t->state;
        pthread_mutex_unlock(&msim_srv->txn_mu);
        if (st == TXN_COMMITTED)
            return msim_fail(error, MSIM_E_TRANSACTION_COMMITTED,
                             "Transaction with { txnNumber: %lld } has been committed.",
                             (long long)t->txn_number);
        return msim_fail(error, MSIM_E_NO_SUCH_TRANSACTION,
                         "Transaction with { txnNumber: %lld } has been aborted.",
                         (long long)t->txn_number);
    }
    finish(t, TXN_ABORTED);
    pthread_mutex_unlock(&msim_srv->txn_mu);
    return true;
}
