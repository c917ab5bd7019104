/*
 * cdc/src/cdc_batch.c - a batch of changes coalesced per (table, _id), and
 * its application in one PostgreSQL transaction with the checkpoint.
 *
 * Each entry keeps the last state of one document: its rendered JSON
 * (upsert) or nothing (delete). Apply runs, per table, multi-row DELETE ...
 * USING (VALUES ...) and INSERT ... VALUES ... ON CONFLICT (_id) DO UPDATE,
 * in chunks of ROWS_PER_STATEMENT, records the changed _ids for
 * `validate --changed` and moves the checkpoint (both through state/), all
 * before COMMIT.
 */
#include "mg/cdc.h"
#include "mg/state.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_PER_STATEMENT 500

typedef struct {
    size_t table;
    char *key; /* key column value, text form */
    size_t keylen;
    uint32_t hash;
    bool upsert;    /* false: delete */
    size_t doc_off; /* rendered JSON in batch->docs (upsert) */
    size_t doc_len;
    uint32_t ct_t, ct_i;
    bool live;
} entry_t;

struct mg_cdc_batch {
    const mg_cdc_table_t *tables;
    size_t ntables;
    mg_schema_fidelity_t fidelity;
    size_t max_entries; /* hard caps */
    size_t max_bytes;
    size_t soft_entries; /* apply at these */
    size_t soft_bytes;
    entry_t *entries;
    size_t nentries;
    size_t *slots; /* open addressing: index + 1, 0 = empty */
    size_t nslots;
    mg_buf_t docs; /* rendered documents, appended */
    mg_buf_t scratch;
    size_t events;
    size_t bytes;
};

static uint32_t
hash_key(size_t table, const char *key, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)table;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    return h;
}

mg_cdc_batch_t *
mg_cdc_batch_new(const mg_cdc_table_t *tables, size_t ntables, mg_schema_fidelity_t fidelity,
                 size_t soft_entries, size_t soft_bytes, size_t max_entries, size_t max_bytes)
{
    mg_cdc_batch_t *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->tables = tables;
    b->ntables = ntables;
    b->fidelity = fidelity;
    b->max_entries = max_entries > 0 ? max_entries : 1;
    b->max_bytes = max_bytes;
    b->soft_entries = soft_entries < b->max_entries ? soft_entries : b->max_entries;
    b->soft_bytes = soft_bytes < max_bytes ? soft_bytes : max_bytes;
    b->entries = calloc(b->max_entries, sizeof(entry_t));
    b->nslots = 1;
    while (b->nslots < b->max_entries * 2)
        b->nslots *= 2;
    b->slots = calloc(b->nslots, sizeof(size_t));
    /* one document may be up to 16 MB of BSON; its JSON can be larger */
    mg_buf_init(&b->docs, max_bytes + 128u * 1024 * 1024);
    mg_buf_init(&b->scratch, 64u * 1024 * 1024);
    if (b->entries == NULL || b->slots == NULL) {
        mg_cdc_batch_destroy(b);
        return NULL;
    }
    return b;
}

void
mg_cdc_batch_reset(mg_cdc_batch_t *b)
{
    for (size_t i = 0; i < b->nentries; i++)
        free(b->entries[i].key);
    b->nentries = 0;
    memset(b->slots, 0, b->nslots * sizeof(size_t));
    mg_buf_reset(&b->docs);
    b->events = 0;
    b->bytes = 0;
}

void
mg_cdc_batch_destroy(mg_cdc_batch_t *b)
{
    if (b == NULL)
        return;
    if (b->entries != NULL && b->slots != NULL)
        mg_cdc_batch_reset(b);
    free(b->entries);
    free(b->slots);
    mg_buf_cleanup(&b->docs);
    mg_buf_cleanup(&b->scratch);
    free(b);
}

void
mg_cdc_batch_stats(const mg_cdc_batch_t *b, mg_cdc_batch_stats_t *s)
{
    memset(s, 0, sizeof(*s));
    s->events = b->events;
    s->entries = b->nentries;
    s->bytes = b->bytes;
    for (size_t i = 0; i < b->nentries; i++) {
        if (b->entries[i].upsert)
            s->upserts++;
        else
            s->deletes++;
    }
}

bool
mg_cdc_batch_full(const mg_cdc_batch_t *b)
{
    /* the soft caps; the room up to the hard caps is for a source transaction */
    return b->nentries >= b->soft_entries || b->bytes >= b->soft_bytes;
}

/* find_or_add returns the entry for (table, key), creating it when new. */
static entry_t *
find_or_add(mg_cdc_batch_t *b, size_t table, const char *key, size_t keylen, mg_error_t *error)
{
    uint32_t h = hash_key(table, key, keylen);
    size_t mask = b->nslots - 1;

    for (size_t s = h & mask;; s = (s + 1) & mask) {
        size_t idx = b->slots[s];
        if (idx == 0) {
            if (b->nentries == b->max_entries) {
                mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                             "change batch is full (%zu documents): a source transaction "
                             "touches more documents than one batch may hold",
                             b->max_entries);
                return NULL;
            }
            entry_t *e = &b->entries[b->nentries];
            memset(e, 0, sizeof(*e));
            e->key = malloc(keylen + 1);
            if (e->key == NULL) {
                mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
                return NULL;
            }
            memcpy(e->key, key, keylen);
            e->key[keylen] = '\0';
            e->keylen = keylen;
            e->table = table;
            e->hash = h;
            b->slots[s] = ++b->nentries;
            return e;
        }
        entry_t *e = &b->entries[idx - 1];
        if (e->hash == h && e->table == table && e->keylen == keylen &&
            memcmp(e->key, key, keylen) == 0)
            return e;
    }
}

/* encode_key writes the key column's text form of id into b->scratch. */
static bool
encode_key(mg_cdc_batch_t *b, size_t table, const bson_iter_t *id, mg_error_t *error)
{
    mg_buf_reset(&b->scratch);
    if (table >= b->ntables)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "unknown table %zu", table);
    if (!mg_schema_key_encode_for(b->tables[table].db, b->tables[table].coll, id,
                                  b->tables[table].key, b->fidelity, false, &b->scratch, error)) {
        mg_error_prefix(error, "collection \"%s.%s\"", b->tables[table].db, b->tables[table].coll);
        return false;
    }
    return mg_buf_append(&b->scratch, "", 0, error);
}

bool
mg_cdc_batch_upsert(mg_cdc_batch_t *b, size_t table, const bson_t *doc, uint32_t ct_t,
                    uint32_t ct_i, mg_error_t *error)
{
    bson_iter_t id;
    size_t off = b->docs.len;
    entry_t *e;

    if (!bson_iter_init_find(&id, doc, "_id"))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "collection \"%s.%s\": a changed document has no _id",
                            b->tables[table].db, b->tables[table].coll);
    if (!encode_key(b, table, &id, error))
        return false;
    if (!mg_schema_doc_render(doc, b->fidelity, &b->docs, NULL, error)) {
        char shown[256];
        mg_schema_id_describe(&id, shown, sizeof(shown));
        mg_error_prefix(error, "collection \"%s.%s\", _id %s", b->tables[table].db,
                        b->tables[table].coll, shown);
        b->docs.len = off;
        return false;
    }
    e = find_or_add(b, table, b->scratch.data, b->scratch.len, error);
    if (e == NULL) {
        b->docs.len = off;
        return false;
    }
    e->upsert = true;
    e->doc_off = off;
    e->doc_len = b->docs.len - off;
    e->ct_t = ct_t;
    e->ct_i = ct_i;
    b->bytes += e->doc_len;
    b->events++;
    return true;
}

bool
mg_cdc_batch_delete(mg_cdc_batch_t *b, size_t table, const bson_iter_t *id, uint32_t ct_t,
                    uint32_t ct_i, mg_error_t *error)
{
    entry_t *e;

    if (!encode_key(b, table, id, error))
        return false;
    e = find_or_add(b, table, b->scratch.data, b->scratch.len, error);
    if (e == NULL)
        return false;
    e->upsert = false;
    e->doc_len = 0;
    e->ct_t = ct_t;
    e->ct_i = ct_i;
    b->events++;
    return true;
}

/* run executes sql with n text parameters. */
static bool
run(PGconn *conn, const char *sql, int n, const char *const *values, const int *lengths,
    mg_error_t *error)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, values, lengths, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok)
        mg_error_set_pgresult(error, res, "could not apply changes");
    PQclear(res);
    return ok;
}

/* apply_table writes one table's deletes and upserts. */
static bool
apply_table(mg_cdc_batch_t *b, PGconn *conn, size_t table, bool upserts, mg_error_t *error)
{
    const mg_cdc_table_t *t = &b->tables[table];
    const char *keytype = mg_schema_key_type_sql(t->key);
    const char **values = calloc(2 * ROWS_PER_STATEMENT, sizeof(char *));
    int *lengths = calloc(2 * ROWS_PER_STATEMENT, sizeof(int));
    mg_buf_t sql;
    bool ok = false;
    size_t i = 0;

    mg_buf_init(&sql, 1024 * 1024);
    if (values == NULL || lengths == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    while (i < b->nentries) {
        int n = 0, rows = 0;
        mg_buf_reset(&sql);
        for (; i < b->nentries && rows < ROWS_PER_STATEMENT; i++) {
            entry_t *e = &b->entries[i];
            if (e->table != table || e->upsert != upserts)
                continue;
            if (rows == 0) {
                bool head = upserts ? (mg_buf_append_str(&sql, "INSERT INTO ", error) &&
                                       mg_schema_quote_ident(t->schema, &sql, error) &&
                                       mg_buf_append_str(&sql, ".", error) &&
                                       mg_schema_quote_ident(t->table, &sql, error) &&
                                       mg_buf_append_str(&sql, " (_id, doc) VALUES ", error))
                                    : (mg_buf_append_str(&sql, "DELETE FROM ", error) &&
                                       mg_schema_quote_ident(t->schema, &sql, error) &&
                                       mg_buf_append_str(&sql, ".", error) &&
                                       mg_schema_quote_ident(t->table, &sql, error) &&
                                       mg_buf_append_str(&sql, " AS t USING (VALUES ", error));
                if (!head)
                    goto done;
            }
            if (upserts) {
                if (!mg_buf_printf(&sql, error, "%s($%d::%s, $%d::jsonb)", rows ? ", " : "", n + 1,
                                   keytype, n + 2))
                    goto done;
                values[n] = e->key;
                lengths[n++] = (int)e->keylen;
                /* rendered JSON is not NUL-terminated in the shared buffer: copy it */
                char *doc = malloc(e->doc_len + 1);
                if (doc == NULL) {
                    mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
                    goto done;
                }
                memcpy(doc, b->docs.data + e->doc_off, e->doc_len);
                doc[e->doc_len] = '\0';
                values[n] = doc;
                lengths[n++] = (int)e->doc_len;
            } else {
                if (!mg_buf_printf(&sql, error, "%s($%d::%s)", rows ? ", " : "", n + 1, keytype))
                    goto done;
                values[n] = e->key;
                lengths[n++] = (int)e->keylen;
            }
            rows++;
        }
        if (rows == 0)
            break;
        if (upserts)
            ok = mg_buf_append_str(&sql, " ON CONFLICT (_id) DO UPDATE SET doc = EXCLUDED.doc",
                                   error);
        else
            ok = mg_buf_append_str(&sql, ") AS v(k) WHERE t._id = v.k", error);
        if (ok)
            ok = run(conn, sql.data, n, values, lengths, error);
        if (upserts)
            for (int k = 1; k < n; k += 2)
                free((char *)values[k]);
        if (!ok) {
            mg_error_prefix(error, "table \"%s\".\"%s\"", t->schema, t->table);
            goto done;
        }
    }
    ok = true;
done:
    free(values);
    free(lengths);
    mg_buf_cleanup(&sql);
    return ok;
}

/* record_changed logs the batch's _ids for `validate --changed` (state/, same transaction). */
static bool
record_changed(mg_cdc_batch_t *b, mg_state_t *st, mg_error_t *error)
{
    mg_state_changed_t *rows = calloc(b->nentries, sizeof(*rows));
    bool ok;

    if (rows == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; i < b->nentries; i++) {
        entry_t *e = &b->entries[i];
        rows[i] = (mg_state_changed_t){b->tables[e->table].db, b->tables[e->table].coll, e->key,
                                       e->ct_t, e->ct_i};
    }
    ok = mg_state_changed_add(st, rows, b->nentries, error);
    free(rows);
    return ok;
}

/* move_checkpoint moves the checkpoint to pos (state/ refuses to move it backwards). */
static bool
move_checkpoint(mg_cdc_batch_t *b, mg_state_t *st, const mg_cdc_position_t *pos, mg_error_t *error)
{
    char *json = bson_as_relaxed_extended_json(pos->token, NULL);
    mg_state_position_t sp = {
        .token = bson_get_data(pos->token),
        .token_len = pos->token->len,
        .token_json = json,
        .t = pos->ct_t,
        .i = pos->ct_i,
        .wall_ms = pos->wall_ms,
        .events = (int64_t)b->events,
    };
    bool ok = mg_state_checkpoint_move(st, &sp, error);

    bson_free(json);
    return ok;
}

/*
 * check_guard reads, in the apply's transaction, whether a cutover flipped
 * (the application owns the tables) and whether the lease is still ours.
 */
static bool
check_guard(mg_state_t *st, mg_cdc_guard_t *guard, mg_error_t *error)
{
    mg_state_fence_t fc;

    guard->fenced = guard->lost = false;
    if (!mg_state_follow_fence(st, guard->follower, &fc, error))
        return false;
    if (fc.flipped) {
        guard->fenced = true;
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "the cutover flipped the application to PostgreSQL (at %s UTC): its "
                            "tables are the application's now, so no change from the source is "
                            "applied any more",
                            fc.flipped_at);
    }
    if (!fc.owner) {
        guard->lost = true;
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "another follower took the lease over: this one (%s) stops applying",
                            guard->follower);
    }
    return true;
}

bool
mg_cdc_batch_apply(mg_cdc_batch_t *b, mg_state_t *st, const mg_cdc_position_t *pos,
                   mg_cdc_guard_t *guard, mg_error_t *error)
{
    PGconn *conn = mg_state_conn(st);
    PGresult *res;
    bool ok = false;

    res = PQexec(conn, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        mg_error_set_pgresult(error, res, "could not begin the apply transaction");
        PQclear(res);
        return false;
    }
    PQclear(res);
    if (guard != NULL && !check_guard(st, guard, error))
        goto rollback;
    for (size_t t = 0; t < b->ntables; t++) {
        /* deletes first: an entry is either a delete or an upsert, never both */
        if (!apply_table(b, conn, t, false, error) || !apply_table(b, conn, t, true, error))
            goto rollback;
    }
    if (b->nentries > 0 && !record_changed(b, st, error))
        goto rollback;
    if (!move_checkpoint(b, st, pos, error))
        goto rollback;
    res = PQexec(conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        mg_error_set_pgresult(error, res, "could not commit the apply transaction");
        PQclear(res);
        goto rollback;
    }
    PQclear(res);
    mg_cdc_batch_reset(b);
    ok = true;
    return ok;
rollback:
    res = PQexec(conn, "ROLLBACK");
    PQclear(res);
    return false;
}
