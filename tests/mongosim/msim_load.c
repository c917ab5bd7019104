/*
 * tests/mongosim/msim_load.c - --load: MongoDB Extended JSON files (one
 * document per line as mongoexport writes them, or a JSON array) loaded
 * into db.coll before the server starts listening.
 */
#include "msim.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
store(msim_coll_t *c, const bson_t *src, const char *file, size_t n, mg_error_t *error)
{
    bson_t out = BSON_INITIALIZER;
    bson_iter_t it, id;
    msim_doc_t *doc;
    if (bson_iter_init_find(&id, src, "_id")) {
        msim_append_iter(&out, "_id", 3, &id);
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(&out, "_id", &oid);
    }
    bson_iter_init(&it, src);
    while (bson_iter_next(&it))
        if (strcmp(bson_iter_key(&it), "_id") != 0)
            msim_append_iter(&out, NULL, 0, &it);
    doc = msim_doc_from_bson(&out);
    bson_destroy(&out);
    if (!msim_coll_insert(c, doc, error)) {
        mg_error_prefix(error, "could not load document %zu of \"%s\"", n, file);
        return false;
    }
    return true;
}

static bool
load_one(const char *file, const char *target_ns, mg_error_t *error)
{
    char db[128], coll[256];
    FILE *f;
    int ch;
    size_t n = 0;
    msim_coll_t *c;
    bool ok = true;

    if (target_ns != NULL) {
        const char *dot = strchr(target_ns, '.');
        if (dot == NULL || dot == target_ns || (size_t)(dot - target_ns) >= sizeof db)
            return msim_fail(error, MSIM_E_INVALID_NAMESPACE, "invalid --load-ns \"%s\"",
                             target_ns);
        memcpy(db, target_ns, (size_t)(dot - target_ns));
        db[dot - target_ns] = '\0';
        snprintf(coll, sizeof coll, "%s", dot + 1);
    } else {
        const char *base = strrchr(file, '/');
        char *ext;
        base = base ? base + 1 : file;
        snprintf(db, sizeof db, "test");
        snprintf(coll, sizeof coll, "%s", base);
        ext = strchr(coll, '.');
        if (ext != NULL)
            *ext = '\0';
    }
    if (!msim_valid_coll_name(db, coll, error))
        return false;
    f = fopen(file, "r");
    if (f == NULL)
        return mg_error_set_errno(error, errno, "could not open \"%s\"", file);
    do {
        ch = fgetc(f);
    } while (ch != EOF && isspace(ch));
    c = msim_catalog_ensure(db, coll, NULL);
    if (ch == '[') {
        /* a JSON array: parse the whole file wrapped as {"a": [...]} */
        size_t cap = 1 << 20, len;
        char *buf = malloc(cap);
        bson_t wrap;
        bson_error_t berr;
        bson_iter_t it, el;
        memcpy(buf, "{\"a\":[", 6);
        len = 6;
        for (;;) {
            size_t r;
            if (len + 65536 + 4 > cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                if (buf == NULL)
                    abort();
            }
            r = fread(buf + len, 1, 65536, f);
            if (r == 0)
                break;
            len += r;
        }
        buf[len++] = '}';
        if (!bson_init_from_json(&wrap, buf, (ssize_t)len, &berr)) {
            free(buf);
            fclose(f);
            return mg_error_set_bson(error, &berr, "could not parse \"%s\"", file);
        }
        free(buf);
        bson_iter_init_find(&it, &wrap, "a");
        bson_iter_recurse(&it, &el);
        while (ok && bson_iter_next(&el)) {
            const uint8_t *d;
            uint32_t l;
            bson_t doc;
            n++;
            if (!BSON_ITER_HOLDS_DOCUMENT(&el)) {
                ok = msim_fail(error, MSIM_E_BAD_VALUE, "element %zu of \"%s\" is not a document",
                               n, file);
                break;
            }
            bson_iter_document(&el, &l, &d);
            bson_init_static(&doc, d, l);
            ok = store(c, &doc, file, n, error);
        }
        bson_destroy(&wrap);
        fclose(f);
    } else {
        bson_json_reader_t *reader;
        bson_error_t berr;
        bson_t doc = BSON_INITIALIZER;
        int r;
        fclose(f);
        reader = bson_json_reader_new_from_file(file, &berr);
        if (reader == NULL)
            return mg_error_set_bson(error, &berr, "could not open \"%s\"", file);
        while (ok && (r = bson_json_reader_read(reader, &doc, &berr)) == 1) {
            n++;
            ok = store(c, &doc, file, n, error);
            bson_reinit(&doc);
        }
        if (ok && r < 0)
            ok = mg_error_set_bson(error, &berr, "could not parse document %zu of \"%s\"", n + 1,
                                   file);
        bson_destroy(&doc);
        bson_json_reader_destroy(reader);
    }
    if (ok)
        MG_LOG_EVENT(MG_LOG_INFO, "mongosim", "mongosim.load",
                     MG_LOG_FIELDS(MG_LOG_STR("file", file), MG_LOG_STR("ns", c->ns),
                                   MG_LOG_UINT("documents", n)),
                     "loaded %zu documents from \"%s\" into %s", n, file, c->ns);
    return ok;
}

bool
msim_load_files(const char *list, const char *target_ns, mg_error_t *error)
{
    char *copy = strdup(list), *save = NULL, *tok;
    bool ok = true;
    for (tok = strtok_r(copy, ",", &save); ok && tok != NULL; tok = strtok_r(NULL, ",", &save))
        ok = load_one(tok, target_ns, error);
    free(copy);
    return ok;
}
