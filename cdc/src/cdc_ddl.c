/*
 * cdc/src/cdc_ddl.c - the follower's policies for operations other than
 * writes: drop (--on-drop), rename (--on-rename), dropDatabase
 * (docs/cdc.md, "Operations other than writes").
 */
#include "cdc_follow.h"

#include <stdlib.h>
#include <string.h>

/* follow_rename makes collection k follow its new name (--on-rename follow). */
static bool
follow_rename(follow_t *f, size_t k, const mg_cdc_event_t *ev, mg_error_t *error)
{
    follow_coll_t *c = &f->colls[k];
    char *db, *coll;

    if (!mg_state_collection_rename(f->st, c->db, c->coll, ev->to_db, ev->to_coll, error))
        return false;
    MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.rename",
                 MG_LOG_FIELDS(MG_LOG_STR("from", ev->coll), MG_LOG_STR("to", ev->to_coll)),
                 "collection %s.%s renamed to %s.%s: following it", ev->db, ev->coll, ev->to_db,
                 ev->to_coll);
    db = strdup(ev->to_db);
    coll = strdup(ev->to_coll);
    if (db == NULL || coll == NULL) {
        free(db);
        free(coll);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    free(c->db);
    free(c->coll);
    c->db = db;
    c->coll = coll;
    f->tables[k].db = c->db;
    f->tables[k].coll = c->coll;
    /* a database the stream does not watch yet: reopened after this event */
    bool watched = false;
    for (size_t i = 0; i < f->ndbs && !watched; i++)
        watched = strcmp(f->dbs[i], db) == 0;
    if (!watched) {
        f->rewatch = true;
        return mg_cdc__watch_dbs(f, error);
    }
    return true;
}

/*
 * replaced handles the collection planned as the rename's target, kt:
 * MongoDB renames with dropTarget as one rename event and no drop, so the
 * target's documents are gone and the name now holds the renamed
 * collection's. followed: the rename was followed (the target's rows in
 * _migrate went with it); else the target stops, to be re-synced.
 */
static void
replaced(follow_t *f, int kt, const mg_cdc_event_t *ev, bool followed)
{
    follow_coll_t *t = &f->colls[kt];
    char why[1024];

    snprintf(why, sizeof(why),
             "replaced on the source by %s.%s, renamed onto it (dropTarget); the table "
             "\"%s\".\"%s\" is kept as it was",
             ev->db, ev->coll, t->schema, t->table);
    if (followed) {
        snprintf(t->status, sizeof(t->status), "replaced"); /* no longer matched by name */
        MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.rename_replaced",
                     MG_LOG_FIELDS(MG_LOG_STR("db", ev->to_db),
                                   MG_LOG_STR("collection", ev->to_coll),
                                   MG_LOG_STR("table", t->table)),
                     "collection %s.%s %s and no longer migrated: drop it when it is not needed",
                     ev->to_db, ev->to_coll, why);
        return;
    }
    if (!mg_cdc__active(t))
        return;
    size_t n = strlen(why);
    snprintf(why + n, sizeof(why) - n, ". Re-sync it: migrate sync --resync %s.%s", ev->to_db,
             ev->to_coll);
    mg_cdc__stop_collection(f, (size_t)kt, why);
}

/* on_drop applies --on-drop to collection k, dropped on the source (alone or with its database). */
static bool
on_drop(follow_t *f, size_t k, mg_error_t *error)
{
    follow_coll_t *c = &f->colls[k];
    char why[1024];
    mg_buf_t sql;
    bool ok;

    switch (f->s->on_drop) {
    case MG_CDC_DROP_STOP:
        snprintf(why, sizeof(why),
                 "dropped on the source; the table \"%s\".\"%s\" is kept as it was. If the "
                 "collection was recreated, re-sync it: migrate sync --resync %s.%s; or choose a "
                 "policy with --on-drop truncate|keep",
                 c->schema, c->table, c->db, c->coll);
        mg_cdc__stop_collection(f, k, why);
        return true;
    case MG_CDC_DROP_TRUNCATE:
        mg_buf_init(&sql, 4096);
        ok = mg_buf_append_str(&sql, "TRUNCATE ", error) &&
             mg_schema_quote_ident(c->schema, &sql, error) && mg_buf_append_str(&sql, ".", error) &&
             mg_schema_quote_ident(c->table, &sql, error) && mg_pg_exec(f->pg, sql.data, error);
        mg_buf_cleanup(&sql);
        if (!ok)
            return false;
        MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.drop",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll)),
                     "collection %s.%s dropped on the source: table emptied, still followed", c->db,
                     c->coll);
        return true;
    case MG_CDC_DROP_KEEP:
        MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.drop",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll)),
                     "collection %s.%s dropped on the source: table kept as it was, still "
                     "followed",
                     c->db, c->coll);
        return true;
    }
    return true;
}

/* on_ddl_event applies the documented policy for drop/rename/dropDatabase. */
bool
mg_cdc__on_ddl_event(follow_t *f, const mg_cdc_event_t *ev, mg_error_t *error)
{
    char why[1024];
    bool followed = false;
    int kt = ev->op == MG_CDC_OP_RENAME ? mg_cdc__find_table(f, ev->to_db, ev->to_coll) : -1;

    for (size_t k = 0; k < f->ncolls; k++) {
        follow_coll_t *c = &f->colls[k];
        bool hit = strcmp(c->db, ev->db) == 0 &&
                   (ev->op == MG_CDC_OP_DROP_DATABASE || strcmp(c->coll, ev->coll) == 0);
        if (!hit || !mg_cdc__active(c))
            continue;
        if (ev->op == MG_CDC_OP_RENAME && f->s->on_rename == MG_CDC_RENAME_FOLLOW) {
            if (!follow_rename(f, k, ev, error))
                return false;
            followed = true;
        } else if (ev->op == MG_CDC_OP_RENAME) {
            snprintf(why, sizeof(why),
                     "renamed to %s.%s on the source; the table \"%s\".\"%s\" is kept as it "
                     "was. Re-run with --on-rename follow to follow renames, or re-sync: "
                     "migrate sync --resync %s.%s",
                     ev->to_db, ev->to_coll, c->schema, c->table, c->db, c->coll);
            mg_cdc__stop_collection(f, k, why);
        } else if (!on_drop(f, k, error)) {
            return false;
        }
    }
    if (kt >= 0 && !(strcmp(ev->db, ev->to_db) == 0 && strcmp(ev->coll, ev->to_coll) == 0))
        replaced(f, kt, ev, followed);
    return true;
}
