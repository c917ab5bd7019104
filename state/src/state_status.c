/*
 * state/src/state_status.c - the lists `migrate status` shows besides the
 * migration row, the checkpoint and the collections: live copy processes,
 * failed partitions, invalid documents.
 */
#include "state_internal.h"

#include <stdlib.h>
#include <string.h>

void
mg_state_rows_cleanup(mg_state_rows_t *rows)
{
    if (rows == NULL)
        return;
    for (size_t k = 0; k < rows->n; k++) {
        free(rows->items[k].a);
        free(rows->items[k].b);
        free(rows->items[k].c);
    }
    free(rows->items);
    memset(rows, 0, sizeof(*rows));
}

/*
 * mg_state__read_rows fills out from res: the text columns text_cols name (up to
 * three; -1 none) go to a, b, c, the number columns num_cols to n1..n3.
 */
bool
mg_state__read_rows(PGresult *res, const int text_cols[3], const int num_cols[3],
                    mg_state_rows_t *out, mg_error_t *error)
{
    bool failed = false;
    size_t n;

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    n = (size_t)PQntuples(res);
    out->items = calloc(n + 1, sizeof(*out->items));
    for (size_t k = 0; out->items != NULL && k < n; k++, out->n++) {
        mg_state_row_t *row = &out->items[k];
        char **texts[3] = {&row->a, &row->b, &row->c};
        int64_t *nums[3] = {&row->n1, &row->n2, &row->n3};
        for (int c = 0; c < 3; c++) {
            if (text_cols[c] >= 0)
                *texts[c] = mg_state__dup(PQgetvalue(res, (int)k, text_cols[c]), &failed);
            if (num_cols[c] >= 0)
                *nums[c] = mg_state__int64(res, (int)k, num_cols[c]);
        }
    }
    PQclear(res);
    if (out->items == NULL || failed) {
        mg_state_rows_cleanup(out);
        return mg_state__oom(error);
    }
    return true;
}

bool
mg_state_live_workers(mg_state_t *st, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, -1, -1}, nums[3] = {1, 2, 3};

    return mg_state__read_rows(
        mg_state__query(st,
                        "SELECT worker, docs, bytes, round(extract(epoch FROM now() "
                        "- updated_at)) FROM @.copy_progress WHERE updated_at > "
                        "now() - interval '1 minute' ORDER BY worker",
                        0, NULL, error),
        texts, nums, out, error);
}

bool
mg_state_failed_partitions(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, -1, 2}, nums[3] = {1, -1, -1};
    char lim[32];
    const char *p[1] = {mg_state__i64(lim, limit)};

    return mg_state__read_rows(
        mg_state__query(st,
                        "SELECT db || '.' || coll, seq, coalesce(error, '') FROM "
                        "@.partitions WHERE status = 'failed' ORDER BY db, coll, "
                        "seq LIMIT $1",
                        1, p, error),
        texts, nums, out, error);
}

bool
mg_state_invalid_docs(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error)
{
    static const int texts[3] = {0, 1, 2}, nums[3] = {3, -1, -1};
    char lim[32];
    const char *p[1] = {mg_state__i64(lim, limit)};

    if (!mg_state__read_rows(
            mg_state__query(st,
                            "SELECT db || '.' || coll, doc_id, reason, (SELECT count(*) "
                            "FROM @.invalid_docs) FROM @.invalid_docs ORDER BY id LIMIT $1",
                            1, p, error),
            texts, nums, out, error))
        return false;
    out->total = out->n > 0 ? out->items[0].n1 : 0;
    return true;
}
