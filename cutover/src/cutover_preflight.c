/*
 * cutover/src/cutover_preflight.c - the cutover's preflight: everything
 * that must hold before the source is frozen, each refusal naming what is
 * wrong and the way out (docs/cutover.md). Nothing is frozen or flipped
 * here.
 *
 *   the change stream applied, its lag under --max-lag
 *   no collection failed, none not fully copied (planned, copying, an
 *     interrupted --resync, a partition not done)
 *   no planned index left unbuilt (failed or pending)
 *   no invalid document unless --allow-invalid names its collection
 *   no source collection in scope missing from the plan
 *   a clean validation within --validation-age, and every collection
 *     covered by a clean full validation since its copy finished
 *   write-block: the privilege to freeze, and no user that may bypass the
 *     block unless --allow-bypass-users names it
 *   the way back (unless --no-fallback): the target's wal_level = logical,
 *     for the replication slot the flip makes (cutover_capture.c)
 */
#include "cutover_internal.h"
#include "mg/cdc.h"
#include "mg/validate.h"

#include <fnmatch.h>
#include <mongoc/mongoc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define LISTED 8 /* names listed in a refusal */

static bool refuse(cutover_t *c, mg_error_t *error, const char *fmt, ...) MG_PRINTF(3, 4);

/* refuse fills error with "refused: ..." (domain state) and returns false. */
static bool
refuse(cutover_t *c, mg_error_t *error, const char *fmt, ...)
{
    char reason[MG_ERROR_MESSAGE_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    c->refused = true;
    return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED, "refused: %s", reason);
}

/* rows_list writes "a (b), c (d) and N more" of rows into out. */
static const char *
rows_list(const mg_state_rows_t *rows, bool with_b, char *out, size_t outsz)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t k = 0; k < rows->n && n + 1 < outsz; k++) {
        const mg_state_row_t *r = &rows->items[k];
        n += (size_t)snprintf(out + n, outsz - n, "%s%s%s%s%s", k > 0 ? ", " : "", r->a,
                              with_b ? " (" : "", with_b ? r->b : "", with_b ? ")" : "");
        if (n >= outsz)
            n = outsz - 1;
    }
    if (rows->total > (int64_t)rows->n && n + 1 < outsz)
        snprintf(out + n, outsz - n, " and %lld more", (long long)(rows->total - (int64_t)rows->n));
    return out;
}

/* ---- privileges: a privilege list grants an action on the cluster ---- */

/*
 * grants tells whether privs (an array of {resource, actions}) holds
 * action, or anyAction, on the cluster resource or on anyResource.
 */
static bool
grants(const bson_iter_t *privs_array, const char *action)
{
    bson_iter_t privs = *privs_array, p, f, a;

    while (bson_iter_next(&privs)) {
        bool cluster = false, has = false;
        if (!BSON_ITER_HOLDS_DOCUMENT(&privs) || !bson_iter_recurse(&privs, &p))
            continue;
        while (bson_iter_next(&p)) {
            if (strcmp(bson_iter_key(&p), "resource") == 0 && BSON_ITER_HOLDS_DOCUMENT(&p) &&
                bson_iter_recurse(&p, &f)) {
                while (bson_iter_next(&f))
                    if ((strcmp(bson_iter_key(&f), "cluster") == 0 ||
                         strcmp(bson_iter_key(&f), "anyResource") == 0) &&
                        bson_iter_as_bool(&f))
                        cluster = true;
            } else if (strcmp(bson_iter_key(&p), "actions") == 0 && BSON_ITER_HOLDS_ARRAY(&p) &&
                       bson_iter_recurse(&p, &a)) {
                while (bson_iter_next(&a))
                    if (BSON_ITER_HOLDS_UTF8(&a) &&
                        (strcmp(bson_iter_utf8(&a, NULL), action) == 0 ||
                         strcmp(bson_iter_utf8(&a, NULL), "anyAction") == 0))
                        has = true;
            }
        }
        if (cluster && has)
            return true;
    }
    return false;
}

/* array_at points *out at the array field key of doc; false when there is none. */
static bool
array_at(const bson_t *doc, const char *key, bson_iter_t *out)
{
    bson_iter_t it;

    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_ARRAY(&it) &&
           bson_iter_recurse(&it, out);
}

/*
 * check_privilege tells whether the source user may run setUserWriteBlockMode:
 * connectionStatus with showPrivileges. No authenticated user (no auth) or a
 * server that does not list privileges counts as allowed.
 */
static bool
check_privilege(cutover_t *c, bool *allowed, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply, auth;
    bson_iter_t it, users, privs;
    bool ok;

    *allowed = true;
    BSON_APPEND_INT32(&cmd, "connectionStatus", 1);
    BSON_APPEND_BOOL(&cmd, "showPrivileges", true);
    ok = mg_mongo_command(c->s->src, "admin", &cmd, &reply, error);
    if (ok && bson_iter_init_find(&it, &reply, "authInfo") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&auth, data, len) && array_at(&auth, "authenticatedUsers", &users) &&
            bson_iter_next(&users) && array_at(&auth, "authenticatedUserPrivileges", &privs))
            *allowed = grants(&privs, "setUserWriteBlockMode");
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/* ---- users that may bypass the write block ---- */

/* allowed_user tells whether --allow-bypass-users names user@db (or "*"). */
static bool
allowed_user(const mg_strlist_t *allow, const char *name)
{
    for (size_t i = 0; allow != NULL && i < allow->count; i++)
        if (strcmp(allow->items[i], "*") == 0 || strcmp(allow->items[i], name) == 0)
            return true;
    return false;
}

/* user_bypasses asks usersInfo {user, db} with showPrivileges whether the user bypasses. */
static bool
user_bypasses(cutover_t *c, const char *user, const char *db, bool *bypass, mg_error_t *error)
{
    bson_t *cmd = BCON_NEW("usersInfo", "{", "user", BCON_UTF8(user), "db", BCON_UTF8(db), "}",
                           "showPrivileges", BCON_BOOL(true));
    bson_t reply, u;
    bson_iter_t users, privs;
    bool ok = mg_mongo_command(c->s->src, db, cmd, &reply, error);

    *bypass = false;
    if (ok && array_at(&reply, "users", &users)) {
        while (bson_iter_next(&users)) {
            const uint8_t *data;
            uint32_t len;
            if (!BSON_ITER_HOLDS_DOCUMENT(&users))
                continue;
            bson_iter_document(&users, &len, &data);
            if (bson_init_static(&u, data, len) && array_at(&u, "inheritedPrivileges", &privs) &&
                grants(&privs, "bypassWriteBlockingMode"))
                *bypass = true;
        }
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok;
}

/*
 * bypass_users lists into out ("user@db, ...") the source users whose roles
 * (built-in restore or root, or a custom role) grant
 * bypassWriteBlockingMode and that --allow-bypass-users does not name;
 * *count gets how many. usersInfo lists every user (forAllDBs, which may
 * not show privileges), then each user's privileges are asked for.
 */
static bool
bypass_users(cutover_t *c, char *out, size_t outsz, int *count, mg_error_t *error)
{
    bson_t *cmd = BCON_NEW("usersInfo", "{", "forAllDBs", BCON_BOOL(true), "}");
    bson_t reply;
    bson_iter_t users, f;
    bool ok = mg_mongo_command(c->s->src, "admin", cmd, &reply, error);
    size_t n = 0;

    *count = 0;
    out[0] = '\0';
    if (ok && array_at(&reply, "users", &users)) {
        while (ok && bson_iter_next(&users)) {
            const char *user = NULL, *db = NULL;
            char name[512];
            bool bypass;
            if (!BSON_ITER_HOLDS_DOCUMENT(&users) || !bson_iter_recurse(&users, &f))
                continue;
            while (bson_iter_next(&f)) {
                if (strcmp(bson_iter_key(&f), "user") == 0 && BSON_ITER_HOLDS_UTF8(&f))
                    user = bson_iter_utf8(&f, NULL);
                else if (strcmp(bson_iter_key(&f), "db") == 0 && BSON_ITER_HOLDS_UTF8(&f))
                    db = bson_iter_utf8(&f, NULL);
            }
            if (user == NULL || db == NULL)
                continue;
            snprintf(name, sizeof(name), "%s@%s", user, db);
            if (allowed_user(c->s->allow_bypass_users, name) ||
                !(ok = user_bypasses(c, user, db, &bypass, error)) || !bypass)
                continue;
            if (++*count <= LISTED && n + 1 < outsz) {
                n += (size_t)snprintf(out + n, outsz - n, "%s%s", n > 0 ? ", " : "", name);
                n = n >= outsz ? outsz - 1 : n;
            }
        }
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok;
}

/* check_write_block checks, for --freeze write-block, the privilege and the bypassing users. */
static bool
check_write_block(cutover_t *c, mg_error_t *error)
{
    char names[1024];
    bool allowed;
    int n;

    if (!check_privilege(c, &allowed, error))
        return false;
    if (!allowed)
        return refuse(c, error,
                      "the source user lacks the setUserWriteBlockMode privilege on the "
                      "cluster resource: grant it, or freeze the application yourself with "
                      "--freeze hook:CMD (or --freeze none)");
    if (allowed_user(c->s->allow_bypass_users, "*"))
        return true;
    if (!bypass_users(c, names, sizeof(names), &n, error)) {
        mg_error_prefix(error, "could not list the source's users that may bypass the write block "
                               "(grant the cutover's user viewUser on every database, e.g. "
                               "userAdminAnyDatabase, or accept them unseen with "
                               "--allow-bypass-users '*')");
        return false;
    }
    if (n > 0)
        return refuse(c, error,
                      "%d source user(s) may write through the freeze (bypassWriteBlockingMode, "
                      "e.g. the restore or root role): %s%s; writes they make after the fence "
                      "never reach PostgreSQL. Make sure no application connects as them and "
                      "name them with --allow-bypass-users USER@DB",
                      n, names, n > LISTED ? " and more" : "");
    return true;
}

/* ---- the plan: copied, indexed, valid, complete ---- */

/* check_copied refuses a failed collection, or one not fully copied. */
static bool
check_copied(cutover_t *c, mg_error_t *error)
{
    char ns[600], why[MG_ERROR_MESSAGE_SIZE], names[1024];
    mg_state_rows_t rows;
    bool found, ok;

    if (!mg_state_collection_first_failed(c->st, &found, ns, sizeof(ns), why, sizeof(why), error))
        return false;
    if (found)
        return refuse(c, error, "collection %s is in error (%s): fix it and sync it again first",
                      ns, why);
    if (!mg_state_collections_incomplete(c->st, LISTED, &rows, error))
        return false;
    ok = rows.n == 0 || refuse(c, error,
                               "%lld collection(s) are not fully copied: %s; its rows are "
                               "missing in PostgreSQL: let migrate sync finish the copy first",
                               (long long)rows.total, rows_list(&rows, true, names, sizeof(names)));
    mg_state_rows_cleanup(&rows);
    if (!ok || !mg_state_indexes_unbuilt(c->st, LISTED, &rows, error))
        return false;
    ok = rows.n == 0 || refuse(c, error,
                               "%lld planned index(es) are not built: %s: run migrate sync "
                               "to build them (a unique index missing lets the application "
                               "write duplicates)",
                               (long long)rows.total, rows_list(&rows, true, names, sizeof(names)));
    mg_state_rows_cleanup(&rows);
    return ok;
}

/* check_invalid refuses invalid documents of collections --allow-invalid does not name. */
static bool
check_invalid(cutover_t *c, mg_error_t *error)
{
    const mg_strlist_t *allow = c->s->allow_invalid;
    mg_state_rows_t rows, left = {0};
    char names[1024];
    bool ok;

    if (!mg_state_invalid_namespaces(c->st, &rows, error))
        return false;
    left.items = rows.items; /* the ones not named, moved to the front */
    for (size_t k = 0; k < rows.n; k++) {
        bool named = false;
        for (size_t i = 0; allow != NULL && i < allow->count && !named; i++)
            named = fnmatch(allow->items[i], rows.items[k].a, 0) == 0;
        if (!named) {
            mg_state_row_t t = rows.items[left.n];
            rows.items[left.n++] = rows.items[k];
            rows.items[k] = t;
        }
    }
    left.total = (int64_t)left.n;
    ok = left.n == 0 ||
         refuse(c, error,
                "%zu collection(s) have documents skipped as invalid (_migrate.invalid_docs): %s; "
                "they are not in PostgreSQL: fix and re-sync them, or accept their loss with "
                "--allow-invalid DB.COLL",
                left.n, rows_list(&left, true, names, sizeof(names)));
    mg_state_rows_cleanup(&rows);
    return ok;
}

/* check_scope refuses while a source collection in scope is missing from the plan. */
static bool
check_scope(cutover_t *c, mg_error_t *error)
{
    mg_strlist_t missing;
    char names[1024];
    bool known, ok;

    if (!mg_validate_scope_unmigrated(c->s->src->client, c->st, NULL, &missing, &known, error))
        return false;
    if (!known)
        MG_LOG(MG_LOG_WARNING, "cutover",
               "the state schema does not record the migration's include and exclude patterns "
               "(an older migrate init): source collections created after init cannot be found");
    ok = !mg_validate_scope_describe(&missing, names, sizeof(names)) ||
         refuse(c, error,
                "%zu source collection(s) in the migration's scope are not migrated: %s (created "
                "after init?); their documents would stay behind: let migrate sync --follow take "
                "them in, or exclude them",
                missing.count, names);
    mg_validate_strlist_cleanup(&missing);
    return ok;
}

/* check_validated refuses without a recent clean run, or a collection no full run covered. */
static bool
check_validated(cutover_t *c, mg_error_t *error)
{
    mg_state_rows_t rows;
    char names[1024];
    bool found, ok;

    if (c->s->validation_age_ms <= 0) {
        MG_LOG_EVENT(MG_LOG_WARNING, "cutover", "cutover.validation_skipped", NULL, 0,
                     "--validation-age 0: no validation is required before this cutover");
        return true;
    }
    if (!mg_state_validation_recent_clean(c->st, c->s->validation_age_ms, &found, error))
        return false;
    if (!found)
        return refuse(c, error,
                      "no clean validation run finished within --validation-age: run migrate "
                      "validate first");
    if (!mg_state_collections_unvalidated(c->st, LISTED, &rows, error))
        return false;
    ok = rows.n == 0 ||
         refuse(c, error,
                "%lld collection(s) were not covered by a clean full validation since their "
                "copy finished: %s; a --changed run checks only what changed: run migrate "
                "validate --full first",
                (long long)rows.total, rows_list(&rows, false, names, sizeof(names)));
    mg_state_rows_cleanup(&rows);
    return ok;
}

/* check_wal_level refuses (unless --no-fallback) a target that cannot keep the way back. */
static bool
check_wal_level(cutover_t *c, mg_error_t *error)
{
    char level[32];

    if (c->s->no_fallback)
        return true;
    if (!mg_cutover__wal_level(c, level, sizeof(level), error))
        return false;
    if (strcmp(level, "logical") != 0)
        return refuse(c, error,
                      "the target's wal_level is %s: the way back (a logical replication slot "
                      "made at the flip) needs wal_level = logical; set it and restart "
                      "PostgreSQL, or cut over without a way back (--no-fallback)",
                      level);
    return true;
}

bool
mg_cutover__preflight(cutover_t *c, mg_error_t *error)
{
    mg_cdc_lag_t lag;

    /* the lag against the source's latest write, never against a clock (docs/cdc.md) */
    if (!mg_cdc_lag_measure(c->s->src, c->st, c->s->follower_window_ms, &lag, error))
        return false;
    if (!lag.applied)
        return refuse(c, error, "the change stream has never been applied: run migrate sync first");
    c->lag_s = lag.lag_s;
    if (lag.lag_s < 0)
        return refuse(c, error,
                      "the change stream's lag is not known (the checkpoint is behind the "
                      "source's last write and no follower has measured it): run migrate sync "
                      "--follow (or migrate sync) first");
    if (lag.lag_s * 1000.0 > (double)c->s->max_lag_ms)
        return refuse(c, error,
                      "the change stream's lag is %.1f s, above --max-lag %.3f s: let migrate "
                      "sync --follow catch up (or run migrate sync) first",
                      lag.lag_s, (double)c->s->max_lag_ms / 1000.0);
    return check_copied(c, error) && check_invalid(c, error) && check_scope(c, error) &&
           check_validated(c, error) &&
           (c->freeze != FREEZE_WRITE_BLOCK || check_write_block(c, error)) &&
           check_wal_level(c, error);
}
