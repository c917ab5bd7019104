/*
 * tests/mongosim/msim_authz.c - authorization of commands against the
 * privileges of the connection's user (with --auth), as MongoDB checks
 * them: each command names the actions it needs on a resource (the
 * cluster, a database, a namespace, or "any normal resource" for a
 * deployment-wide change stream); a missing one fails with Unauthorized
 * (13). Also connectionStatus and usersInfo, which show users, roles and
 * privileges.
 */
#include "msim.h"

#include <stdio.h>
#include <string.h>

static bool
unauthorized(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it;
    char *v = NULL;
    bool ok;
    if (bson_iter_init(&it, ctx->cmd) && bson_iter_next(&it))
        v = msim_value_json(&it);
    ok = msim_fail(error, MSIM_E_UNAUTHORIZED, "not authorized on %s to execute command { %s: %s }",
                   ctx->db, ctx->name, v ? v : "?");
    bson_free(v);
    return ok;
}

/* allows: the connection's user has every action of the list on the resource. */
static bool
allows(const msim_ctx_t *ctx, const char *db, const char *coll, const char *actions)
{
    return ctx->conn->user != NULL &&
           msim_privset_allows(&ctx->conn->user->privs, db, coll, actions);
}

static const char *
str_arg(const bson_t *cmd, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, cmd, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

static bool
split_ns(const char *ns, char *db, size_t dbsz, const char **coll)
{
    const char *dot = ns ? strchr(ns, '.') : NULL;
    if (dot == NULL || (size_t)(dot - ns) >= dbsz)
        return false;
    memcpy(db, ns, (size_t)(dot - ns));
    db[dot - ns] = '\0';
    *coll = dot + 1;
    return true;
}

/* any_upsert: some statement of an update command has upsert: true. */
static bool
any_upsert(const bson_t *cmd)
{
    bson_iter_t it, st;
    if (!bson_iter_init_find(&it, cmd, "updates") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &st))
        return false;
    while (bson_iter_next(&st)) {
        bson_iter_t u;
        if (BSON_ITER_HOLDS_DOCUMENT(&st) && bson_iter_recurse(&st, &u) &&
            bson_iter_find(&u, "upsert") && msim_truthy(&u))
            return true;
    }
    return false;
}

/* rename_allowed applies MongoDB's rules for renameCollection. */
static bool
rename_allowed(msim_ctx_t *ctx)
{
    char sdb[128], tdb[128];
    const char *scoll, *tcoll;
    bson_iter_t it;
    bool drop_target = bson_iter_init_find(&it, ctx->cmd, "dropTarget") && msim_truthy(&it);
    if (!split_ns(str_arg(ctx->cmd, "renameCollection"), sdb, sizeof sdb, &scoll) ||
        !split_ns(str_arg(ctx->cmd, "to"), tdb, sizeof tdb, &tcoll))
        return true; /* the command reports the bad namespace itself */
    if (strcmp(sdb, tdb) == 0 && strncmp(scoll, "system.", 7) != 0 &&
        strncmp(tcoll, "system.", 7) != 0) {
        /* within a database: renameCollectionSameDB, and the rename must not
         * expose a source the user cannot read under a name it can */
        bool can_read_src = allows(ctx, sdb, scoll, "find");
        bool can_read_dst = allows(ctx, tdb, tcoll, "find");
        if (allows(ctx, sdb, NULL, "renameCollectionSameDB") &&
            (!drop_target || allows(ctx, tdb, tcoll, "dropCollection")) &&
            (can_read_src || !can_read_dst))
            return true;
    }
    return allows(ctx, sdb, scoll, "find dropCollection") &&
           allows(ctx, tdb, tcoll,
                  drop_target ? "insert createIndex dropCollection" : "insert createIndex");
}

/* aggregate_allowed: $changeStream needs find + changeStream on its scope. */
static bool
aggregate_allowed(msim_ctx_t *ctx, const char *coll)
{
    bson_iter_t it, st, first;
    const char *stage = NULL;
    if (bson_iter_init_find(&it, ctx->cmd, "pipeline") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &st) && bson_iter_next(&st) && BSON_ITER_HOLDS_DOCUMENT(&st) &&
        bson_iter_recurse(&st, &first) && bson_iter_next(&first))
        stage = bson_iter_key(&first);
    if (stage != NULL && strcmp(stage, "$changeStream") == 0) {
        bson_iter_t o;
        bool cluster = false;
        if (BSON_ITER_HOLDS_DOCUMENT(&first) && bson_iter_recurse(&first, &o) &&
            bson_iter_find(&o, "allChangesForCluster"))
            cluster = msim_truthy(&o);
        if (cluster)
            return allows(ctx, "", NULL, "find changeStream");
        return allows(ctx, ctx->db, coll, "find changeStream");
    }
    if (coll == NULL)
        return true; /* aggregate: 1 without $changeStream fails in the command */
    if (stage != NULL && strcmp(stage, "$collStats") == 0)
        return allows(ctx, ctx->db, coll, "collStats");
    return allows(ctx, ctx->db, coll, "find");
}

bool
msim_authz_command(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *n = ctx->name, *db = ctx->db, *coll = NULL;
    bson_iter_t it;
    bool ok = true;

    if (!msim_srv->auth)
        return true;
    if (bson_iter_init_find(&it, ctx->cmd, n) && BSON_ITER_HOLDS_UTF8(&it))
        coll = bson_iter_utf8(&it, NULL);
#define IS(s) (strcmp(n, (s)) == 0)
    if (IS("getParameter") || IS("serverStatus") || IS("replSetGetStatus") ||
        IS("setUserWriteBlockMode") || IS("listShards") || IS("getShardMap"))
        ok = allows(ctx, NULL, NULL, n);
    else if (IS("insert"))
        ok = allows(ctx, db, coll ? coll : "", "insert");
    else if (IS("update"))
        ok = allows(ctx, db, coll ? coll : "", any_upsert(ctx->cmd) ? "update insert" : "update");
    else if (IS("delete"))
        ok = allows(ctx, db, coll ? coll : "", "remove");
    else if (IS("find") || IS("count") || IS("distinct"))
        ok = allows(ctx, db, coll ? coll : "", "find");
    else if (IS("findAndModify") || IS("findandmodify")) {
        bool rm = bson_iter_init_find(&it, ctx->cmd, "remove") && msim_truthy(&it);
        bool up = bson_iter_init_find(&it, ctx->cmd, "upsert") && msim_truthy(&it);
        ok = allows(ctx, db, coll ? coll : "",
                    rm   ? "find remove"
                    : up ? "find update insert"
                         : "find update");
    } else if (IS("aggregate"))
        ok = aggregate_allowed(ctx, coll);
    else if (IS("create"))
        ok = allows(ctx, db, coll ? coll : "", "createCollection");
    else if (IS("collMod"))
        ok = allows(ctx, db, coll ? coll : "", "collMod");
    else if (IS("drop"))
        ok = allows(ctx, db, coll ? coll : "", "dropCollection");
    else if (IS("dropDatabase"))
        ok = allows(ctx, db, NULL, "dropDatabase");
    else if (IS("renameCollection"))
        ok = rename_allowed(ctx);
    else if (IS("createIndexes"))
        ok = allows(ctx, db, coll ? coll : "", "createIndex");
    else if (IS("listIndexes"))
        ok = allows(ctx, db, coll ? coll : "", "listIndexes");
    else if (IS("dropIndexes") || IS("deleteIndexes"))
        ok = allows(ctx, db, coll ? coll : "", "dropIndex");
    else if (IS("collStats"))
        ok = allows(ctx, db, coll ? coll : "", "collStats");
    else if (IS("dbStats"))
        ok = allows(ctx, db, NULL, "dbStats");
    else if (IS("listCollections")) {
        /* authorizedCollections + nameOnly lists what the user can see */
        bool nm = bson_iter_init_find(&it, ctx->cmd, "nameOnly") && msim_truthy(&it);
        bool ac = bson_iter_init_find(&it, ctx->cmd, "authorizedCollections") && msim_truthy(&it);
        ok = (nm && ac) || allows(ctx, db, NULL, "listCollections");
    } else if (IS("enableSharding")) {
        const char *target = coll ? coll : db;
        ok = allows(ctx, target, NULL, "enableSharding");
    } else if (IS("shardCollection") || IS("moveChunk") || IS("splitChunk") || IS("split")) {
        char sdb[128];
        const char *scoll;
        const char *action = IS("shardCollection") ? "enableSharding"
                             : IS("moveChunk")     ? "moveChunk"
                                                   : "splitChunk";
        ok = coll != NULL && split_ns(coll, sdb, sizeof sdb, &scoll) &&
             allows(ctx, sdb, scoll, action);
    } else if (IS("balancerStatus") || IS("balancerStart") || IS("balancerStop"))
        ok = allows(ctx, "config", "settings", IS("balancerStatus") ? "find" : "update");
#undef IS
    return ok || unauthorized(ctx, error);
}

bool
msim_authz_may_list_db(const msim_conn_t *conn, const char *db)
{
    if (!msim_srv->auth)
        return true;
    return conn->user != NULL && msim_privset_any_on(&conn->user->privs, db, NULL);
}

bool
msim_authz_may_see_coll(const msim_conn_t *conn, const char *db, const char *coll)
{
    if (!msim_srv->auth)
        return true;
    return conn->user != NULL && msim_privset_any_on(&conn->user->privs, db, coll);
}

bool
msim_authz_has(const msim_conn_t *conn, const char *db, const char *coll, const char *actions)
{
    if (!msim_srv->auth)
        return true;
    return conn->user != NULL && msim_privset_allows(&conn->user->privs, db, coll, actions);
}

/* ------------------------------------------------------------------------
 * connectionStatus, usersInfo
 * ------------------------------------------------------------------------ */

static void
append_roles(bson_t *doc, const char *key, const msim_user_t *u)
{
    bson_t arr;
    bson_append_array_begin(doc, key, -1, &arr);
    for (size_t i = 0; i < u->nroles; i++) {
        bson_t r;
        char k[16];
        const char *ks;
        bson_uint32_to_string((uint32_t)i, &ks, k, sizeof k);
        bson_append_document_begin(&arr, ks, -1, &r);
        BSON_APPEND_UTF8(&r, "role", u->roles[i].role);
        BSON_APPEND_UTF8(&r, "db", u->roles[i].db);
        bson_append_document_end(&arr, &r);
    }
    bson_append_array_end(doc, &arr);
}

bool
msim_cmd_connection_status(msim_ctx_t *ctx, mg_error_t *error)
{
    const msim_user_t *u = ctx->conn->user;
    bson_t ai, users, priv;
    bson_iter_t it;
    bool show = bson_iter_init_find(&it, ctx->cmd, "showPrivileges") && msim_truthy(&it);

    (void)error;
    bson_append_document_begin(ctx->reply, "authInfo", -1, &ai);
    bson_append_array_begin(&ai, "authenticatedUsers", -1, &users);
    if (u != NULL) {
        bson_t d;
        bson_append_document_begin(&users, "0", -1, &d);
        BSON_APPEND_UTF8(&d, "user", u->name);
        BSON_APPEND_UTF8(&d, "db", u->db);
        bson_append_document_end(&users, &d);
    }
    bson_append_array_end(&ai, &users);
    if (u != NULL) {
        append_roles(&ai, "authenticatedUserRoles", u);
    } else {
        bson_t none;
        bson_append_array_begin(&ai, "authenticatedUserRoles", -1, &none);
        bson_append_array_end(&ai, &none);
    }
    if (show) {
        bson_append_array_begin(&ai, "authenticatedUserPrivileges", -1, &priv);
        if (u != NULL)
            msim_privset_append(&u->privs, &priv);
        bson_append_array_end(&ai, &priv);
    }
    bson_append_document_end(ctx->reply, &ai);
    return true;
}

static void
append_user(bson_t *arr, uint32_t idx, const msim_user_t *u, bool show_privileges)
{
    bson_t d, mechs;
    char k[16], id[256];
    const char *ks;
    bson_uint32_to_string(idx, &ks, k, sizeof k);
    bson_append_document_begin(arr, ks, -1, &d);
    snprintf(id, sizeof id, "%s.%s", u->db, u->name);
    BSON_APPEND_UTF8(&d, "_id", id);
    bson_append_binary(&d, "userId", -1, BSON_SUBTYPE_UUID, u->uuid, 16);
    BSON_APPEND_UTF8(&d, "user", u->name);
    BSON_APPEND_UTF8(&d, "db", u->db);
    append_roles(&d, "roles", u);
    bson_append_array_begin(&d, "mechanisms", -1, &mechs);
    BSON_APPEND_UTF8(&mechs, "0", "SCRAM-SHA-256");
    bson_append_array_end(&d, &mechs);
    if (show_privileges) {
        bson_t p, r;
        append_roles(&d, "inheritedRoles", u);
        bson_append_array_begin(&d, "inheritedPrivileges", -1, &p);
        msim_privset_append(&u->privs, &p);
        bson_append_array_end(&d, &p);
        bson_append_array_begin(&d, "inheritedAuthenticationRestrictions", -1, &r);
        bson_append_array_end(&d, &r);
    }
    bson_append_document_end(arr, &d);
}

/*
 * each_selected calls fn for every (name, db) the usersInfo selection names:
 * "name", {user, db}, or an array of those; fn returns false to stop.
 */
static bool
each_selected(const bson_iter_t *sel, const char *cmd_db,
              bool (*fn)(const char *name, const char *db, void *arg), void *arg)
{
    bson_iter_t items, one;
    bool is_arr = BSON_ITER_HOLDS_ARRAY(sel);
    if (is_arr)
        bson_iter_recurse(sel, &items);
    for (;;) {
        const char *name = NULL, *db = cmd_db;
        if (is_arr) {
            if (!bson_iter_next(&items))
                return true;
            one = items;
        } else {
            one = *sel;
        }
        if (BSON_ITER_HOLDS_UTF8(&one)) {
            name = bson_iter_utf8(&one, NULL);
        } else if (BSON_ITER_HOLDS_DOCUMENT(&one)) {
            bson_iter_t f;
            if (bson_iter_recurse(&one, &f) && bson_iter_find(&f, "user") &&
                BSON_ITER_HOLDS_UTF8(&f))
                name = bson_iter_utf8(&f, NULL);
            if (bson_iter_recurse(&one, &f) && bson_iter_find(&f, "db") && BSON_ITER_HOLDS_UTF8(&f))
                db = bson_iter_utf8(&f, NULL);
        }
        if (name != NULL && !fn(name, db, arg))
            return false;
        if (!is_arr)
            return true;
    }
}

/* may_view: viewUser on the user's database, or the caller asks about itself. */
static bool
may_view(const char *name, const char *db, void *arg)
{
    const msim_ctx_t *ctx = arg;
    const msim_user_t *me = ctx->conn->user;
    if (!msim_srv->auth)
        return true;
    if (me != NULL && strcmp(me->name, name) == 0 && strcmp(me->db, db) == 0)
        return true;
    return allows(ctx, db, NULL, "viewUser");
}

typedef struct {
    const msim_user_t *u;
    bool found;
} match_arg_t;

static bool
matches(const char *name, const char *db, void *arg)
{
    match_arg_t *m = arg;
    if (strcmp(m->u->name, name) == 0 && strcmp(m->u->db, db) == 0)
        m->found = true;
    return !m->found;
}

bool
msim_cmd_users_info(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it, sel;
    bson_t arr;
    uint32_t n = 0;
    bool show = bson_iter_init_find(&sel, ctx->cmd, "showPrivileges") && msim_truthy(&sel);
    bool all_dbs = false, all_in_db = false;

    if (!bson_iter_init_find(&it, ctx->cmd, "usersInfo"))
        return msim_fail(error, MSIM_E_BAD_VALUE, "usersInfo is required");
    if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sel) &&
        bson_iter_find(&sel, "forAllDBs")) {
        all_dbs = msim_truthy(&sel);
        if (msim_srv->auth && !allows(ctx, NULL, NULL, "viewUser"))
            return unauthorized(ctx, error);
    } else if (msim_is_number(bson_iter_type(&it))) {
        all_in_db = true;
        if (msim_srv->auth && !allows(ctx, ctx->db, NULL, "viewUser"))
            return unauthorized(ctx, error);
    } else if (!each_selected(&it, ctx->db, may_view, ctx)) {
        return unauthorized(ctx, error);
    }
    bson_append_array_begin(ctx->reply, "users", -1, &arr);
    for (size_t i = 0; i < msim_srv->nusers; i++) {
        const msim_user_t *u = &msim_srv->users[i];
        bool want = all_dbs || (all_in_db && strcmp(u->db, ctx->db) == 0);
        if (!all_dbs && !all_in_db) {
            match_arg_t m = {u, false};
            each_selected(&it, ctx->db, matches, &m);
            want = m.found;
        }
        if (want)
            append_user(&arr, n++, u, show);
    }
    bson_append_array_end(ctx->reply, &arr);
    return true;
}
