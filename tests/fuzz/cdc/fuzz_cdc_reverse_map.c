/*
 * tests/fuzz/cdc/fuzz_cdc_reverse_map.c - random bytes as a stream of
 * pgoutput messages (each 2-byte big-endian length + message) through the
 * reverse sync's decoder and mapping (cdc_reverse_map.c): Relation
 * messages recorded against three migrated tables (text_objectid, bigint,
 * canonical keys), changes mapped back to MongoDB operations with a lookup
 * for unchanged TOASTed docs. Never crash or leak; a refusal starts with
 * "could not" and appends nothing; every operation names a table, and an
 * upsert carries a document whose _id is its id.
 */
#include "cdc_reverse_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const mg_cdc_table_t tables[] = {
    {.db = "d", .coll = "a", .schema = "s", .table = "a", .key = MG_SCHEMA_KEY_TEXT_OID},
    {.db = "d", .coll = "b", .schema = "s", .table = "b", .key = MG_SCHEMA_KEY_BIGINT},
    {.db = "d", .coll = "c", .schema = "s", .table = "c", .key = MG_SCHEMA_KEY_CANONICAL},
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

static mg_pgo_decoder_t *dec;

/* lookup finds a doc for keys starting with 'f' (the key itself as a string _id). */
static bool
lookup(void *ctx, const mg_cdc_table_t *t, const char *key, size_t key_len, mg_buf_t *out,
       bool *found, mg_error_t *error)
{
    (void)ctx;
    (void)t;
    *found = key_len > 0 && key[0] == 'f';
    return !*found || mg_buf_printf(out, error, "{\"_id\": \"%.*s\"}", (int)key_len, key);
}

static void
check_ops(const mg_cdc__rev_ops_t *ops)
{
    for (size_t k = 0; k < ops->n; k++) {
        const mg_cdc__rev_op_t *op = &ops->ops[k];
        bson_iter_t a, b;
        if (op->table >= NTABLES)
            abort();
        if (op->kind == MG_CDC__REV_TRUNCATE)
            continue;
        if (op->id == NULL || op->doc_id == NULL || !bson_iter_init_find(&a, op->id, "_id"))
            abort();
        if (op->kind == MG_CDC__REV_UPSERT &&
            (op->doc == NULL || !bson_iter_init_find(&b, op->doc, "_id") ||
             bson_iter_type(&a) != bson_iter_type(&b)))
            abort();
    }
}

static void
one(mg_cdc__rev_rels_t *rels, mg_cdc__rev_ops_t *ops, const uint8_t *msg, size_t len)
{
    mg_pgo_msg_t m;
    mg_error_t e;
    size_t before = ops->n;

    if (!mg_pgo_decode(dec, msg, len, &m, &e))
        return;
    if (m.kind == MG_PGO_RELATION) {
        if (!mg_cdc__rev_relation(rels, tables, NTABLES, &m, &e))
            abort(); /* only out of memory */
        return;
    }
    if (m.kind != MG_PGO_INSERT && m.kind != MG_PGO_UPDATE && m.kind != MG_PGO_DELETE &&
        m.kind != MG_PGO_TRUNCATE)
        return;
    if (!mg_cdc__rev_map(rels, tables, NTABLES, &m, lookup, NULL, ops, &e) &&
        (strncmp(e.message, "could not", 9) != 0 || ops->n != before))
        abort();
    check_ops(ops);
    if (ops->n > 64)
        mg_cdc__rev_ops_drop_front(ops, ops->n / 2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_cdc__rev_rels_t rels = {0};
    mg_cdc__rev_ops_t ops = {0};

    if (dec == NULL && (dec = mg_pgo_decoder_new()) == NULL)
        abort();
    while (size >= 2) {
        size_t len = ((size_t)data[0] << 8) | data[1];
        uint8_t *copy;
        if (len > size - 2)
            len = size - 2;
        /* an exact-size copy: any read past the message is caught by ASan */
        copy = malloc(len + 1);
        memcpy(copy, data + 2, len);
        one(&rels, &ops, copy, len);
        free(copy);
        data += 2 + len;
        size -= 2 + len;
    }
    mg_cdc__rev_ops_cleanup(&ops);
    mg_cdc__rev_rels_cleanup(&rels);
    return 0;
}
