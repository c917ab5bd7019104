/*
 * cutover/src/cutover_recheck.c - the last look before the flip
 * (docs/cutover.md, "Before the flip"). The flip step is recorded first,
 * which fences the change-stream follower (mg_state_cutover_fence_get);
 * then, before anything is flipped:
 *
 *   1. the source is still frozen: serverStatus repl.userWriteBlockMode is
 *      2 (write-block; a server that does not say gets the block set
 *      again), or --freeze-check CMD exits 0 (hook);
 *   2. no change in scope happened on the source after the fence: a change
 *      stream opened at the fence shows no event of a migrated (or
 *      in-scope) collection up to the source's time after step 1 - a
 *      write through the freeze (a user holding bypassWriteBlockingMode,
 *      a block lifted and set again) is caught here;
 *   3. the applied checkpoint is still at or past the fence: a target
 *      failover with asynchronous replication can take batches back.
 *
 * Any failure aborts the cutover, and the runner unfreezes the source.
 */
#include "cutover_internal.h"
#include "mg/cdc.h"
#include "mg/validate.h"

#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>

/* ---- 1. still frozen ---- */

/*
 * block_mode reads serverStatus repl.userWriteBlockMode into *mode (0 when
 * the server does not say: mongos, an older server, or no privilege).
 */
static void
block_mode(cutover_t *c, int *mode)
{
    bson_t *cmd = BCON_NEW("serverStatus", BCON_INT32(1));
    bson_t reply;
    bson_iter_t it;
    mg_error_t e;

    *mode = 0;
    if (mg_mongo_command(c->s->src, "admin", cmd, &reply, &e) && bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "repl.userWriteBlockMode", &it) &&
        BSON_ITER_HOLDS_NUMBER(&it))
        *mode = (int)bson_iter_as_int64(&it);
    bson_destroy(&reply);
    bson_destroy(cmd);
}

static bool
still_frozen(cutover_t *c, mg_error_t *error)
{
    int mode;

    if (c->freeze == FREEZE_HOOK && c->s->freeze_check != NULL) {
        if (mg_cutover__run_shell(c->s->freeze_check, "MIGRATE_FREEZE", "check", error))
            return true;
        mg_error_prefix(error, "the freeze check (--freeze-check) says the source may no longer "
                               "be frozen");
        return false;
    }
    if (c->freeze != FREEZE_WRITE_BLOCK)
        return true; /* hook without a check, none: the change stream below still looks */
    block_mode(c, &mode);
    if (mode == 2)
        return true;
    if (mode == 1)
        return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                            "the source is no longer frozen: serverStatus says user write "
                            "blocking is disabled (someone ran setUserWriteBlockMode {global: "
                            "false}); writes may have reached MongoDB after the fence");
    /* the server does not say: set the block again (a no-op when it holds); whatever got
     * through in a gap shows in the change stream below */
    MG_LOG(MG_LOG_INFO, "cutover",
           "serverStatus does not show the write block (mongos, or no serverStatus privilege): "
           "setting it again before the flip");
    return mg_cutover__write_block(c, true, error);
}

/* ---- 2. nothing changed after the fence ---- */

/* The namespaces whose changes matter: the plan, and anything the scope takes in. */
typedef struct {
    mg_state_colls_t plan;
    mg_state_scope_t scope;
} watched_t;

/* matters tells whether a change of db.coll (coll NULL: the database) concerns the migration. */
static bool
matters(const watched_t *w, const char *db, const char *coll)
{
    for (size_t k = 0; k < w->plan.n; k++)
        if (strcmp(w->plan.items[k].db, db) == 0 &&
            (coll == NULL || strcmp(w->plan.items[k].coll, coll) == 0))
            return true;
    return coll != NULL && w->scope.known && mg_validate_scope_wants(&w->scope, db, coll, NULL);
}

/* event_matters reads an event's ns, operationType and clusterTime; true when it matters. */
static bool
event_matters(const watched_t *w, const bson_t *ev, char *what, size_t whatsz)
{
    bson_iter_t it;
    const char *db = NULL, *coll = NULL, *op = "?";
    uint32_t t = 0, i = 0;

    if (bson_iter_init_find(&it, ev, "operationType") && BSON_ITER_HOLDS_UTF8(&it))
        op = bson_iter_utf8(&it, NULL);
    if (bson_iter_init(&it, ev) && bson_iter_find_descendant(&it, "ns.db", &it) &&
        BSON_ITER_HOLDS_UTF8(&it))
        db = bson_iter_utf8(&it, NULL);
    if (bson_iter_init(&it, ev) && bson_iter_find_descendant(&it, "ns.coll", &it) &&
        BSON_ITER_HOLDS_UTF8(&it))
        coll = bson_iter_utf8(&it, NULL);
    if (bson_iter_init_find(&it, ev, "clusterTime") && BSON_ITER_HOLDS_TIMESTAMP(&it))
        bson_iter_timestamp(&it, &t, &i);
    if (db == NULL || !matters(w, db, coll))
        return false;
    snprintf(what, whatsz, "%s on %s%s%s at Timestamp(%u, %u)", op, db, coll ? "." : "",
             coll ? coll : "", t, i);
    return true;
}

/*
 * drain_stream reads cs until its resume token passes (now_t, now_i) or the
 * deadline; *found names the first change that matters.
 */
static bool
drain_stream(cutover_t *c, mongoc_change_stream_t *cs, const watched_t *w, uint32_t now_t,
             uint32_t now_i, char *found, size_t foundsz, mg_error_t *error)
{
    double deadline = c->deadline > mg_now_s() + 2.0 ? c->deadline : mg_now_s() + 2.0;
    const bson_t *ev, *token, *err_doc;
    bson_error_t be;
    uint32_t t, i;

    for (;;) {
        while (mongoc_change_stream_next(cs, &ev))
            if (event_matters(w, ev, found, foundsz))
                return true;
        if (mongoc_change_stream_error_document(cs, &be, &err_doc))
            return mg_error_set_bson(error, &be,
                                     "could not read the source's change stream "
                                     "after the fence");
        token = mongoc_change_stream_get_resume_token(cs);
        if (token != NULL && mg_cdc_token_time(token, &t, &i) &&
            (t > now_t || (t == now_t && i >= now_i)))
            return true;
        if (mg_now_s() > deadline)
            return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                                "could not confirm before --timeout that nothing was written on "
                                "the source after the fence: its change stream did not reach "
                                "Timestamp(%u, %u)",
                                now_t, now_i);
    }
}

/* open_stream opens a change stream of the whole deployment, or of db, after the fence. */
static mongoc_change_stream_t *
open_stream(cutover_t *c, const char *db)
{
    uint32_t t = c->fence_t, i = c->fence_i + 1;
    bson_t *opts, pipeline = BSON_INITIALIZER;
    mongoc_change_stream_t *cs;

    if (i == 0) /* the increment wrapped: the next second */
        t++;
    opts = BCON_NEW("startAtOperationTime", BCON_TIMESTAMP(t, i), "maxAwaitTimeMS", BCON_INT64(200),
                    "batchSize", BCON_INT32(1000));
    if (db == NULL) {
        cs = mongoc_client_watch(c->s->src->client, &pipeline, opts);
    } else {
        mongoc_database_t *d = mongoc_client_get_database(c->s->src->client, db);
        cs = mongoc_database_watch(d, &pipeline, opts);
        mongoc_database_destroy(d);
    }
    bson_destroy(opts);
    bson_destroy(&pipeline);
    return cs;
}

/* check_stream reads the stream of db (NULL: the deployment); *denied when not allowed. */
static bool
check_stream(cutover_t *c, const char *db, uint32_t now_t, uint32_t now_i, const watched_t *w,
             char *found, size_t foundsz, bool *denied, mg_error_t *error)
{
    mongoc_change_stream_t *cs = open_stream(c, db);
    const bson_t *doc;
    bson_error_t be;
    bool ok;

    *denied = mongoc_change_stream_error_document(cs, &be, &doc) && be.code == 13;
    ok = *denied || drain_stream(c, cs, w, now_t, now_i, found, foundsz, error);
    mongoc_change_stream_destroy(cs);
    return ok;
}

/*
 * nothing_after_fence fails when the source shows a change that matters
 * after the fence. The deployment's stream is read; a user without the
 * privilege for it (Unauthorized) gets one stream per planned database.
 */
static bool
nothing_after_fence(cutover_t *c, uint32_t now_t, uint32_t now_i, const watched_t *w,
                    mg_error_t *error)
{
    char found[1024] = "";
    bool denied, ok = check_stream(c, NULL, now_t, now_i, w, found, sizeof(found), &denied, error);

    for (size_t k = 0; ok && denied && k < w->plan.n && found[0] == '\0'; k++) {
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = strcmp(w->plan.items[j].db, w->plan.items[k].db) == 0;
        if (seen)
            continue;
        ok = check_stream(c, w->plan.items[k].db, now_t, now_i, w, found, sizeof(found), &denied,
                          error);
        if (ok && denied)
            ok = mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 13,
                              "could not open a change stream on source database \"%s\" to "
                              "look for writes after the fence: not authorized",
                              w->plan.items[k].db);
        denied = true; /* go on with the next database */
    }
    if (ok && found[0] != '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                            "the source changed after the fence Timestamp(%u, %u): %s (a write "
                            "through the freeze, e.g. by a user holding "
                            "bypassWriteBlockingMode); it may be missing in PostgreSQL",
                            c->fence_t, c->fence_i, found);
    return ok;
}

/* ---- 3. the checkpoint ---- */

static bool
checkpoint_at_fence(cutover_t *c, mg_error_t *error)
{
    mg_state_checkpoint_t cp;

    if (!mg_state_checkpoint_get(c->st, 0, &cp, error))
        return false;
    mg_state_checkpoint_cleanup(&cp);
    if (cp.t > c->fence_t || (cp.t == c->fence_t && cp.i >= c->fence_i))
        return true;
    return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                        "the applied checkpoint Timestamp(%u, %u) is behind the fence "
                        "Timestamp(%u, %u) again (batches lost in a target failover?): not every "
                        "acknowledged write is in PostgreSQL",
                        cp.t, cp.i, c->fence_t, c->fence_i);
}

bool
mg_cutover__recheck(cutover_t *c, mg_error_t *error)
{
    watched_t w;
    uint32_t now_t, now_i;
    bool ok;

    memset(&w, 0, sizeof(w));
    if (!still_frozen(c, error) || !mg_cutover__source_op_time(c, &now_t, &now_i, error))
        return false;
    ok = mg_state_collections_load(c->st, false, &w.plan, error) &&
         mg_state_scope_get(c->st, &w.scope, error) &&
         nothing_after_fence(c, now_t, now_i, &w, error) && checkpoint_at_fence(c, error);
    mg_state_colls_cleanup(&w.plan);
    mg_state_scope_cleanup(&w.scope);
    if (ok)
        MG_LOG_EVENT(
            MG_LOG_INFO, "cutover", "cutover.recheck",
            MG_LOG_FIELDS(MG_LOG_UINT("fence_ts", c->fence_t), MG_LOG_UINT("source_ts", now_t)),
            "before the flip: the source is still frozen, nothing changed after the "
            "fence, the checkpoint is at or past it");
    return ok;
}
