/*
 * cdc/src/cdc_fence.c - the follower after the cutover (docs/cdc.md,
 * "After the cutover"). Once a cutover reached its flip the application
 * writes to PostgreSQL, so the follower applies nothing more: every apply
 * reads the cutover's state in its own transaction (cdc_batch.c), and the
 * heartbeat looks too, so an idle follower notices. It then reads the
 * stream once more from the committed checkpoint until it is idle,
 * reporting every source write it finds (an event, `_migrate.after_cutover`
 * for `migrate status`), and exits with exit code 8 saying why.
 */
#include "cdc_follow.h"

#include <string.h>

bool
mg_cdc__fence_check(follow_t *f, bool *flipped, mg_error_t *error)
{
    mg_state_fence_t fc;

    if (!mg_state_follow_fence(f->st, NULL, &fc, error))
        return false;
    *flipped = fc.flipped;
    if (fc.flipped)
        snprintf(f->flipped_at, sizeof(f->flipped_at), "%s", fc.flipped_at);
    return true;
}

bool
mg_cdc__fence_enter(follow_t *f, mg_error_t *error)
{
    bool flipped;

    mg_cdc__wait_idle(f, NULL); /* a batch in flight: committed before the flip, or refused */
    f->ap.fenced = false;
    f->fenced = true;
    f->fence_seen = false;
    mg_cdc_batch_reset(f->batch);
    mg_cdc_batch_reset(f->spare);
    if (!mg_cdc__fence_check(f, &flipped, error))
        return false;
    MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.fenced",
                 MG_LOG_FIELDS(MG_LOG_STR("flipped_at", f->flipped_at)),
                 "the cutover flipped the application to PostgreSQL (at %s UTC): applying "
                 "nothing more; reading the stream once more to report source writes after it",
                 f->flipped_at);
    f->slim = false;
    f->have_prev = false;
    if (f->last_read != NULL)
        bson_destroy(f->last_read);
    f->last_read = f->committed != NULL ? bson_copy(f->committed) : NULL;
    return mg_cdc__open_stream(f, f->committed, error);
}

bool
mg_cdc__fence_event(follow_t *f, const mg_cdc_event_t *ev, mg_error_t *error)
{
    char shown[512];
    int k = ev->coll[0] != '\0' ? mg_cdc__find_table(f, ev->db, ev->coll) : -1;
    bool planned_db = false;

    for (size_t j = 0; j < f->ncolls && !planned_db; j++)
        planned_db = strcmp(f->colls[j].db, ev->db) == 0;
    /* writes to the migrated collections (and drops of their database) */
    if (k < 0 && !(ev->op == MG_CDC_OP_DROP_DATABASE && planned_db))
        return true;
    if (ev->op == MG_CDC_OP_OTHER || ev->op == MG_CDC_OP_INVALIDATE)
        return true;
    if (ev->has_id)
        mg_schema_id_describe(&ev->id, shown, sizeof(shown));
    else
        snprintf(shown, sizeof(shown), "(%s)", ev->op_name);
    mg_state_after_cutover_t w = {ev->db, ev->coll, shown, ev->op_name, ev->ct_t, ev->ct_i};
    if (!mg_state_after_cutover_add(f->st, &w, error))
        return false;
    if (f->after_cutover++ < 10)
        MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.after_cutover",
                     MG_LOG_FIELDS(MG_LOG_STR("db", ev->db), MG_LOG_STR("collection", ev->coll),
                                   MG_LOG_STR("_id", shown), MG_LOG_STR("op", ev->op_name)),
                     "a source write after the cutover, not applied: %s on %s.%s _id %s",
                     ev->op_name, ev->db, ev->coll, shown);
    return true;
}

void
mg_cdc__fence_finish(follow_t *f, mg_error_t *error)
{
    char data[256];
    mg_error_t e;

    snprintf(data, sizeof(data), "{\"writes\": %lld, \"flipped_at\": \"%s\"}",
             (long long)f->after_cutover, f->flipped_at);
    if (!mg_state_event_add(f->st, "cdc.after_cutover", data, &e))
        mg_log_error(MG_LOG_WARNING, "cdc", &e);
    if (f->after_cutover > 0)
        mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                     "the cutover is done (flipped at %s UTC): stopped applying the change "
                     "stream. %lld source writes came after the cutover and were NOT applied "
                     "(the application owns the tables now): migrate status lists them",
                     f->flipped_at, (long long)f->after_cutover);
    else
        mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                     "the cutover is done (flipped at %s UTC): stopped applying the change "
                     "stream; no source write came after it. Stop migrate sync --follow",
                     f->flipped_at);
}
