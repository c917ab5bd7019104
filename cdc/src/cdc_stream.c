/*
 * cdc/src/cdc_stream.c - the change stream the follower reads: its
 * pipeline ($match on the watched databases; for an event too large with
 * its document, a $project that leaves the document out; on servers that
 * have it, $changeStreamSplitLargeEvent), its options (updateLookup, T0 or
 * the token), and whether the source can split large events.
 */
#include "cdc_follow.h"

#include <stdlib.h>
#include <string.h>

void
mg_cdc__stream_args(const mg_cdc__stream_spec_t *spec, bson_t *pipeline, bson_t *opts)
{
    static const char *const internal[] = {"admin", "config", "local"};
    bson_t arr, stage, match, cond, dbs;
    char key[16];
    int n = 0;

    bson_init(pipeline);
    bson_init(opts);
    bson_append_array_begin(pipeline, "pipeline", -1, &arr);
    snprintf(key, sizeof(key), "%d", n++);
    bson_append_document_begin(&arr, key, -1, &stage);
    bson_append_document_begin(&stage, "$match", -1, &match);
    bson_append_document_begin(&match, "ns.db", -1, &cond);
    /* the watched databases; none named: every one but the server's own */
    bson_append_array_begin(&cond, spec->ndbs > 0 ? "$in" : "$nin", -1, &dbs);
    for (size_t i = 0; i < (spec->ndbs > 0 ? spec->ndbs : 3); i++) {
        char k[16];
        snprintf(k, sizeof(k), "%zu", i);
        bson_append_utf8(&dbs, k, -1, spec->ndbs > 0 ? spec->dbs[i] : internal[i], -1);
    }
    bson_append_array_end(&cond, &dbs);
    bson_append_document_end(&match, &cond);
    bson_append_document_end(&stage, &match);
    bson_append_document_end(&arr, &stage);
    if (spec->slim) {
        /* the event without what made it too large; the document is read by _id */
        bson_t p2;
        snprintf(key, sizeof(key), "%d", n++);
        bson_append_document_begin(&arr, key, -1, &stage);
        bson_append_document_begin(&stage, "$project", -1, &p2);
        BSON_APPEND_INT32(&p2, "fullDocument", 0);
        BSON_APPEND_INT32(&p2, "fullDocumentBeforeChange", 0);
        BSON_APPEND_INT32(&p2, "updateDescription", 0);
        bson_append_document_end(&stage, &p2);
        bson_append_document_end(&arr, &stage);
    } else {
        BSON_APPEND_UTF8(opts, "fullDocument", "updateLookup");
    }
    if (spec->split) { /* must be the last stage */
        bson_t empty = BSON_INITIALIZER;
        snprintf(key, sizeof(key), "%d", n++);
        bson_append_document_begin(&arr, key, -1, &stage);
        BSON_APPEND_DOCUMENT(&stage, "$changeStreamSplitLargeEvent", &empty);
        bson_append_document_end(&arr, &stage);
    }
    bson_append_array_end(pipeline, &arr);
    BSON_APPEND_INT32(opts, "batchSize", 5000);
    BSON_APPEND_INT64(opts, "maxAwaitTimeMS", 500);
    if (spec->token != NULL)
        BSON_APPEND_DOCUMENT(opts, "startAfter", spec->token);
    else
        BSON_APPEND_TIMESTAMP(opts, "startAtOperationTime", spec->t0_t, spec->t0_i);
}

bool
mg_cdc__splits_large_events(const char *version)
{
    int major = 0, minor = 0, patch = 0;

    if (version == NULL || sscanf(version, "%d.%d.%d", &major, &minor, &patch) < 2)
        return false;
    /* $changeStreamSplitLargeEvent: MongoDB 7.0, and 6.0.9 onwards in 6.0 */
    return major > 6 || (major == 6 && minor == 0 && patch >= 9);
}

bool
mg_cdc__open_stream(follow_t *f, const bson_t *token, mg_error_t *error)
{
    mg_cdc__stream_spec_t spec = {
        .dbs = (const char *const *)f->dbs,
        .ndbs = f->ndbs,
        .slim = f->slim,
        .split = f->split,
        .token = token,
        .t0_t = f->t0_t,
        .t0_i = f->t0_i,
    };
    bson_t pipeline, opts;
    const bson_t *err_doc;
    bson_error_t be;

    if (f->stream != NULL)
        mongoc_change_stream_destroy(f->stream);
    f->stream = NULL;
    mg_cdc__split_reset(&f->frags); /* a partly read event is read again whole */
    mg_cdc__stream_args(&spec, &pipeline, &opts);
    f->stream = mongoc_client_watch(f->mongo, &pipeline, &opts);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    if (!mongoc_change_stream_error_document(f->stream, &be, &err_doc))
        return true;
    if ((be.code == ERR_TOO_LARGE || be.code == ERR_FIELD_TOO_LARGE) && !f->slim) {
        /* the first batch already holds an event too large with its document */
        mg_cdc__too_large(f, be.code);
        return mg_cdc__open_stream(f, token, error);
    }
    return mg_error_set_bson(error, &be, "could not open the change stream");
}

void
mg_cdc__too_large(follow_t *f, int code)
{
    MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.too_large",
                 MG_LOG_FIELDS(MG_LOG_INT("err_code", code)),
                 "a change event is over 16 MB%s: reading it without its document, and the "
                 "document by _id",
                 f->split ? " and a field of it too large to split"
                          : " and this source cannot split it (before 6.0.9/7.0)");
    f->slim = true;
}

bool
mg_cdc__stream_probe(follow_t *f, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t be;
    bson_iter_t it;
    bool ok;

    BSON_APPEND_INT32(&cmd, "buildInfo", 1);
    ok = mongoc_client_command_simple(f->mongo, "admin", &cmd, NULL, &reply, &be);
    if (!ok)
        mg_error_set_bson(error, &be, "could not run buildInfo on the source");
    else if (bson_iter_init_find(&it, &reply, "version") && BSON_ITER_HOLDS_UTF8(&it))
        f->split = mg_cdc__splits_large_events(bson_iter_utf8(&it, NULL));
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

bool
mg_cdc__watch_dbs(follow_t *f, mg_error_t *error)
{
    for (size_t i = 0; i < f->ndbs; i++)
        free(f->dbs[i]);
    free(f->dbs);
    f->dbs = calloc(f->ncolls + 1, sizeof(char *));
    f->ndbs = 0;
    if (f->dbs == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; i < f->ncolls; i++) {
        bool seen = false;
        for (size_t j = 0; j < f->ndbs && !seen; j++)
            seen = strcmp(f->dbs[j], f->colls[i].db) == 0;
        if (!seen && (f->dbs[f->ndbs++] = strdup(f->colls[i].db)) == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    return true;
}
