/*
 * cdc/src/cdc_reverse_map.c - rows of the logical replication stream back
 * to MongoDB operations: the relations the stream announced, each row's
 * `doc` read back to BSON with the schema's reverse mapping
 * (mg_schema_json_parse, lossless for what the renderer wrote), checked
 * against the row's key, and deletes by the _id the key (or the logged old
 * row) gives back. A row with no BSON form is an error naming its table
 * and key: nothing is skipped here.
 */
#include "cdc_reverse_internal.h"

#include <stdlib.h>
#include <string.h>

/* MongoDB's largest document (BSONObjMaxUserSize). */
#define MONGO_MAX_DOC (16 * 1024 * 1024)

/* Keys in messages are cut to this many bytes. */
#define KEY_SHOWN 200

void
mg_cdc__rev_ops_cleanup(mg_cdc__rev_ops_t *ops)
{
    mg_cdc__rev_ops_drop_front(ops, ops->n);
    free(ops->ops);
    memset(ops, 0, sizeof(*ops));
}

static void
op_free(mg_cdc__rev_op_t *op)
{
    if (op->doc != NULL)
        bson_destroy(op->doc);
    if (op->id != NULL)
        bson_destroy(op->id);
    free(op->doc_id);
}

void
mg_cdc__rev_ops_drop_front(mg_cdc__rev_ops_t *ops, size_t k)
{
    if (k > ops->n)
        k = ops->n;
    for (size_t i = 0; i < k; i++) {
        ops->bytes -= ops->ops[i].bytes;
        op_free(&ops->ops[i]);
    }
    if (ops->n > k) /* never with an empty list, whose array may be NULL */
        memmove(ops->ops, ops->ops + k, (ops->n - k) * sizeof(*ops->ops));
    ops->n -= k;
}

/* truncate_to frees the operations past n (a message that failed half way). */
static void
truncate_to(mg_cdc__rev_ops_t *ops, size_t n)
{
    while (ops->n > n) {
        ops->n--;
        ops->bytes -= ops->ops[ops->n].bytes;
        op_free(&ops->ops[ops->n]);
    }
}

/* push appends op (taking what it owns, freeing it on failure). */
static bool
push(mg_cdc__rev_ops_t *ops, mg_cdc__rev_op_t *op, mg_error_t *error)
{
    if (ops->n == ops->cap) {
        size_t cap = ops->cap ? ops->cap * 2 : 64;
        mg_cdc__rev_op_t *grown = realloc(ops->ops, cap * sizeof(*grown));
        if (grown == NULL) {
            op_free(op);
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        }
        ops->ops = grown;
        ops->cap = cap;
    }
    ops->ops[ops->n++] = *op;
    ops->bytes += op->bytes;
    return true;
}

static bool
row_error(mg_error_t *error, const mg_cdc_table_t *t, const char *key, size_t key_len,
          const char *what, const char *why)
{
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                        "could not map the %s of the row of table \"%s\".\"%s\" with key "
                        "\"%.*s%s\" back to MongoDB (%s.%s): %s",
                        what, t->schema, t->table, (int)(key_len > KEY_SHOWN ? KEY_SHOWN : key_len),
                        key, key_len > KEY_SHOWN ? "..." : "", t->db, t->coll, why);
}

/* id_doc makes {"_id": <the value it points at>}. */
static bson_t *
id_doc(const bson_iter_t *it)
{
    bson_t *id = bson_new();

    bson_append_iter(id, "_id", 3, it);
    return id;
}

/* dollar_top tells whether doc has a top-level key starting with '$'. */
static bool
dollar_top(const bson_t *doc)
{
    bson_iter_t it;

    if (!bson_iter_init(&it, doc))
        return false;
    while (bson_iter_next(&it))
        if (bson_iter_key(&it)[0] == '$')
            return true;
    return false;
}

/* check_key verifies that the _id it points at gives key (the row's key column). */
static bool
check_key(const mg_cdc_table_t *t, const bson_iter_t *it, const char *key, size_t key_len,
          mg_error_t *error)
{
    mg_buf_t enc;
    mg_error_t e;
    bool ok;
    char why[MG_ERROR_MESSAGE_SIZE];

    mg_buf_init(&enc, 64 * 1024);
    ok = mg_schema_key_encode(it, t->key, MG_SCHEMA_FIDELITY_RELAXED, false, &enc, &e);
    if (!ok)
        snprintf(why, sizeof(why), "its doc's _id does not fit the key: %s", e.message);
    else if (enc.len != key_len || memcmp(enc.data, key, key_len) != 0) {
        snprintf(why, sizeof(why), "its doc's _id gives the key \"%.*s%s\", not the row's",
                 (int)(enc.len > KEY_SHOWN ? KEY_SHOWN : enc.len), enc.data,
                 enc.len > KEY_SHOWN ? "..." : "");
        ok = false;
    }
    mg_buf_cleanup(&enc);
    return ok || row_error(error, t, key, key_len, "document", why);
}

bool
mg_cdc__rev_doc_op(const mg_cdc_table_t *tables, size_t table, const char *key, size_t key_len,
                   const char *json, size_t len, mg_cdc__rev_ops_t *out, mg_error_t *error)
{
    const mg_cdc_table_t *t = &tables[table];
    mg_cdc__rev_op_t op = {.kind = MG_CDC__REV_UPSERT, .table = table};
    bson_iter_t it;
    mg_error_t e;
    char why[64];

    op.doc = mg_schema_json_parse(json, len, &e);
    if (op.doc == NULL)
        return row_error(error, t, key, key_len, "document", e.message);
    if (op.doc->len > MONGO_MAX_DOC) {
        snprintf(why, sizeof(why), "its BSON is %u bytes, over MongoDB's 16 MB", op.doc->len);
        bson_destroy(op.doc);
        return row_error(error, t, key, key_len, "document", why);
    }
    if (!bson_iter_init_find(&it, op.doc, "_id")) {
        bson_destroy(op.doc);
        return row_error(error, t, key, key_len, "document", "its doc has no _id");
    }
    if (!check_key(t, &it, key, key_len, error)) {
        bson_destroy(op.doc);
        return false;
    }
    op.id = id_doc(&it);
    op.doc_id = strndup(key, key_len);
    op.dollar_top = dollar_top(op.doc);
    op.bytes = op.doc->len;
    if (op.doc_id == NULL) {
        op_free(&op);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    return push(out, &op, error);
}

bool
mg_cdc__rev_delete_op(const mg_cdc_table_t *tables, size_t table, const char *key, size_t key_len,
                      mg_cdc__rev_ops_t *out, mg_error_t *error)
{
    const mg_cdc_table_t *t = &tables[table];
    mg_cdc__rev_op_t op = {.kind = MG_CDC__REV_DELETE, .table = table};
    mg_error_t e;

    op.id = bson_new();
    if (!mg_schema_key_append_id(t->key, key, key_len, op.id, "_id", 3, &e)) {
        bson_destroy(op.id);
        return row_error(error, t, key, key_len, "delete",
                         e.code == MG_ERROR_CODE_NOT_FOUND
                             ? "a digest key does not give its _id back, and the stream did not "
                               "log the old row (the table's REPLICA IDENTITY is not FULL)"
                             : e.message);
    }
    op.doc_id = strndup(key, key_len);
    op.bytes = op.id->len;
    if (op.doc_id == NULL) {
        op_free(&op);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    return push(out, &op, error);
}

/* delete_from_old deletes by the old row: its doc's _id when logged (FULL), else its key. */
static bool
delete_from_old(const mg_cdc_table_t *tables, size_t table, const mg_cdc__rev_rel_t *rel,
                const mg_pgo_tuple_t *old, mg_cdc__rev_ops_t *out, mg_error_t *error)
{
    const mg_pgo_value_t *k = &old->cols[rel->id_col];
    const mg_pgo_value_t *d = rel->doc_col < old->ncols ? &old->cols[rel->doc_col] : NULL;
    mg_cdc__rev_op_t op = {.kind = MG_CDC__REV_DELETE, .table = table};
    bson_t *doc;
    bson_iter_t it;
    mg_error_t e;

    if (d == NULL || d->kind != 't')
        return mg_cdc__rev_delete_op(tables, table, k->data, k->len, out, error);
    doc = mg_schema_json_parse(d->data, d->len, &e);
    if (doc == NULL)
        return row_error(error, &tables[table], k->data, k->len, "delete", e.message);
    if (!bson_iter_init_find(&it, doc, "_id")) {
        bson_destroy(doc);
        return row_error(error, &tables[table], k->data, k->len, "delete",
                         "its old doc has no _id");
    }
    op.id = id_doc(&it);
    bson_destroy(doc);
    op.doc_id = strndup(k->data, k->len);
    op.bytes = op.id->len;
    if (op.doc_id == NULL) {
        op_free(&op);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    return push(out, &op, error);
}

/* ---- relations ---- */

void
mg_cdc__rev_rels_cleanup(mg_cdc__rev_rels_t *rels)
{
    for (size_t k = 0; k < rels->n; k++) {
        free(rels->items[k].nspname);
        free(rels->items[k].relname);
    }
    free(rels->items);
    memset(rels, 0, sizeof(*rels));
}

static mg_cdc__rev_rel_t *
rel_find(const mg_cdc__rev_rels_t *rels, uint32_t relid)
{
    for (size_t k = 0; k < rels->n; k++)
        if (rels->items[k].relid == relid)
            return &rels->items[k];
    return NULL;
}

bool
mg_cdc__rev_relation(mg_cdc__rev_rels_t *rels, const mg_cdc_table_t *tables, size_t n,
                     const mg_pgo_msg_t *m, mg_error_t *error)
{
    mg_cdc__rev_rel_t *r = rel_find(rels, m->relid);

    if (r == NULL) {
        if (rels->n == rels->cap) {
            size_t cap = rels->cap ? rels->cap * 2 : 16;
            mg_cdc__rev_rel_t *grown = realloc(rels->items, cap * sizeof(*grown));
            if (grown == NULL)
                return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                    "out of memory");
            rels->items = grown;
            rels->cap = cap;
        }
        r = &rels->items[rels->n++];
        memset(r, 0, sizeof(*r));
    }
    free(r->nspname);
    free(r->relname);
    r->relid = m->relid;
    r->nspname = strdup(m->nspname);
    r->relname = strdup(m->relname);
    if (r->nspname == NULL || r->relname == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    r->id_col = r->doc_col = -1;
    for (int c = 0; c < m->ncols; c++) {
        if (strcmp(m->columns[c].name, "_id") == 0)
            r->id_col = c;
        else if (strcmp(m->columns[c].name, "doc") == 0)
            r->doc_col = c;
    }
    r->table = -1;
    for (size_t k = 0; k < n; k++)
        if (strcmp(tables[k].schema, m->nspname) == 0 && strcmp(tables[k].table, m->relname) == 0)
            r->table = (long)k;
    return true;
}

/* usable returns the relation of relid if it is a migrated table with both columns. */
static const mg_cdc__rev_rel_t *
usable(const mg_cdc__rev_rels_t *rels, uint32_t relid, mg_error_t *error)
{
    const mg_cdc__rev_rel_t *r = rel_find(rels, relid);

    if (r == NULL)
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "could not map a change of relation %u: the stream sent no Relation message "
                     "for it",
                     relid);
    else if (r->table < 0)
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "could not map a change of table \"%s\".\"%s\": it is in the reverse "
                     "publication but is not a migrated table",
                     r->nspname, r->relname);
    else if (r->id_col < 0 || r->doc_col < 0)
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "could not map a change of table \"%s\".\"%s\": it has no \"%s\" column",
                     r->nspname, r->relname, r->id_col < 0 ? "_id" : "doc");
    else
        return r;
    return NULL;
}

/* key_of returns the key value of a tuple, or fails naming the table. */
static const mg_pgo_value_t *
key_of(const mg_cdc_table_t *t, const mg_cdc__rev_rel_t *r, const mg_pgo_tuple_t *tuple,
       mg_error_t *error)
{
    const mg_pgo_value_t *k = r->id_col < tuple->ncols ? &tuple->cols[r->id_col] : NULL;

    if (k == NULL || k->kind != 't') {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "could not map a change of table \"%s\".\"%s\": the row's _id was not sent "
                     "as text",
                     t->schema, t->table);
        return NULL;
    }
    return k;
}

/* new_row maps the new row of an insert or update to its upsert. */
static bool
new_row(const mg_cdc_table_t *tables, size_t table, const mg_cdc__rev_rel_t *r,
        const mg_pgo_tuple_t *tuple, mg_cdc__rev_lookup_fn lookup, void *ctx,
        mg_cdc__rev_ops_t *out, mg_error_t *error)
{
    const mg_cdc_table_t *t = &tables[table];
    const mg_pgo_value_t *k = key_of(t, r, tuple, error);
    const mg_pgo_value_t *d = r->doc_col < tuple->ncols ? &tuple->cols[r->doc_col] : NULL;
    mg_buf_t doc;
    bool found = false, ok;

    if (k == NULL)
        return false;
    if (d != NULL && d->kind == 't')
        return mg_cdc__rev_doc_op(tables, table, k->data, k->len, d->data, d->len, out, error);
    if (d == NULL || d->kind != 'u' || lookup == NULL)
        return row_error(error, t, k->data, k->len, "document",
                         d != NULL && d->kind == 'n' ? "its doc is NULL"
                                                     : "its doc was not sent as text");
    /* an update that left the TOASTed doc as it was: read it; gone means a delete follows */
    mg_buf_init(&doc, 1u << 30);
    ok = lookup(ctx, t, k->data, k->len, &doc, &found, error);
    if (ok && found)
        ok = mg_cdc__rev_doc_op(tables, table, k->data, k->len, doc.data, doc.len, out, error);
    mg_buf_cleanup(&doc);
    return ok;
}

static bool
map_truncate(const mg_cdc__rev_rels_t *rels, const mg_pgo_msg_t *m, mg_cdc__rev_ops_t *out,
             mg_error_t *error)
{
    for (uint32_t k = 0; k < m->nrelids; k++) {
        const mg_cdc__rev_rel_t *r = usable(rels, mg_pgo_truncate_relid(m, k), error);
        mg_cdc__rev_op_t op = {.kind = MG_CDC__REV_TRUNCATE};

        if (r == NULL)
            return false;
        op.table = (size_t)r->table;
        if (!push(out, &op, error))
            return false;
    }
    return true;
}

/* map_one maps one change; the caller undoes a partial append on failure. */
static bool
map_one(const mg_cdc__rev_rels_t *rels, const mg_cdc_table_t *tables, const mg_pgo_msg_t *m,
        mg_cdc__rev_lookup_fn lookup, void *ctx, mg_cdc__rev_ops_t *out, mg_error_t *error)
{
    const mg_cdc__rev_rel_t *r;
    const mg_pgo_value_t *k, *ok_;
    size_t table;

    if (m->kind == MG_PGO_TRUNCATE)
        return map_truncate(rels, m, out, error);
    if ((r = usable(rels, m->relid, error)) == NULL)
        return false;
    table = (size_t)r->table;
    if (m->kind == MG_PGO_INSERT)
        return new_row(tables, table, r, &m->new_tuple, lookup, ctx, out, error);
    if (m->kind == MG_PGO_DELETE)
        return key_of(&tables[table], r, &m->old_tuple, error) != NULL &&
               delete_from_old(tables, table, r, &m->old_tuple, out, error);
    /* update: a changed key (K or O tuple with another key) deletes the old _id first */
    if ((k = key_of(&tables[table], r, &m->new_tuple, error)) == NULL)
        return false;
    if (m->old_kind != 0) {
        if ((ok_ = key_of(&tables[table], r, &m->old_tuple, error)) == NULL)
            return false;
        if ((ok_->len != k->len || memcmp(ok_->data, k->data, k->len) != 0) &&
            !delete_from_old(tables, table, r, &m->old_tuple, out, error))
            return false;
    }
    return new_row(tables, table, r, &m->new_tuple, lookup, ctx, out, error);
}

bool
mg_cdc__rev_map(const mg_cdc__rev_rels_t *rels, const mg_cdc_table_t *tables, size_t ntables,
                const mg_pgo_msg_t *m, mg_cdc__rev_lookup_fn lookup, void *ctx,
                mg_cdc__rev_ops_t *out, mg_error_t *error)
{
    size_t before = out->n;

    (void)ntables;
    if (m->kind != MG_PGO_INSERT && m->kind != MG_PGO_UPDATE && m->kind != MG_PGO_DELETE &&
        m->kind != MG_PGO_TRUNCATE)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not map a %s message: not a change", mg_pgo_kind_name(m->kind));
    if (map_one(rels, tables, m, lookup, ctx, out, error))
        return true;
    truncate_to(out, before);
    return false;
}
