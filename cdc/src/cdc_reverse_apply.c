/*
 * cdc/src/cdc_reverse_apply.c - the reverse sync's side of MongoDB: the
 * position document (database MG_CDC_REVERSE_DB, collection
 * MG_CDC_REVERSE_COLL, _id the state schema's name) and the transactions
 * that write a group of PostgreSQL transactions together with it. The
 * position moves by compare-and-set, so two writers can never both apply
 * the same change, and a change is in MongoDB exactly when the position
 * that covers it is.
 */
#include "cdc_reverse_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How many times a transaction is tried again after a transient error. */
#define TXN_TRIES 5

bool
mg_cdc__rev_mongo_init(mg_cdc__rev_mongo_t *m, mongoc_client_t *client, const char *key,
                       const mg_cdc_table_t *tables, size_t ntables, mg_error_t *error)
{
    bson_error_t be;

    memset(m, 0, sizeof(*m));
    m->client = client;
    m->key = key;
    m->tables = tables;
    m->ntables = ntables;
    m->colls = calloc(ntables + 1, sizeof(*m->colls));
    if (m->colls == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    m->positions = mongoc_client_get_collection(client, MG_CDC_REVERSE_DB, MG_CDC_REVERSE_COLL);
    m->session = mongoc_client_start_session(client, NULL, &be);
    if (m->session == NULL)
        return mg_error_set_bson(error, &be, "could not start a session on the source");
    return true;
}

void
mg_cdc__rev_mongo_cleanup(mg_cdc__rev_mongo_t *m)
{
    if (m->colls != NULL)
        for (size_t k = 0; k < m->ntables; k++)
            if (m->colls[k] != NULL)
                mongoc_collection_destroy(m->colls[k]);
    free(m->colls);
    if (m->positions != NULL)
        mongoc_collection_destroy(m->positions);
    if (m->session != NULL)
        mongoc_client_session_destroy(m->session);
    memset(m, 0, sizeof(*m));
}

static mongoc_collection_t *
coll_of(mg_cdc__rev_mongo_t *m, size_t table)
{
    if (m->colls[table] == NULL)
        m->colls[table] =
            mongoc_client_get_collection(m->client, m->tables[table].db, m->tables[table].coll);
    return m->colls[table];
}

static int64_t
as_i64(const bson_t *doc, const char *key)
{
    bson_iter_t it;

    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : 0;
}

bool
mg_cdc__rev_position_read(mg_cdc__rev_mongo_t *m, mg_cdc_reverse_pos_t *out, mg_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    const bson_t *doc;
    bson_error_t be;
    mongoc_cursor_t *cur;
    bool ok = true;

    memset(out, 0, sizeof(*out));
    BSON_APPEND_UTF8(&filter, "_id", m->key);
    cur = mongoc_collection_find_with_opts(m->positions, &filter, NULL, NULL);
    if (mongoc_cursor_next(cur, &doc)) {
        out->exists = true;
        out->generation = (int32_t)as_i64(doc, "generation");
        out->lsn = (uint64_t)as_i64(doc, "lsn");
        out->part_lsn = (uint64_t)as_i64(doc, "part_lsn");
        out->part_done = as_i64(doc, "part_done");
        out->txns = as_i64(doc, "txns");
        out->changes = as_i64(doc, "changes");
    }
    if (mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be, "could not read the reverse position in %s.%s",
                               MG_CDC_REVERSE_DB, MG_CDC_REVERSE_COLL);
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    return ok;
}

bool
mg_cdc_reverse_position_get(mongoc_client_t *client, const char *state_schema,
                            mg_cdc_reverse_pos_t *out, mg_error_t *error)
{
    mg_cdc__rev_mongo_t m = {.client = client, .key = state_schema};
    bool ok;

    m.positions = mongoc_client_get_collection(client, MG_CDC_REVERSE_DB, MG_CDC_REVERSE_COLL);
    ok = mg_cdc__rev_position_read(&m, out, error);
    mongoc_collection_destroy(m.positions);
    return ok;
}

/* pos_filter appends the compare-and-set filter of from. */
static void
pos_filter(bson_t *filter, const char *key, const mg_cdc_reverse_pos_t *from)
{
    BSON_APPEND_UTF8(filter, "_id", key);
    if (from == NULL)
        return;
    BSON_APPEND_INT32(filter, "generation", from->generation);
    BSON_APPEND_INT64(filter, "lsn", (int64_t)from->lsn);
    BSON_APPEND_INT64(filter, "part_lsn", (int64_t)from->part_lsn);
    BSON_APPEND_INT64(filter, "part_done", from->part_done);
}

static void
pos_update(bson_t *update, const mg_cdc_reverse_pos_t *to)
{
    bson_t set;

    BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
    BSON_APPEND_INT32(&set, "generation", to->generation);
    BSON_APPEND_INT64(&set, "lsn", (int64_t)to->lsn);
    BSON_APPEND_INT64(&set, "part_lsn", (int64_t)to->part_lsn);
    BSON_APPEND_INT64(&set, "part_done", to->part_done);
    BSON_APPEND_INT64(&set, "txns", to->txns);
    BSON_APPEND_INT64(&set, "changes", to->changes);
    BSON_APPEND_DATE_TIME(&set, "updated", (int64_t)time(NULL) * 1000);
    bson_append_document_end(update, &set);
}

/* move runs the compare-and-set (with opts: a session in a transaction, or none). */
static bool
move(mg_cdc__rev_mongo_t *m, const mg_cdc_reverse_pos_t *from, const mg_cdc_reverse_pos_t *to,
     const bson_t *opts_in, bool *moved, bson_t *reply, bson_error_t *be)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    bool ok;

    pos_filter(&filter, m->key, from);
    pos_update(&update, to);
    if (opts_in != NULL)
        bson_concat(&opts, opts_in);
    if (from == NULL)
        BSON_APPEND_BOOL(&opts, "upsert", true);
    ok = mongoc_collection_update_one(m->positions, &filter, &update, &opts, reply, be);
    *moved = ok && (from == NULL || as_i64(reply, "matchedCount") == 1);
    bson_destroy(&filter);
    bson_destroy(&update);
    bson_destroy(&opts);
    return ok;
}

bool
mg_cdc__rev_position_move(mg_cdc__rev_mongo_t *m, const mg_cdc_reverse_pos_t *from,
                          const mg_cdc_reverse_pos_t *to, bool *moved, mg_error_t *error)
{
    bson_t reply;
    bson_error_t be;
    bool ok = move(m, from, to, NULL, moved, &reply, &be);

    bson_destroy(&reply);
    return ok || mg_error_set_bson(error, &be, "could not move the reverse position in %s.%s",
                                   MG_CDC_REVERSE_DB, MG_CDC_REVERSE_COLL);
}

/* ---- the transaction ---- */

/* transient tells whether a failed step of a transaction may be tried again from the start. */
static bool
transient(const bson_t *reply, const bson_error_t *be)
{
    return mongoc_error_has_label(reply, "TransientTransactionError") ||
           be->domain == MONGOC_ERROR_STREAM || be->domain == MONGOC_ERROR_SERVER_SELECTION;
}

/* write_error names the operation a bulk's writeErrors[0] points at. */
static bool
write_error(mg_cdc__rev_mongo_t *m, const mg_cdc__rev_op_t *ops, const size_t *index, size_t nidx,
            const bson_t *reply, const bson_error_t *be, mg_error_t *error)
{
    bson_iter_t it, err;
    size_t at = 0;
    const mg_cdc__rev_op_t *op;

    if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &err) && bson_iter_next(&err) && BSON_ITER_HOLDS_DOCUMENT(&err) &&
        bson_iter_recurse(&err, &it) && bson_iter_find(&it, "index"))
        at = (size_t)bson_iter_as_int64(&it);
    op = &ops[index[at < nidx ? at : 0]];
    mg_error_set_bson(error, be, "could not write %s of %s.%s (key \"%.200s\") to the source",
                      op->kind == MG_CDC__REV_TRUNCATE ? "the truncate"
                      : op->kind == MG_CDC__REV_DELETE ? "the delete"
                                                       : "the document",
                      m->tables[op->table].db, m->tables[op->table].coll,
                      op->doc_id != NULL ? op->doc_id : "");
    if (error != NULL && error->code == 371)
        mg_error_prefix(error, "the source is write-blocked and its user lacks "
                               "bypassWriteBlockingMode (grant it the restore role)");
    return false;
}

/* add_op adds op to bulk; index receives the op's number for each bulk entry. */
static bool
add_op(mongoc_bulk_operation_t *bulk, const mg_cdc__rev_op_t *op, size_t opno, size_t *index,
       size_t *nidx, bson_error_t *be)
{
    bson_t opts = BSON_INITIALIZER, empty = BSON_INITIALIZER;
    bool ok;

    BSON_APPEND_BOOL(&opts, "validate", false);
    if (op->kind == MG_CDC__REV_TRUNCATE) {
        ok = mongoc_bulk_operation_remove_many_with_opts(bulk, &empty, NULL, be);
    } else if (op->kind == MG_CDC__REV_DELETE || op->dollar_top) {
        /* a top-level $-key cannot be in a replacement: delete, then insert */
        ok = mongoc_bulk_operation_remove_one_with_opts(bulk, op->id, NULL, be);
        if (ok && op->kind == MG_CDC__REV_UPSERT) {
            index[(*nidx)++] = opno;
            ok = mongoc_bulk_operation_insert_with_opts(bulk, op->doc, &opts, be);
        }
    } else {
        BSON_APPEND_BOOL(&opts, "upsert", true);
        ok = mongoc_bulk_operation_replace_one_with_opts(bulk, op->id, op->doc, &opts, be);
    }
    index[(*nidx)++] = opno;
    bson_destroy(&opts);
    bson_destroy(&empty);
    return ok;
}

/*
 * write_run writes ops[from, to) - one collection's consecutive
 * operations - as one ordered bulk in the session's transaction.
 */
static bool
write_run(mg_cdc__rev_mongo_t *m, const mg_cdc__rev_op_t *ops, size_t from, size_t to, bool *retry,
          mg_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, reply;
    bson_error_t be;
    mongoc_bulk_operation_t *bulk;
    size_t *index = malloc(2 * (to - from) * sizeof(size_t)), nidx = 0;
    bool ok = index != NULL && mongoc_client_session_append(m->session, &opts, &be);

    memset(&be, 0, sizeof(be));
    bson_init(&reply);
    if (index == NULL) {
        bson_destroy(&opts);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    BSON_APPEND_BOOL(&opts, "ordered", true);
    bulk = mongoc_collection_create_bulk_operation_with_opts(coll_of(m, ops[from].table), &opts);
    for (size_t k = from; ok && k < to; k++)
        ok = add_op(bulk, &ops[k], k, index, &nidx, &be);
    bson_destroy(&reply);
    ok = ok && mongoc_bulk_operation_execute(bulk, &reply, &be) != 0;
    if (!ok) {
        *retry = transient(&reply, &be);
        write_error(m, ops, index, nidx, &reply, &be, error);
    }
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&opts);
    free(index);
    return ok;
}

/* commit commits the session's transaction, trying the commit again when its result is unknown. */
static bool
commit(mg_cdc__rev_mongo_t *m, bool *retry, mg_error_t *error)
{
    bson_t reply;
    bson_error_t be;

    for (int k = 0; k < TXN_TRIES; k++) {
        bool ok = mongoc_client_session_commit_transaction(m->session, &reply, &be);
        bool unknown = !ok && mongoc_error_has_label(&reply, "UnknownTransactionCommitResult");

        *retry = !ok && !unknown && transient(&reply, &be);
        bson_destroy(&reply);
        if (ok)
            return true;
        if (!unknown)
            return mg_error_set_bson(error, &be, "could not commit the transaction on the source");
    }
    return mg_error_set_bson(error, &be,
                             "could not commit the transaction on the source: result unknown");
}

/* attempt runs one try of the transaction; *retry when it may be tried again. */
static bool
attempt(mg_cdc__rev_mongo_t *m, const mg_cdc__rev_op_t *ops, size_t n,
        const mg_cdc_reverse_pos_t *from, const mg_cdc_reverse_pos_t *to, bool *retry,
        mg_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, reply;
    bson_error_t be;
    bool ok, moved = false;

    *retry = false;
    if (!mongoc_client_session_start_transaction(m->session, NULL, &be))
        return mg_error_set_bson(error, &be, "could not start a transaction on the source");
    ok = mongoc_client_session_append(m->session, &opts, &be) &&
         move(m, from, to, &opts, &moved, &reply, &be);
    if (!ok) {
        *retry = transient(&reply, &be);
        mg_error_set_bson(error, &be, "could not move the reverse position in %s.%s",
                          MG_CDC_REVERSE_DB, MG_CDC_REVERSE_COLL);
    } else if (!moved) {
        ok = mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                          "the reverse position in %s.%s is not where this process left it "
                          "(another reverse sync, or a commit whose answer was lost): going on "
                          "from what MongoDB holds",
                          MG_CDC_REVERSE_DB, MG_CDC_REVERSE_COLL);
    }
    bson_destroy(&reply);
    bson_destroy(&opts);
    for (size_t k = 0, j; ok && k < n; k = j) {
        for (j = k + 1; j < n && ops[j].table == ops[k].table; j++)
            ;
        ok = write_run(m, ops, k, j, retry, error);
    }
    if (ok)
        return commit(m, retry, error);
    mongoc_client_session_abort_transaction(m->session, NULL);
    return false;
}

bool
mg_cdc__rev_apply(mg_cdc__rev_mongo_t *m, const mg_cdc__rev_op_t *ops, size_t n,
                  const mg_cdc_reverse_pos_t *from, const mg_cdc_reverse_pos_t *to,
                  mg_error_t *error)
{
    bool retry = false;

    for (int k = 0; k < TXN_TRIES; k++) {
        if (attempt(m, ops, n, from, to, &retry, error))
            return true;
        if (!retry)
            return false;
        MG_LOG(MG_LOG_INFO, "cdc", "reverse: transaction tried again: %s", error->message);
    }
    return false;
}
