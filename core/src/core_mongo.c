/*
 * core/src/core_mongo.c - the MongoDB source through libmongoc: one way to
 * make a client from a URI, connect and check, run commands, stream
 * aggregation results.
 */
#include "mg/core.h"

#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>

struct _mongoc_client_t *
mg_mongo_client_new(const char *uri_text, const char *appname, int32_t server_selection_ms,
                    mg_error_t *error)
{
    bson_error_t be;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_text, &be);
    mongoc_client_t *client;

    if (uri == NULL) {
        mg_error_set_bson(error, &be, "invalid source URI \"%s\"", uri_text);
        return NULL;
    }
    if (server_selection_ms > 0 && !mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       server_selection_ms);
    if (appname != NULL && !mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(uri, appname);
    client = mongoc_client_new_from_uri_with_error(uri, &be);
    mongoc_uri_destroy(uri);
    if (client == NULL) {
        mg_error_set_bson(error, &be, "could not create a client for source \"%s\"", uri_text);
        return NULL;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    return client;
}

void
mg_mongo_close(mg_mongo_t *src)
{
    if (src == NULL)
        return;
    if (src->client != NULL)
        mongoc_client_destroy(src->client);
    src->client = NULL;
    free(src->uri_shown);
    src->uri_shown = NULL;
}

bool
mg_mongo_open(const char *uri_text, const char *appname, mg_mongo_t *src, mg_error_t *error)
{
    bson_error_t be;
    bson_t *cmd = NULL;
    bson_t reply = BSON_INITIALIZER;
    bson_iter_t it;
    bool ok = false;

    memset(src, 0, sizeof(*src));
    src->uri_shown = mg_redact_dup(uri_text);
    src->client = mg_mongo_client_new(uri_text, appname, MG_MONGO_SERVER_SELECTION_MS, error);
    if (src->client == NULL)
        goto done;

    cmd = BCON_NEW("hello", BCON_INT32(1));
    if (!mongoc_client_command_simple(src->client, "admin", cmd, NULL, &reply, &be)) {
        mg_error_set_bson(error, &be, "could not connect to source \"%s\"", uri_text);
        goto done;
    }
    if (bson_iter_init_find(&it, &reply, "setName") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(src->set_name, sizeof(src->set_name), "%s", bson_iter_utf8(&it, NULL));
    if ((bson_iter_init_find(&it, &reply, "isWritablePrimary") ||
         bson_iter_init_find(&it, &reply, "ismaster")) &&
        BSON_ITER_HOLDS_BOOL(&it))
        src->is_primary = bson_iter_bool(&it);
    if (bson_iter_init_find(&it, &reply, "maxWireVersion") && BSON_ITER_HOLDS_NUMBER(&it))
        src->max_wire = (int32_t)bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8(&it))
        src->is_mongos = strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0;
    bson_destroy(&reply);
    bson_destroy(cmd);

    /* buildInfo needs no privilege; it names the server version in the plan. */
    cmd = BCON_NEW("buildInfo", BCON_INT32(1));
    if (!mongoc_client_command_simple(src->client, "admin", cmd, NULL, &reply, &be)) {
        mg_error_set_bson(error, &be, "could not run buildInfo on source \"%s\"", uri_text);
        goto done;
    }
    if (bson_iter_init_find(&it, &reply, "version") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(src->version, sizeof(src->version), "%s", bson_iter_utf8(&it, NULL));
    ok = true;
done:
    bson_destroy(&reply);
    bson_destroy(cmd);
    if (!ok)
        mg_mongo_close(src);
    return ok;
}

bool
mg_mongo_command(mg_mongo_t *src, const char *db, const bson_t *cmd, bson_t *reply,
                 mg_error_t *error)
{
    bson_error_t be;
    char *text;

    if (mongoc_client_command_simple(src->client, db, cmd, NULL, reply, &be))
        return true;
    /* the command's name is its first key */
    bson_iter_t it;
    text = (bson_iter_init(&it, cmd) && bson_iter_next(&it)) ? (char *)bson_iter_key(&it) : "?";
    return mg_error_set_bson(error, &be, "could not run %s on source database \"%s\"", text, db);
}

bool
mg_mongo_aggregate(mg_mongo_t *src, const char *db, const char *coll, const bson_t *pipeline,
                   mg_mongo_doc_fn fn, void *ctx, mg_error_t *error)
{
    mongoc_collection_t *c = mongoc_client_get_collection(src->client, db, coll);
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_error_t be;
    bool ok = true;

    cursor = mongoc_collection_aggregate(c, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    while (ok && mongoc_cursor_next(cursor, &doc))
        ok = fn(ctx, doc, error);
    if (ok && mongoc_cursor_error(cursor, &be))
        ok = mg_error_set_bson(error, &be, "could not aggregate on \"%s.%s\"", db, coll);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(c);
    return ok;
}

/* find_ts reads the Timestamp at dotted path of doc. */
static bool
find_ts(const bson_t *doc, const char *path, uint32_t *t, uint32_t *i)
{
    bson_iter_t it, found;

    if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, path, &found) ||
        !BSON_ITER_HOLDS_TIMESTAMP(&found))
        return false;
    bson_iter_timestamp(&found, t, i);
    return true;
}

bool
mg_mongo_last_write(mongoc_client_t *client, uint32_t *t, uint32_t *i, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t be;
    bool ok;

    BSON_APPEND_INT32(&cmd, "hello", 1);
    ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, &be);
    if (!ok)
        mg_error_set_bson(error, &be, "could not read the source's last write (hello)");
    else if (!find_ts(&reply, "lastWrite.majorityOpTime.ts", t, i) &&
             !find_ts(&reply, "lastWrite.opTime.ts", t, i) &&
             !find_ts(&reply, "operationTime", t, i))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                          "the source's hello names no last write and no operationTime: it is "
                          "not a replica set member or a router");
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

char *
mg_mongo_uri_strip_password(const char *uri, bool *had_password)
{
    const char *auth = strstr(uri, "://"), *end, *at = NULL, *colon;
    mongoc_uri_t *parsed;
    char *out;
    size_t n;

    if (had_password != NULL)
        *had_password = false;
    if (auth == NULL || (parsed = mongoc_uri_new_with_error(uri, NULL)) == NULL)
        return NULL;
    mongoc_uri_destroy(parsed);
    auth += 3;
    /* the userinfo ends at the last '@' before the host list ends ('/' or '?'); the
     * driver's parser demands '@', ':' and '/' in it percent-encoded */
    end = auth + strcspn(auth, "/?");
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL)
        return strdup(uri);
    if (had_password != NULL)
        *had_password = true;
    n = strlen(uri) - (size_t)(at - colon);
    if ((out = malloc(n + 1)) == NULL)
        return NULL;
    memcpy(out, uri, (size_t)(colon - uri));
    strcpy(out + (colon - uri), at);
    return out;
}
