/*
 * tests/bench/workload/wl_pg.c - the workload on PostgreSQL through libpq,
 * against the tables `migrate init` creates (`_id bigint PRIMARY KEY, doc
 * jsonb`), with the queries written the way the index translation expects
 * them (`doc -> 'field'`), so the translated indexes serve them.
 *
 * Every statement goes through PQexecParams (the extended protocol with an
 * unnamed statement): it works the same directly, through HAProxy and
 * through pgbouncer in transaction mode (which, in the 1.18 Debian ships,
 * does not keep named prepared statements). Time inside PQexecParams is
 * counted as time in the database (c->db_ns); everything else the thread
 * does is client time.
 */
#include "wl.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

enum {
    SQL_POINT,
    SQL_RANGE,
    SQL_INSERT_EVENT,
    SQL_INSERT_ORDER,
    SQL_UPDATE_SMALL,
    SQL_UPDATE_LARGE,
    SQL_PRICES,
    SQL_COUNT
};

static char *sql[SQL_COUNT];

const char *const wl_op_names[WL_OP_COUNT] = {"point",        "range",        "insert",
                                              "update_small", "update_large", "txn"};

static void
set_err(wl_conn_t *c, const char *what, const PGresult *res, PGconn *conn)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    snprintf(c->err, sizeof c->err, "could not run %s: %s%s%s", what, state ? state : "",
             state ? " " : "", msg && *msg ? msg : "no result");
    size_t n = strlen(c->err);
    while (n > 0 && (c->err[n - 1] == '\n' || c->err[n - 1] == ' '))
        c->err[--n] = '\0';
}

/* exec runs one statement; returns the result (caller clears) or NULL with
 * c->err set. In dry mode nothing is sent and *dry_ok is set instead. */
static PGresult *
exec(wl_conn_t *c, const char *what, const char *text, int n, const char *const *vals,
     ExecStatusType want, bool *dry_ok)
{
    PGconn *conn = c->handle;
    *dry_ok = false;
    if (c->shared->dry) {
        *dry_ok = true;
        return NULL;
    }
    uint64_t t0 = wl_now_ns();
    PGresult *res = PQexecParams(conn, text, n, NULL, vals, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != want) {
        set_err(c, what, res, conn);
        PQclear(res);
        res = NULL;
        if (PQstatus(conn) == CONNECTION_BAD)
            PQreset(conn);
    }
    c->db_ns += wl_now_ns() - t0;
    return res;
}

/* command runs a statement that returns no rows and expects `rows` affected (-1: any). */
static bool
command(wl_conn_t *c, const char *what, const char *text, int n, const char *const *vals, long rows)
{
    bool dry;
    PGresult *res = exec(c, what, text, n, vals, PGRES_COMMAND_OK, &dry);
    if (dry)
        return true;
    if (res == NULL)
        return false;
    bool ok = rows < 0 || strtol(PQcmdTuples(res), NULL, 10) == rows;
    if (!ok)
        snprintf(c->err, sizeof c->err, "%s changed %s rows, not %ld", what, PQcmdTuples(res),
                 rows);
    PQclear(res);
    return ok;
}

static bool
plain(wl_conn_t *c, const char *text)
{
    return command(c, text, text, 0, NULL, -1);
}

/* query runs a SELECT; counts the bytes of column 0 read; *rows gets the row count */
static PGresult *
query(wl_conn_t *c, const char *what, const char *text, int n, const char *const *vals, int *rows,
      bool *dry)
{
    PGresult *res = exec(c, what, text, n, vals, PGRES_TUPLES_OK, dry);
    *rows = res ? PQntuples(res) : 0;
    for (int i = 0; i < *rows; i++)
        c->bytes_in += (uint64_t)PQgetlength(res, i, 0);
    return res;
}

static bool
insert_doc(wl_conn_t *c, const char *what, int which, int64_t id, const bson_t *doc)
{
    char idtext[24];
    size_t len;
    char *json = bson_as_relaxed_extended_json(doc, &len);
    snprintf(idtext, sizeof idtext, "%lld", (long long)id);
    const char *vals[2] = {idtext, json};
    c->bytes_out += len;
    bool ok = command(c, what, sql[which], 2, vals, 1);
    bson_free(json);
    return ok;
}

static bool
update_inc(wl_conn_t *c, const char *what, int which, int64_t id, int64_t by)
{
    char a[24], b[24];
    snprintf(a, sizeof a, "%lld", (long long)id);
    snprintf(b, sizeof b, "%lld", (long long)by);
    const char *vals[2] = {a, b};
    return command(c, what, sql[which], 2, vals, 1);
}

static bool
op_point(wl_conn_t *c)
{
    char a[24];
    int rows;
    bool dry;
    int64_t id = wl_rng_range(&c->rng, 1, c->shared->sizes.orders);
    snprintf(a, sizeof a, "%lld", (long long)id);
    const char *vals[1] = {a};
    PGresult *res = query(c, "point read", sql[SQL_POINT], 1, vals, &rows, &dry);
    if (dry)
        return true;
    PQclear(res);
    if (res != NULL && rows != 1)
        snprintf(c->err, sizeof c->err, "point read: order %lld not found", (long long)id);
    return res != NULL && rows == 1;
}

static bool
op_range(wl_conn_t *c)
{
    char a[24];
    int rows;
    bool dry;
    snprintf(a, sizeof a, "%lld", (long long)wl_rng_range(&c->rng, 1, c->shared->sizes.customers));
    const char *vals[1] = {a};
    PGresult *res = query(c, "range read", sql[SQL_RANGE], 1, vals, &rows, &dry);
    PQclear(res);
    return dry || res != NULL;
}

static bool
op_insert(wl_conn_t *c)
{
    int64_t id = __atomic_fetch_add(&c->shared->next_event_id, 1, __ATOMIC_RELAXED);
    int64_t cust = wl_rng_range(&c->rng, 1, c->shared->sizes.customers);
    bson_t *doc = wl_doc_event(c->shared->seed, id, cust, NULL, wl_time_ms());
    bool ok = insert_doc(c, "insert event", SQL_INSERT_EVENT, id, doc);
    bson_destroy(doc);
    return ok;
}

/* prices reads the products' prices into price[] (ids sorted, distinct). */
static bool
prices(wl_conn_t *c, int n, const int64_t *pid, int64_t *price)
{
    char arr[128];
    size_t off = 0;
    int rows;
    bool dry;
    off += (size_t)snprintf(arr, sizeof arr, "{");
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(arr + off, sizeof arr - off, "%s%lld", i ? "," : "",
                                (long long)pid[i]);
    snprintf(arr + off, sizeof arr - off, "}");
    const char *vals[1] = {arr};
    PGresult *res = query(c, "read prices", sql[SQL_PRICES], 1, vals, &rows, &dry);
    for (int i = 0; i < n; i++)
        price[i] = 100;
    if (dry)
        return true;
    if (res == NULL)
        return false;
    for (int r = 0; r < rows; r++) {
        int64_t id = strtoll(PQgetvalue(res, r, 0), NULL, 10);
        for (int i = 0; i < n; i++)
            if (pid[i] == id)
                price[i] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
    }
    PQclear(res);
    if (rows != n)
        snprintf(c->err, sizeof c->err, "read prices: %d of %d products found", rows, n);
    return rows == n;
}

/* pick_products draws n distinct product ids in ascending order (the lock
 * order every transaction follows, so concurrent orders cannot deadlock). */
static int
pick_products(wl_conn_t *c, int64_t *pid, int64_t *qty)
{
    int n = (int)wl_rng_range(&c->rng, 1, 3);
    int64_t max = c->shared->sizes.products;
    if (n > max)
        n = (int)max;
    for (int i = 0; i < n; i++) {
        bool dup;
        do {
            pid[i] = wl_rng_range(&c->rng, 1, max);
            dup = false;
            for (int k = 0; k < i; k++)
                dup = dup || pid[k] == pid[i];
        } while (dup);
        qty[i] = wl_rng_range(&c->rng, 1, 3);
    }
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && pid[k - 1] > pid[k]; k--) {
            int64_t t = pid[k];
            pid[k] = pid[k - 1];
            pid[k - 1] = t;
            t = qty[k];
            qty[k] = qty[k - 1];
            qty[k - 1] = t;
        }
    return n;
}

/* place_order is the body of the txn operation (inside BEGIN/COMMIT or not). */
static bool
place_order(wl_conn_t *c)
{
    wl_shared_t *s = c->shared;
    int64_t pid[3], qty[3], price[3], total = 0;
    int n = pick_products(c, pid, qty);
    int64_t cust = wl_rng_range(&c->rng, 1, s->sizes.customers), now = wl_time_ms();
    if (!prices(c, n, pid, price))
        return false;
    int64_t oid = __atomic_fetch_add(&s->next_order_id, 1, __ATOMIC_RELAXED);
    bson_t *order = wl_doc_order_placed(oid, cust, n, pid, price, qty, now);
    bool ok = insert_doc(c, "insert order", SQL_INSERT_ORDER, oid, order);
    bson_destroy(order);
    for (int i = 0; i < n && ok; i++) {
        ok = update_inc(c, "update stock", SQL_UPDATE_LARGE, pid[i], -qty[i]);
        total += qty[i] * price[i];
    }
    ok = ok && update_inc(c, "update loyalty", SQL_UPDATE_SMALL, cust, total / 100);
    if (ok) {
        int64_t eid = __atomic_fetch_add(&s->next_event_id, 1, __ATOMIC_RELAXED);
        bson_t *ev = wl_doc_event(s->seed, eid, cust, "order_placed", now);
        ok = insert_doc(c, "insert event", SQL_INSERT_EVENT, eid, ev);
        bson_destroy(ev);
    }
    return ok;
}

static bool
op_txn(wl_conn_t *c)
{
    if (!c->shared->txn)
        return place_order(c);
    if (!plain(c, "BEGIN"))
        return false;
    if (place_order(c) && plain(c, "COMMIT"))
        return true;
    char keep[sizeof c->err];
    memcpy(keep, c->err, sizeof keep);
    if (PQtransactionStatus(c->handle) != PQTRANS_IDLE)
        plain(c, "ROLLBACK");
    memcpy(c->err, keep, sizeof keep);
    return false;
}

static bool
pg_op(wl_conn_t *c, wl_op_t op)
{
    switch (op) {
    case WL_OP_POINT:
        return op_point(c);
    case WL_OP_RANGE:
        return op_range(c);
    case WL_OP_INSERT:
        return op_insert(c);
    case WL_OP_UPDATE_SMALL:
        return update_inc(c, "update small", SQL_UPDATE_SMALL,
                          wl_rng_range(&c->rng, 1, c->shared->sizes.customers), 1);
    case WL_OP_UPDATE_LARGE:
        return update_inc(c, "update large", SQL_UPDATE_LARGE,
                          wl_rng_range(&c->rng, 1, c->shared->sizes.products), 1);
    case WL_OP_TXN:
        return op_txn(c);
    default:
        snprintf(c->err, sizeof c->err, "unknown operation %d", (int)op);
        return false;
    }
}

static char *
fmt_sql(const char *schema, const char *fmt)
{
    size_t n = strlen(fmt) + 2 * strlen(schema) + 1;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, fmt, schema, schema);
    return s;
}

static bool
build_sql(const char *schema)
{
    static const char *const fmts[SQL_COUNT] = {
        [SQL_POINT] = "SELECT doc FROM %s.orders WHERE _id = $1",
        [SQL_RANGE] = "SELECT doc FROM %s.orders WHERE doc -> 'customer_id' = $1::jsonb "
                      "ORDER BY doc -> 'created_at' DESC LIMIT 10",
        [SQL_INSERT_EVENT] = "INSERT INTO %s.events (_id, doc) VALUES ($1, $2)",
        [SQL_INSERT_ORDER] = "INSERT INTO %s.orders (_id, doc) VALUES ($1, $2)",
        [SQL_UPDATE_SMALL] = "UPDATE %s.customers SET doc = jsonb_set(doc, '{loyalty_points}', "
                             "to_jsonb(COALESCE((doc ->> 'loyalty_points')::bigint, 0) + "
                             "$2::bigint)) WHERE _id = $1",
        [SQL_UPDATE_LARGE] = "UPDATE %s.products SET doc = jsonb_set(doc, '{stock}', "
                             "to_jsonb(COALESCE((doc ->> 'stock')::bigint, 0) + $2::bigint)) "
                             "WHERE _id = $1",
        [SQL_PRICES] = "SELECT _id, doc -> 'price_cents' FROM %s.products "
                       "WHERE _id = ANY($1::bigint[])",
    };
    for (int i = 0; i < SQL_COUNT; i++)
        if ((sql[i] = fmt_sql(schema, fmts[i])) == NULL)
            return false;
    return true;
}

static bool
pg_prepare(wl_shared_t *s, char *err, size_t errlen)
{
    PGconn *conn = PQconnectdb(s->uri);
    PGresult *res = NULL;
    bool ok = false;
    char *schema = NULL, *q = NULL;
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "could not connect to the target: %s", PQerrorMessage(conn));
        goto done;
    }
    schema = PQescapeIdentifier(conn, s->ns, strlen(s->ns));
    if (schema == NULL || !build_sql(schema)) {
        snprintf(err, errlen, "could not quote schema \"%s\"", s->ns);
        goto done;
    }
    q = fmt_sql(schema, "SELECT (SELECT max(_id) FROM %s.customers)::bigint, "
                        "(SELECT max(_id) FROM %s.products)::bigint, ");
    char full[1024];
    snprintf(full, sizeof full,
             "%s(SELECT max(_id) FROM %s.orders)::bigint, (SELECT max(_id) FROM %s.events)::bigint",
             q, schema, schema);
    res = PQexec(conn, full);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(err, errlen, "could not read the collection sizes in schema \"%s\": %s", s->ns,
                 PQresultErrorMessage(res));
        goto done;
    }
    int64_t *dst[4] = {&s->sizes.customers, &s->sizes.products, &s->sizes.orders, &s->sizes.events};
    for (int i = 0; i < 4; i++) {
        *dst[i] = PQgetisnull(res, 0, i) ? 0 : strtoll(PQgetvalue(res, 0, i), NULL, 10);
        if (*dst[i] < 1) {
            snprintf(err, errlen, "schema \"%s\" has an empty collection (load it first)", s->ns);
            goto done;
        }
    }
    ok = true;
done:
    PQclear(res);
    free(q);
    PQfreemem(schema);
    PQfinish(conn);
    return ok;
}

static bool
pg_connect(wl_conn_t *c)
{
    if (c->shared->dry)
        return true;
    PGconn *conn = PQconnectdb(c->shared->uri);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(c->err, sizeof c->err, "could not connect to the target: %s",
                 PQerrorMessage(conn));
        PQfinish(conn);
        return false;
    }
    c->handle = conn;
    return true;
}

static void
pg_disconnect(wl_conn_t *c)
{
    PQfinish(c->handle);
    c->handle = NULL;
}

static void
pg_cleanup(void)
{
    for (int i = 0; i < SQL_COUNT; i++) {
        free(sql[i]);
        sql[i] = NULL;
    }
}

const wl_backend_t wl_backend_pg = {"postgresql", pg_prepare,    pg_connect,
                                    pg_op,        pg_disconnect, pg_cleanup};
