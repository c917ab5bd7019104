/*
 * cdc/src/cdc_data.c - the follower's data events: inserts, updates,
 * replaces and deletes into the batch; a document whose event was too
 * large is read by _id; documents that cannot be written stop their
 * collection or, with --skip-invalid, are recorded.
 */
#include "cdc_follow.h"

#include <stdlib.h>
#include <string.h>

static void
record_invalid(follow_t *f, size_t k, const mg_cdc_event_t *ev, const char *reason)
{
    mg_error_t e;
    char shown[512];

    if (ev->has_id)
        mg_schema_id_describe(&ev->id, shown, sizeof(shown));
    else
        snprintf(shown, sizeof(shown), "?");
    if (!mg_state_invalid_doc_add(f->st, f->colls[k].db, f->colls[k].coll, 0, shown, reason, &e))
        mg_log_error(MG_LOG_WARNING, "cdc", &e);
    MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.invalid_doc",
                 MG_LOG_FIELDS(MG_LOG_STR("db", f->colls[k].db),
                               MG_LOG_STR("collection", f->colls[k].coll),
                               MG_LOG_STR("_id", shown)),
                 "skipped a change that cannot be written: %s", reason);
}

/* fetch_by_id reads the current document by _id (for an oversize event). */
static bool
fetch_by_id(follow_t *f, size_t k, const bson_iter_t *id, bson_t **doc, mg_error_t *error)
{
    mongoc_collection_t *c =
        mongoc_client_get_collection(f->mongo, f->colls[k].db, f->colls[k].coll);
    bson_t filter = BSON_INITIALIZER;
    mongoc_cursor_t *cur;
    const bson_t *d;
    bson_error_t be;
    bool ok = true;

    bson_append_iter(&filter, "_id", 3, id);
    cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
    *doc = NULL;
    if (mongoc_cursor_next(cur, &d))
        *doc = bson_copy(d);
    else if (mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be, "could not read a document of \"%s.%s\" by _id",
                               f->colls[k].db, f->colls[k].coll);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    bson_destroy(&filter);
    return ok;
}

/* on_data_event adds an insert/update/replace/delete to the batch. */
bool
mg_cdc__on_data_event(follow_t *f, size_t k, const mg_cdc_event_t *ev, mg_error_t *error)
{
    mg_error_t e;
    bool ok;
    bson_t *fetched = NULL;
    const bson_t *doc = ev->has_full_document ? &ev->full_document : NULL;

    if (f->slim && ev->op != MG_CDC_OP_DELETE) {
        /* the event was too large with its document: read the document now */
        if (!fetch_by_id(f, k, &ev->id, &fetched, error))
            return false;
        doc = fetched;
    }
    mg_error_clear(&e);
    if (ev->op == MG_CDC_OP_DELETE || doc == NULL) {
        /* an update whose document is gone: it was deleted since; a delete follows */
        ok = mg_cdc_batch_delete(f->batch, k, &ev->id, ev->ct_t, ev->ct_i, &e);
    } else {
        ok = mg_cdc_batch_upsert(f->batch, k, doc, ev->ct_t, ev->ct_i, &e);
    }
    if (fetched != NULL)
        bson_destroy(fetched);
    if (ok)
        return true;
    if (e.code == MG_ERROR_CODE_LIMIT && mg_cdc_batch_full(f->batch))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "%s", e.message);
    if (f->s->skip_invalid)
        record_invalid(f, k, ev, e.message);
    else
        mg_cdc__stop_collection(f, k, e.message);
    return true;
}
