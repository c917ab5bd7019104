/*
 * cdc/src/cdc_reverse.c - the reverse sync's engine (docs/cdc.md "The way
 * back"): streams the capture's slot over a replication connection
 * (START_REPLICATION ... LOGICAL, pgoutput protocol 1, the capture's
 * publication), maps each change back to a MongoDB operation
 * (cdc_reverse_map.c) and writes each PostgreSQL transaction as one
 * MongoDB transaction together with the position (cdc_reverse_apply.c).
 *
 * Exactly once: MongoDB's position document says which transactions are
 * in MongoDB. A transaction whose commit LSN is below the position's lsn
 * was applied and is skipped when the slot sends it again (the slot is
 * told a flush LSN only after the MongoDB commit, so after kill -9 it may
 * resend); a transaction applied in parts (over batch_changes or
 * batch_bytes) records its commit LSN and how many operations are in, and
 * a resent one skips those. The position moves by compare-and-set, so two
 * processes can never both apply one transaction.
 *
 * Caught up: the walsender's keepalive carries how far it has decoded;
 * when no transaction is open, every transaction that committed before it
 * has been received and applied, and the position moves there alone.
 */
#include "cdc_reverse_internal.h"
#include "mg/state_fallback.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often an idle stream asks the walsender where it is. */
#define IDLE_PING_S 1.0

struct mg_cdc_reverse {
    const mg_cdc_reverse_settings_t *s;
    PGconn *pg; /* plain connection: state, lookups of unchanged TOASTed docs */
    mg_state_t *st;
    mg_state_colls_t colls;
    mg_cdc_table_t *tables;
    size_t ntables;
    mg_state_reverse_t cap;
    mongoc_client_t *client;
    mg_cdc__rev_mongo_t mongo;
    mg_cdc_reverse_pos_t pos; /* what MongoDB holds */
    PGconn *rep;
    mg_pgo_decoder_t *dec;
    mg_cdc__rev_rels_t rels;
    mg_cdc__rev_ops_t ops;
    bool in_txn;
    uint64_t txn_lsn;  /* the open transaction's commit LSN (from Begin) */
    bool txn_skip;     /* applied before: only read it */
    int64_t txn_drop;  /* operations of it already in MongoDB (an earlier part) */
    int64_t txn_parts; /* parts of it applied by this process */
    uint64_t goal;     /* without follow: stop once the position reaches it */
    uint64_t wal_end;  /* the walsender's latest keepalive */
    double last_rx, started, last_report;
    mg_cdc_reverse_stats_t stats;
};

void
mg_cdc_reverse_destroy(mg_cdc_reverse_t *r)
{
    if (r == NULL)
        return;
    mg_cdc__rev_ops_cleanup(&r->ops);
    mg_cdc__rev_rels_cleanup(&r->rels);
    mg_pgo_decoder_destroy(r->dec);
    if (r->rep != NULL)
        PQfinish(r->rep);
    mg_cdc__rev_mongo_cleanup(&r->mongo);
    if (r->client != NULL)
        mongoc_client_destroy(r->client);
    free(r->tables);
    mg_state_colls_cleanup(&r->colls);
    mg_state_destroy(r->st);
    if (r->pg != NULL)
        PQfinish(r->pg);
    free(r);
}

/* load_tables reads the migrated collections from the state. */
static bool
load_tables(mg_cdc_reverse_t *r, mg_error_t *error)
{
    if (!mg_state_collections_load(r->st, false, &r->colls, error))
        return false;
    r->tables = calloc(r->colls.n + 1, sizeof(*r->tables));
    if (r->tables == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t k = 0; k < r->colls.n; k++) {
        const mg_state_coll_t *c = &r->colls.items[k];
        if (!c->key_known)
            return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                                "could not start the reverse sync: collection \"%s.%s\" has no "
                                "key type recorded",
                                c->db, c->coll);
        r->tables[r->ntables++] = (mg_cdc_table_t){c->db, c->coll, c->schema, c->table, c->key};
    }
    return true;
}

mg_cdc_reverse_t *
mg_cdc_reverse_new(const mg_cdc_reverse_settings_t *s, mg_error_t *error)
{
    mg_cdc_reverse_t *r = calloc(1, sizeof(*r));
    bool ok = r != NULL ||
              mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");

    if (!ok)
        return NULL;
    r->s = s;
    ok = (r->pg = mg_pg_connect(s->target, error)) != NULL &&
         (r->st = mg_state_new(r->pg, s->state_schema, error)) != NULL &&
         mg_state_require(r->st, error) && mg_state_reverse_ensure(r->st, error) &&
         mg_state_reverse_get(r->st, &r->cap, error) && load_tables(r, error);
    if (ok && (!r->cap.exists || strcmp(r->cap.status, "dropped") == 0))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                          "could not start the reverse sync: no reverse capture on the target "
                          "(the cutover ran with --no-fallback, or it was dropped)");
    else if (ok &&
             (!mg_cdc__rev_name_valid(r->cap.slot) || !mg_cdc__rev_name_valid(r->cap.publication)))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                          "could not start the reverse sync: the capture's slot or publication "
                          "name recorded in the state (\"%.80s\", \"%.80s\") is not one migrate "
                          "makes ([a-z0-9_], at most 63 bytes)",
                          r->cap.slot, r->cap.publication);
    ok = ok &&
         (r->client = mg_mongo_client_new(s->source_uri, "migrate-reverse", 0, error)) != NULL &&
         mg_cdc__rev_mongo_init(&r->mongo, r->client, s->state_schema, r->tables, r->ntables,
                                error) &&
         (r->dec = mg_pgo_decoder_new()) != NULL;
    if (!ok) {
        mg_cdc_reverse_destroy(r);
        return NULL;
    }
    return r;
}

const char *
mg_cdc_lsn_text(uint64_t lsn, char *buf, size_t bufsz)
{
    return mg_pgo_lsn_format(lsn, buf, bufsz);
}

void
mg_cdc_reverse_stats(mg_cdc_reverse_t *r, mg_cdc_reverse_stats_t *out)
{
    *out = r->stats;
    out->lsn = r->pos.lsn;
    out->generation = r->pos.generation;
}

/* ---- the position ---- */

/* position_start reads MongoDB's position, or sets the first one at the slot's start. */
static bool
position_start(mg_cdc_reverse_t *r, mg_error_t *error)
{
    mg_cdc_reverse_pos_t first = {
        .exists = true, .generation = r->cap.generation, .lsn = r->cap.start_lsn};
    bool moved;

    if (!mg_cdc__rev_position_read(&r->mongo, &r->pos, error))
        return false;
    if (!r->pos.exists) {
        if (!mg_cdc__rev_position_move(&r->mongo, NULL, &first, &moved, error))
            return false;
        r->pos = first;
    }
    if (r->pos.generation != r->cap.generation)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "could not start the reverse sync: MongoDB's position is of capture "
                            "generation %d, the target's capture is generation %d (the slot was "
                            "made again: the gap needs a repair)",
                            r->pos.generation, r->cap.generation);
    return true;
}

/* report mirrors the position into the state (for status and the fallback), at most once a second.
 */
static void
report(mg_cdc_reverse_t *r, bool caught_up, bool force)
{
    double now = mg_now_s(), el = now - r->started;
    mg_error_t e;

    if (!force && now - r->last_report < 1.0)
        return;
    r->last_report = now;
    r->stats.events_per_s = el > 0 ? (double)r->stats.changes / el : 0;
    if (!mg_state_reverse_applied(r->st, r->pos.generation, r->pos.lsn, r->pos.txns, r->pos.changes,
                                  r->stats.events_per_s, caught_up, &e))
        MG_LOG(MG_LOG_WARNING, "cdc", "reverse: could not record the position in the state: %s",
               e.message);
}

/* send_status tells the walsender what MongoDB holds (reply: ask it to answer at once). */
static bool
send_status(mg_cdc_reverse_t *r, bool reply, mg_error_t *error)
{
    uint8_t msg[MG_PGO_STATUS_SIZE];

    mg_pgo_status_build(msg, r->pos.lsn, r->pos.lsn, r->pos.lsn, mg_pgo_now_us(), reply);
    if (PQputCopyData(r->rep, (const char *)msg, sizeof(msg)) != 1 || PQflush(r->rep) != 0)
        return mg_error_set_pgconn(error, r->rep,
                                   "could not send the reverse position to the target");
    return true;
}

/* apply writes the operations in hand with the position moved to *to, then tells the slot. */
static bool
apply(mg_cdc_reverse_t *r, const mg_cdc_reverse_pos_t *to, mg_error_t *error)
{
    if (!mg_cdc__rev_apply(&r->mongo, r->ops.ops, r->ops.n, &r->pos, to, error))
        return false;
    r->stats.changes += (int64_t)r->ops.n;
    r->pos = *to;
    mg_cdc__rev_ops_drop_front(&r->ops, r->ops.n);
    return send_status(r, false, error);
}

/* ---- the stream ---- */

/* lookup reads a row's current doc by key (an update left its TOASTed doc out of the stream). */
static bool
lookup(void *ctx, const mg_cdc_table_t *t, const char *key, size_t key_len, mg_buf_t *out,
       bool *found, mg_error_t *error)
{
    mg_cdc_reverse_t *r = ctx;
    mg_buf_t sql, k;
    PGresult *res = NULL;
    bool ok;

    mg_buf_init(&sql, 4096);
    mg_buf_init(&k, key_len + 1);
    ok = mg_buf_append(&k, key, key_len, error) && mg_buf_append(&k, "", 1, error) &&
         mg_buf_append_str(&sql, "SELECT doc::text FROM ", error) &&
         mg_schema_quote_ident(t->schema, &sql, error) && mg_buf_append_str(&sql, ".", error) &&
         mg_schema_quote_ident(t->table, &sql, error) &&
         mg_buf_printf(&sql, error, " WHERE _id = $1::%s", mg_schema_key_type_sql(t->key));
    if (ok) {
        const char *p[1] = {k.data};
        ok = (res = mg_pg_query(r->pg, sql.data, 1, p, error)) != NULL;
    }
    *found = ok && PQntuples(res) == 1;
    if (*found)
        ok = mg_buf_append(out, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), error);
    PQclear(res);
    mg_buf_cleanup(&sql);
    mg_buf_cleanup(&k);
    return ok;
}

/* begin opens a transaction: skipped when applied, or resumed past an applied part. */
static void
begin(mg_cdc_reverse_t *r, const mg_pgo_msg_t *m)
{
    r->in_txn = true;
    r->txn_lsn = m->lsn;
    r->txn_skip = m->lsn < r->pos.lsn;
    r->txn_drop = r->pos.part_lsn == m->lsn ? r->pos.part_done : 0;
    r->txn_parts = 0;
}

/* change maps one change; a transaction over the batch limits is applied in parts. */
static bool
change(mg_cdc_reverse_t *r, const mg_pgo_msg_t *m, mg_error_t *error)
{
    mg_cdc_reverse_pos_t to = r->pos;
    size_t k;

    if (!r->in_txn)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_PARSE,
                            "could not apply a %s message outside a transaction",
                            mg_pgo_kind_name(m->kind));
    if (r->txn_skip)
        return true;
    if (!mg_cdc__rev_map(&r->rels, r->tables, r->ntables, m, lookup, r, &r->ops, error))
        return false;
    /* operations of an earlier part already in MongoDB */
    k = r->txn_drop < (int64_t)r->ops.n ? (size_t)r->txn_drop : r->ops.n;
    mg_cdc__rev_ops_drop_front(&r->ops, k);
    r->txn_drop -= (int64_t)k;
    if ((int64_t)r->ops.n < r->s->batch_changes && (int64_t)r->ops.bytes < r->s->batch_bytes)
        return true;
    to.part_lsn = r->txn_lsn;
    to.part_done = (r->pos.part_lsn == r->txn_lsn ? r->pos.part_done : 0) + (int64_t)r->ops.n;
    to.changes += (int64_t)r->ops.n;
    r->txn_parts++;
    return apply(r, &to, error);
}

/* commit applies the transaction's (last) part with the position moved past it. */
static bool
commit(mg_cdc_reverse_t *r, const mg_pgo_msg_t *m, mg_error_t *error)
{
    mg_cdc_reverse_pos_t to = r->pos;

    if (!r->in_txn || m->lsn != r->txn_lsn)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_PARSE,
                            "could not apply a commit that ends no open transaction");
    r->in_txn = false;
    if (r->txn_skip)
        return true;
    to.lsn = m->end_lsn;
    to.part_lsn = 0;
    to.part_done = 0;
    to.txns++;
    to.changes += (int64_t)r->ops.n;
    if (!apply(r, &to, error))
        return false;
    r->stats.txns++;
    report(r, false, false);
    return true;
}

/* idle moves the position to the walsender's end when no transaction is open. */
static bool
idle(mg_cdc_reverse_t *r, uint64_t wal_end, mg_error_t *error)
{
    mg_cdc_reverse_pos_t to = r->pos;
    bool moved;

    r->wal_end = wal_end;
    if (r->in_txn || wal_end <= r->pos.lsn)
        return true;
    to.lsn = wal_end;
    if (!mg_cdc__rev_position_move(&r->mongo, &r->pos, &to, &moved, error))
        return false;
    if (!moved)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "the reverse position in %s.%s moved under this process (another "
                            "reverse sync runs)",
                            MG_CDC_REVERSE_DB, MG_CDC_REVERSE_COLL);
    r->pos = to;
    report(r, true, false);
    return send_status(r, false, error);
}

/* message handles one pgoutput message. */
static bool
message(mg_cdc_reverse_t *r, const mg_pgo_frame_t *f, mg_error_t *error)
{
    mg_pgo_msg_t m;

    if (!mg_pgo_decode(r->dec, f->data, f->len, &m, error))
        return false;
    switch (m.kind) {
    case MG_PGO_BEGIN:
        begin(r, &m);
        return true;
    case MG_PGO_COMMIT:
        return commit(r, &m, error);
    case MG_PGO_RELATION:
        return mg_cdc__rev_relation(&r->rels, r->tables, r->ntables, &m, error);
    case MG_PGO_INSERT:
    case MG_PGO_UPDATE:
    case MG_PGO_DELETE:
    case MG_PGO_TRUNCATE:
        return change(r, &m, error);
    default: /* Type, Origin, Message: nothing to apply */
        return true;
    }
}

/* frame handles one CopyData frame. */
static bool
frame(mg_cdc_reverse_t *r, const uint8_t *data, size_t len, mg_error_t *error)
{
    mg_pgo_frame_t f;

    if (!mg_pgo_frame_parse(data, len, &f, error))
        return false;
    if (f.kind == MG_PGO_FRAME_XLOGDATA)
        return message(r, &f, error);
    return idle(r, f.wal_end, error) && (!f.reply_requested || send_status(r, false, error));
}

/* start_stream opens the replication connection and starts streaming from the position. */
static bool
start_stream(mg_cdc_reverse_t *r, mg_error_t *error)
{
    char lsn[32];
    mg_buf_t cmd;
    PGresult *res;
    bool ok;

    mg_buf_init(&cmd, 4096);
    ok = (r->rep = mg_cdc__rep_connect(r->s->target, error)) != NULL &&
         mg_buf_printf(&cmd, error,
                       "START_REPLICATION SLOT %s LOGICAL %s (proto_version '1', "
                       "publication_names '%s')",
                       r->cap.slot, mg_pgo_lsn_format(r->pos.lsn, lsn, sizeof(lsn)),
                       r->cap.publication);
    if (ok) {
        res = PQexec(r->rep, cmd.data);
        if (PQresultStatus(res) != PGRES_COPY_BOTH)
            ok = mg_error_set_pgresult(
                error, res, "could not stream replication slot \"%s\" from %s", r->cap.slot, lsn);
        PQclear(res);
    }
    mg_buf_cleanup(&cmd);
    return ok;
}

/* done tells whether a run without follow (or a drain) has reached its goal. */
static bool
done(const mg_cdc_reverse_t *r)
{
    if (r->s->stop != NULL && atomic_load(r->s->stop) > 0 && !r->in_txn)
        return true;
    return r->goal > 0 && !r->in_txn && r->pos.part_lsn == 0 && r->pos.lsn >= r->goal;
}

/* receive reads what the stream has, waiting at most a second for it. */
static bool
receive(mg_cdc_reverse_t *r, mg_error_t *error)
{
    char *buf = NULL;
    int n = PQgetCopyData(r->rep, &buf, 1);

    if (n > 0) {
        bool ok = frame(r, (const uint8_t *)buf, (size_t)n, error);
        PQfreemem(buf);
        r->last_rx = mg_now_s();
        return ok;
    }
    if (n == -1)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "could not stream replication slot \"%s\": the target ended the "
                            "stream",
                            r->cap.slot);
    if (n == -2)
        return mg_error_set_pgconn(error, r->rep, "could not stream replication slot \"%s\"",
                                   r->cap.slot);
    if (mg_now_s() - r->last_rx > IDLE_PING_S) {
        r->last_rx = mg_now_s();
        if (!send_status(r, true, error))
            return false;
    }
    struct pollfd pfd = {.fd = PQsocket(r->rep), .events = POLLIN};
    if (poll(&pfd, 1, 200) < 0 && errno != EINTR)
        return mg_error_set_errno(error, errno, "could not wait for the target");
    return PQconsumeInput(r->rep) ||
           mg_error_set_pgconn(error, r->rep, "could not stream replication slot \"%s\"",
                               r->cap.slot);
}

/* current_lsn reads the target's current WAL position: a run without follow stops there. */
static bool
current_lsn(mg_cdc_reverse_t *r, uint64_t *lsn, mg_error_t *error)
{
    PGresult *res = mg_pg_query(r->pg, "SELECT pg_current_wal_lsn()::text", 0, NULL, error);
    bool ok = res != NULL && mg_pgo_lsn_parse(PQgetvalue(res, 0, 0), lsn);

    if (res != NULL && !ok)
        mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_PARSE,
                     "could not read the target's WAL position");
    PQclear(res);
    return ok;
}

int
mg_cdc_reverse_run(mg_cdc_reverse_t *r, mg_error_t *error)
{
    char lsn[32];
    bool ok;

    r->started = r->last_rx = mg_now_s();
    ok = position_start(r, error);
    if (ok && r->s->until_lsn > 0)
        r->goal = r->s->until_lsn;
    else if (ok && !r->s->follow)
        ok = current_lsn(r, &r->goal, error);
    ok = ok && start_stream(r, error);
    MG_LOG(MG_LOG_NOTICE, "cdc", "reverse: streaming slot \"%s\" from %s", r->cap.slot,
           mg_pgo_lsn_format(r->pos.lsn, lsn, sizeof(lsn)));
    while (ok && !done(r))
        ok = receive(r, error);
    report(r, ok && r->goal > 0 && r->pos.lsn >= r->goal, true);
    MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "reverse.stop",
                 MG_LOG_FIELDS(MG_LOG_STR("lsn", mg_pgo_lsn_format(r->pos.lsn, lsn, sizeof(lsn))),
                               MG_LOG_INT("txns", r->stats.txns),
                               MG_LOG_INT("changes", r->stats.changes)),
                 "reverse: applied %" PRId64 " transactions (%" PRId64 " changes), at %s",
                 r->stats.txns, r->stats.changes, lsn);
    if (ok)
        return r->s->stop != NULL && atomic_load(r->s->stop) > 0 && r->goal == 0
                   ? MG_EXIT_INTERRUPTED
                   : MG_EXIT_OK;
    return (int)mg_exit_code_for_error(error);
}
