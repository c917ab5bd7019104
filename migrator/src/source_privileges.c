/*
 * migrator/src/source_privileges.c - what the source user must be allowed
 * for the whole migration, checked by `init` before it plans anything
 * (docs/init.md, "Source privileges"): find, listIndexes on every planned
 * collection, listCollections on its database, and for the change stream,
 * which watches the whole deployment, find and changeStream on every
 * database. connectionStatus {showPrivileges: true} lists the user's
 * privileges; resources are matched as mongod matches them.
 */
#include "migrator_internal.h"

#include <string.h>

/* what a privilege check is about: any normal resource, a database, or a namespace */
typedef struct {
    const char *db;   /* NULL: every database (any normal resource) */
    const char *coll; /* NULL: the database itself */
} resource_t;

/* covers tells whether the privilege's resource document p covers r. */
static bool
covers(bson_iter_t *p, const resource_t *r)
{
    const char *rdb = NULL, *rcoll = NULL;

    while (bson_iter_next(p)) {
        const char *k = bson_iter_key(p);
        if (strcmp(k, "anyResource") == 0 && bson_iter_as_bool(p))
            return true;
        if (strcmp(k, "db") == 0 && BSON_ITER_HOLDS_UTF8(p))
            rdb = bson_iter_utf8(p, NULL);
        else if (strcmp(k, "collection") == 0 && BSON_ITER_HOLDS_UTF8(p))
            rcoll = bson_iter_utf8(p, NULL);
    }
    if (rdb == NULL || rcoll == NULL)
        return false; /* the cluster, or a shape this check does not know */
    if (r->db == NULL)
        return rdb[0] == '\0' && rcoll[0] == '\0';
    if (rdb[0] != '\0' && strcmp(rdb, r->db) != 0)
        return false;
    if (r->coll == NULL)
        return rcoll[0] == '\0';
    return rcoll[0] == '\0' || strcmp(rcoll, r->coll) == 0;
}

/* has_action tells whether the actions array a holds action (or anyAction). */
static bool
has_action(bson_iter_t *a, const char *action)
{
    while (bson_iter_next(a))
        if (BSON_ITER_HOLDS_UTF8(a) && (strcmp(bson_iter_utf8(a, NULL), action) == 0 ||
                                        strcmp(bson_iter_utf8(a, NULL), "anyAction") == 0))
            return true;
    return false;
}

/* allows tells whether the privileges array privs grants action on r. */
static bool
allows(const bson_iter_t *privs, const resource_t *r, const char *action)
{
    bson_iter_t it = *privs, p, f;

    while (bson_iter_next(&it)) {
        bool res = false, act = false;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &p))
            continue;
        while (bson_iter_next(&p)) {
            if (strcmp(bson_iter_key(&p), "resource") == 0 && BSON_ITER_HOLDS_DOCUMENT(&p) &&
                bson_iter_recurse(&p, &f))
                res = covers(&f, r);
            else if (strcmp(bson_iter_key(&p), "actions") == 0 && BSON_ITER_HOLDS_ARRAY(&p) &&
                     bson_iter_recurse(&p, &f))
                act = has_action(&f, action);
        }
        if (res && act)
            return true;
    }
    return false;
}

/* need appends "action on what" to missing when privs does not grant it. */
static bool
need(const bson_iter_t *privs, const resource_t *r, const char *action, mg_buf_t *missing,
     mg_error_t *error)
{
    if (allows(privs, r, action))
        return true;
    if (missing->len > 0 && !mg_buf_append_str(missing, "; ", error))
        return false;
    if (r->db == NULL)
        return mg_buf_printf(missing, error,
                             "%s on every database (the change stream watches the whole "
                             "deployment: readAnyDatabase has it)",
                             action);
    if (r->coll == NULL)
        return mg_buf_printf(missing, error, "%s on database \"%s\"", action, r->db);
    return mg_buf_printf(missing, error, "%s on \"%s.%s\"", action, r->db, r->coll);
}

/* user_privileges finds the authenticated users' privileges in reply (false: none listed). */
static bool
user_privileges(const bson_t *reply, bson_iter_t *privs)
{
    bson_iter_t it, users;
    int nusers = 0;

    if (!bson_iter_init_find(&it, reply, "authInfo") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, privs))
        return false;
    if (bson_iter_find(privs, "authenticatedUsers") && BSON_ITER_HOLDS_ARRAY(privs) &&
        bson_iter_recurse(privs, &users))
        while (bson_iter_next(&users))
            nusers++;
    if (nusers == 0 || !bson_iter_recurse(&it, privs))
        return false; /* no authentication: everything is allowed */
    if (!bson_iter_find(privs, "authenticatedUserPrivileges") || !BSON_ITER_HOLDS_ARRAY(privs))
        return false; /* the server does not say */
    bson_iter_t arr = *privs;
    return bson_iter_recurse(&arr, privs);
}

bool
mg_migrator__check_privileges(mg_mongo_t *src, const mg_migrator_ns_t *ns, size_t n,
                              mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t privs;
    mg_buf_t missing;
    bool ok;

    BSON_APPEND_INT32(&cmd, "connectionStatus", 1);
    BSON_APPEND_BOOL(&cmd, "showPrivileges", true);
    ok = mg_mongo_command(src, "admin", &cmd, &reply, error);
    bson_destroy(&cmd);
    if (!ok)
        return false;
    if (!user_privileges(&reply, &privs)) {
        bson_destroy(&reply);
        return true;
    }
    mg_buf_init(&missing, 64 * 1024);
    const resource_t every = {NULL, NULL};
    ok = need(&privs, &every, "find", &missing, error) &&
         need(&privs, &every, "changeStream", &missing, error);
    for (size_t i = 0; ok && i < n; i++) {
        const resource_t db = {ns[i].db, NULL}, coll = {ns[i].db, ns[i].coll};
        bool first_of_db = true;
        for (size_t j = 0; j < i && first_of_db; j++)
            first_of_db = strcmp(ns[j].db, ns[i].db) != 0;
        ok = (!first_of_db || need(&privs, &db, "listCollections", &missing, error)) &&
             need(&privs, &coll, "find", &missing, error) &&
             need(&privs, &coll, "listIndexes", &missing, error);
    }
    if (ok && missing.len > 0)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 13,
                          "the source user lacks privileges the migration needs (init, the "
                          "copy, the change stream, validation): %s",
                          missing.data);
    mg_buf_cleanup(&missing);
    bson_destroy(&reply);
    return ok;
}
