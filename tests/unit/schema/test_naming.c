/*
 * tests/unit/schema/test_naming.c - deterministic PostgreSQL names for
 * databases, collections, primary keys and indexes: sanitising, cutting,
 * collisions (hashed names re-checked against plain ones, index names
 * against tables and each other), reserved schema names, order
 * independence; and a seeded randomized test over adversarial namespaces
 * (MG_TEST_SEED, MG_TEST_ROUNDS).
 */
#include "mg/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_sanitize(void **state)
{
    char out[MG_SCHEMA_IDENT_MAX + 1];

    assert_false(mg_schema_ident_sanitize("users", out));
    assert_string_equal(out, "users");
    assert_true(mg_schema_ident_sanitize("Users", out));
    assert_string_equal(out, "users");
    assert_true(mg_schema_ident_sanitize("order-items v2", out));
    assert_string_equal(out, "order_items_v2");
    assert_true(mg_schema_ident_sanitize("2024_logs", out));
    assert_string_equal(out, "c_2024_logs");
    assert_true(mg_schema_ident_sanitize("caf\xc3\xa9", out));
    assert_string_equal(out, "caf__");
    assert_true(mg_schema_ident_sanitize("", out));
    assert_string_equal(out, "c_");
}

static void
test_long_names_are_cut_with_a_hash(void **state)
{
    char a[200], b[200], oa[64], ob[64];

    memset(a, 'x', 100);
    a[100] = '\0';
    memcpy(b, a, 101);
    b[99] = 'y';
    assert_true(mg_schema_ident_sanitize(a, oa));
    assert_true(mg_schema_ident_sanitize(b, ob));
    assert_int_equal(strlen(oa), MG_SCHEMA_IDENT_MAX);
    assert_int_equal(strlen(ob), MG_SCHEMA_IDENT_MAX);
    assert_memory_equal(oa, ob, 54); /* same prefix */
    assert_string_not_equal(oa, ob); /* different hash */
    assert_int_equal(oa[54], '_');
}

static mg_schema_naming_t *
plan(const char *single, const char *const *names, size_t n)
{
    mg_schema_naming_t *p = mg_schema_naming_new(single);
    mg_error_t e;

    for (size_t i = 0; i < n; i += 2)
        assert_true(mg_schema_naming_add(p, names[i], names[i + 1], &e));
    assert_true(mg_schema_naming_resolve(p, &e));
    return p;
}

static void
test_collisions_get_hashes_and_are_order_independent(void **state)
{
    const char *const fwd[] = {"shop", "Users", "shop", "users", "shop", "orders"};
    const char *const rev[] = {"shop", "orders", "shop", "users", "shop", "Users"};
    mg_schema_naming_t *a = plan(NULL, fwd, 6);
    mg_schema_naming_t *b = plan(NULL, rev, 6);
    const mg_schema_naming_entry_t *u1 = mg_schema_naming_find(a, "shop", "Users");
    const mg_schema_naming_entry_t *u2 = mg_schema_naming_find(a, "shop", "users");
    const mg_schema_naming_entry_t *o = mg_schema_naming_find(a, "shop", "orders");

    assert_string_equal(o->table, "orders");
    assert_false(o->table_renamed);
    assert_string_equal(o->schema, "shop");
    /* both clashing names get a hash, the plain one too */
    assert_string_not_equal(u1->table, u2->table);
    assert_memory_equal(u1->table, "users_", 6);
    assert_memory_equal(u2->table, "users_", 6);
    assert_true(u1->table_renamed && u2->table_renamed);
    /* the same names whatever the order */
    assert_string_equal(mg_schema_naming_find(b, "shop", "Users")->table, u1->table);
    assert_string_equal(mg_schema_naming_find(b, "shop", "users")->table, u2->table);
    assert_null(mg_schema_naming_find(a, "shop", "nope"));
    mg_schema_naming_destroy(a);
    mg_schema_naming_destroy(b);
}

static void
test_same_collection_name_in_two_databases(void **state)
{
    const char *const names[] = {"app", "users", "Billing", "users"};
    mg_schema_naming_t *per_db = plan(NULL, names, 4);
    mg_schema_naming_t *one = plan("target", names, 4);
    size_t n;

    /* one schema per database: no clash, Billing's schema lower-cased */
    assert_string_equal(mg_schema_naming_find(per_db, "app", "users")->table, "users");
    assert_string_equal(mg_schema_naming_find(per_db, "Billing", "users")->table, "users");
    assert_string_equal(mg_schema_naming_find(per_db, "Billing", "users")->schema, "billing");
    assert_true(mg_schema_naming_find(per_db, "Billing", "users")->schema_renamed);
    /* a single target schema: the two "users" clash and both get hashes */
    const mg_schema_naming_entry_t *e = mg_schema_naming_entries(one, &n);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].schema, "target");
    assert_string_not_equal(e[0].table, e[1].table);
    mg_schema_naming_destroy(per_db);
    mg_schema_naming_destroy(one);
}

/* fnv1a32 is the hash docs/naming.md documents (written again here). */
static uint32_t
fnv1a32(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

/* A collection literally named like the hashed name of another one keeps its name. */
static void
test_hashed_names_rechecked_against_plain(void **state)
{
    char taken1[64], taken2[64];
    const char *names[8];
    mg_schema_naming_t *p;
    const mg_schema_naming_entry_t *e;
    size_t n;

    (void)state;
    snprintf(taken1, sizeof(taken1), "users_%08x", fnv1a32("shop.Users"));
    snprintf(taken2, sizeof(taken2), "users_%08x", fnv1a32("shop.users"));
    names[0] = "shop", names[1] = "Users", names[2] = "shop", names[3] = "users";
    names[4] = "shop", names[5] = taken1, names[6] = "shop", names[7] = taken2;
    p = plan(NULL, names, 8);
    e = mg_schema_naming_entries(p, &n);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(e[i].table, e[j].table) == 0)
                fail_msg("%s and %s both became table %s", e[i].coll, e[j].coll, e[i].table);
    /* the plain names stay; the hashed ones moved */
    assert_string_equal(mg_schema_naming_find(p, "shop", taken1)->table, taken1);
    assert_string_equal(mg_schema_naming_find(p, "shop", taken2)->table, taken2);
    assert_false(mg_schema_naming_find(p, "shop", taken1)->table_renamed);
    mg_schema_naming_destroy(p);
}

static void
test_reserved_schema_names(void **state)
{
    const char *const names[] = {
        "pg_catalog", "a",        "pg_foo", "a",        "PG_Bar", "a",   "information_schema",
        "a",          "c_pg_foo", "a",      "_migrate", "a",      "pg_", "a",
        "Pg_x",       "a",        "pg#y",   "a",        "PG-z",   "a"};
    mg_schema_naming_t *p = mg_schema_naming_new(NULL);
    const mg_schema_naming_entry_t *e;
    mg_error_t err;
    size_t n;

    (void)state;
    assert_true(mg_schema_naming_reserve(p, "_migrate", &err));
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i += 2)
        assert_true(mg_schema_naming_add(p, names[i], names[i + 1], &err));
    assert_true(mg_schema_naming_resolve(p, &err));
    e = mg_schema_naming_entries(p, &n);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(e[i].schema, "pg_", 3) == 0 || strcmp(e[i].schema, "information_schema") == 0 ||
            strcmp(e[i].schema, "_migrate") == 0)
            fail_msg("database %s got the reserved schema name %s", e[i].db, e[i].schema);
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(e[i].schema, e[j].schema);
    }
    /* pg_foo -> c_pg_foo, which clashes with the database c_pg_foo: both hashed */
    assert_memory_equal(mg_schema_naming_find(p, "pg_foo", "a")->schema, "c_pg_foo_", 9);
    assert_string_equal(mg_schema_naming_find(p, "Pg_x", "a")->schema, "c_pg_x");
    /* "pg_" after sanitising counts too (found by fuzz_schema_naming) */
    assert_string_equal(mg_schema_naming_find(p, "pg#y", "a")->schema, "c_pg_y");
    assert_string_equal(mg_schema_naming_find(p, "PG-z", "a")->schema, "c_pg_z");
    assert_true(mg_schema_naming_find(p, "pg_foo", "a")->schema_renamed);
    mg_schema_naming_destroy(p);
    /* a reserved single target schema is refused, naming the option */
    p = mg_schema_naming_new("pg_x");
    assert_true(mg_schema_naming_add(p, "db", "c", &err));
    assert_false(mg_schema_naming_resolve(p, &err));
    assert_non_null(strstr(err.message, "target_schema"));
    mg_schema_naming_destroy(p);
}

/* add_index translates {key: {f: 1}, name: mongo_name} for an entry. */
static void
add_index(const mg_schema_naming_entry_t *e, const char *mongo_name, const char *field,
          mg_schema_index_plan_t *plan)
{
    bson_t *spec = BCON_NEW("key", "{", field, BCON_INT32(1), "}", "name", BCON_UTF8(mongo_name));
    mg_error_t err;

    if (!mg_schema_index_translate(spec, e->schema, e->table, NULL, plan, &err))
        fail_msg("translate: %s", err.message);
    bson_destroy(spec);
}

static void
test_index_names_unique_by_construction(void **state)
{
    const char *const names[] = {"shop",   "user", "shop",        "user_group", "shop",
                                 "orders", "shop", "orders_pkey", "shop",       "orders_items_1"};
    mg_schema_naming_t *p = plan(NULL, names, 10);
    mg_schema_index_plan_t user[2], group[2], orders[3];
    char longname[200];
    mg_error_t err;

    (void)state;
    memset(longname, 'x', 150);
    longname[150] = '\0';
    add_index(mg_schema_naming_find(p, "shop", "user"), "group_id_1", "group_id", &user[0]);
    add_index(mg_schema_naming_find(p, "shop", "user"), "_id_", "_id", &user[1]);
    add_index(mg_schema_naming_find(p, "shop", "user_group"), "id_1", "id", &group[0]);
    add_index(mg_schema_naming_find(p, "shop", "user_group"), longname, "y", &group[1]);
    add_index(mg_schema_naming_find(p, "shop", "orders"), "items_1", "items", &orders[0]);
    add_index(mg_schema_naming_find(p, "shop", "orders"), "pkey", "k", &orders[1]);
    add_index(mg_schema_naming_find(p, "shop", "orders"), longname, "z", &orders[2]);
    /* translate alone picks "<table>_<index>": the clashes are there */
    assert_string_equal(user[0].pg_name, group[0].pg_name);
    assert_true(mg_schema_naming_add_indexes(p, "shop", "user", user, 2, &err));
    assert_true(mg_schema_naming_add_indexes(p, "shop", "user_group", group, 2, &err));
    assert_true(mg_schema_naming_add_indexes(p, "shop", "orders", orders, 3, &err));
    assert_true(mg_schema_naming_resolve_indexes(p, &err));
    {
        const char *all[16];
        size_t n = 0, count;
        const mg_schema_naming_entry_t *e = mg_schema_naming_entries(p, &count);

        for (size_t i = 0; i < count; i++) {
            all[n++] = e[i].table;
            all[n++] = e[i].pkey;
        }
        all[n++] = user[0].pg_name;
        all[n++] = group[0].pg_name;
        all[n++] = group[1].pg_name;
        all[n++] = orders[0].pg_name;
        all[n++] = orders[1].pg_name;
        all[n++] = orders[2].pg_name;
        for (size_t i = 0; i < n; i++) {
            assert_true(strlen(all[i]) <= MG_SCHEMA_IDENT_MAX);
            for (size_t j = i + 1; j < n; j++)
                if (strcmp(all[i], all[j]) == 0)
                    fail_msg("two relations of schema shop are named %s", all[i]);
        }
    }
    /* the primary key plan takes the table's pkey name; statements carry the final names */
    assert_string_equal(user[1].pg_name, mg_schema_naming_find(p, "shop", "user")->pkey);
    assert_non_null(strstr(user[0].statement, user[0].pg_name));
    assert_non_null(strstr(group[0].sql, group[0].pg_name));
    /* orders' primary key is not "orders_pkey": a table has that name */
    assert_string_not_equal(mg_schema_naming_find(p, "shop", "orders")->pkey, "orders_pkey");
    for (int i = 0; i < 2; i++) {
        mg_schema_index_plan_cleanup(&user[i]);
        mg_schema_index_plan_cleanup(&group[i]);
    }
    for (int i = 0; i < 3; i++)
        mg_schema_index_plan_cleanup(&orders[i]);
    mg_schema_naming_destroy(p);
}

/* ---- randomized and adversarial namespaces ---- */

static uint64_t rs;

static uint64_t
rnd(void)
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return rs * UINT64_C(0x2545f4914f6cdd1d);
}

/* random_name writes an adversarial name: quotes, dots, spaces, $, unicode, 63+ bytes. */
static void
random_name(char *out, size_t cap, bool db)
{
    static const char *const pieces[] = {
        "a", "b",        "users",        "A",   "_",   "-",   ".", " ",     "$",  "\"",
        "'", "\xc3\xa9", "\xe6\x9d\xb1", "pg_", "PG_", "pg-", "1", "_pkey", "_1", "x"};
    size_t len = 0, n = 1 + rnd() % (rnd() % 4 == 0 ? 40 : 4);

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];

        if (db && (strchr(p, '.') || strchr(p, ' ') || strchr(p, '$') || strchr(p, '"')))
            continue; /* MongoDB refuses these in database names */
        if (len + strlen(p) + 1 >= cap)
            break;
        strcpy(out + len, p);
        len += strlen(p);
    }
    if (len == 0)
        strcpy(out, db ? "d" : "c");
}

typedef struct {
    char db[200];
    char coll[200];
    char idx[2][200];
} ns_t;

/* name_all resolves the namespaces in the given order; returns the naming (caller destroys). */
static mg_schema_naming_t *
name_all(const ns_t *ns, const size_t *order, size_t n, const char *single,
         mg_schema_index_plan_t (*plans)[3])
{
    mg_schema_naming_t *p = mg_schema_naming_new(single);
    mg_error_t err;

    assert_true(mg_schema_naming_reserve(p, "_migrate", &err));
    for (size_t i = 0; i < n; i++)
        assert_true(mg_schema_naming_add(p, ns[order[i]].db, ns[order[i]].coll, &err));
    if (!mg_schema_naming_resolve(p, &err))
        fail_msg("resolve: %s", err.message);
    for (size_t i = 0; i < n; i++) {
        const ns_t *x = &ns[order[i]];
        const mg_schema_naming_entry_t *e = mg_schema_naming_find(p, x->db, x->coll);

        add_index(e, "_id_", "_id", &plans[order[i]][0]);
        add_index(e, x->idx[0], "a", &plans[order[i]][1]);
        add_index(e, x->idx[1], "b.c", &plans[order[i]][2]);
        assert_true(mg_schema_naming_add_indexes(p, x->db, x->coll, plans[order[i]], 3, &err));
    }
    if (!mg_schema_naming_resolve_indexes(p, &err))
        fail_msg("resolve indexes: %s", err.message);
    return p;
}

static bool
valid_ident(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MG_SCHEMA_IDENT_MAX || (s[0] >= '0' && s[0] <= '9'))
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* check_plan checks validity and uniqueness of every name of one resolved plan. */
static void
check_plan(uint64_t seed, const ns_t *ns, size_t n, mg_schema_naming_t *p,
           mg_schema_index_plan_t (*plans)[3], const char *single)
{
    char **rel = malloc(4 * n * sizeof(*rel) + 1);
    size_t nrel = 0;

    for (size_t i = 0; i < n; i++) {
        const mg_schema_naming_entry_t *e = mg_schema_naming_find(p, ns[i].db, ns[i].coll);
        char *names[] = {(char *)e->table, (char *)e->pkey, plans[i][1].pg_name,
                         plans[i][2].pg_name};

        if (!valid_ident(e->schema) || strncmp(e->schema, "pg_", 3) == 0 ||
            strcmp(e->schema, "_migrate") == 0 || strcmp(e->schema, "information_schema") == 0)
            fail_msg("seed %llu: database \"%s\" got schema \"%s\"", (unsigned long long)seed,
                     ns[i].db, e->schema);
        for (size_t j = 0; j < n; j++) {
            const mg_schema_naming_entry_t *f = mg_schema_naming_find(p, ns[j].db, ns[j].coll);

            if (single == NULL &&
                (strcmp(ns[i].db, ns[j].db) == 0) != (strcmp(e->schema, f->schema) == 0))
                fail_msg("seed %llu: databases \"%s\" and \"%s\" -> schemas %s and %s",
                         (unsigned long long)seed, ns[i].db, ns[j].db, e->schema, f->schema);
        }
        assert_string_equal(plans[i][0].pg_name, e->pkey);
        for (int k = 0; k < 4; k++) {
            size_t len = strlen(e->schema) + strlen(names[k]) + 2;

            if (!valid_ident(names[k]))
                fail_msg("seed %llu: invalid name \"%s\"", (unsigned long long)seed, names[k]);
            rel[nrel] = malloc(len);
            snprintf(rel[nrel++], len, "%s.%s", e->schema, names[k]);
        }
        if (strstr(plans[i][1].sql, plans[i][1].pg_name) == NULL)
            fail_msg("seed %llu: the SQL does not use the final name", (unsigned long long)seed);
    }
    qsort(rel, nrel, sizeof(*rel), str_cmp);
    for (size_t i = 1; i < nrel; i++)
        if (strcmp(rel[i - 1], rel[i]) == 0)
            fail_msg("seed %llu: two relations named %s", (unsigned long long)seed, rel[i]);
    for (size_t i = 0; i < nrel; i++)
        free(rel[i]);
    free(rel);
}

static void
test_random_namespaces(void **state)
{
    const char *seed_env = getenv("MG_TEST_SEED");
    const char *rounds_env = getenv("MG_TEST_ROUNDS");
    uint64_t seed = seed_env != NULL ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
    size_t rounds = rounds_env != NULL ? strtoul(rounds_env, NULL, 10) : 300;

    (void)state;
    print_message("test_random_namespaces: seed %llu (MG_TEST_SEED=%llu to repeat), %zu rounds\n",
                  (unsigned long long)seed, (unsigned long long)seed, rounds);
    rs = seed | 1;
    for (size_t round = 0; round < rounds; round++) {
        size_t n = 2 + rnd() % 40, ndb = 1 + rnd() % 4;
        ns_t *ns = calloc(n, sizeof(*ns));
        size_t *order = malloc(n * sizeof(*order));
        mg_schema_index_plan_t(*pa)[3] = calloc(n, sizeof(*pa));
        mg_schema_index_plan_t(*pb)[3] = calloc(n, sizeof(*pb));
        char dbs[4][200];
        const char *single = rnd() % 4 == 0 ? "target" : NULL;
        mg_schema_naming_t *a, *b;

        for (size_t d = 0; d < ndb; d++)
            random_name(dbs[d], sizeof(dbs[d]), true);
        for (size_t i = 0; i < n; i++) {
            bool unique;

            do {
                strcpy(ns[i].db, dbs[rnd() % ndb]);
                random_name(ns[i].coll, sizeof(ns[i].coll), false);
                /* sometimes a name that is another one's hashed or primary-key name */
                if (i > 0 && rnd() % 5 == 0) {
                    const ns_t *o = &ns[rnd() % i];
                    char full[420], base[64];

                    snprintf(full, sizeof(full), "%s.%s", o->db, o->coll);
                    mg_schema_ident_sanitize(o->coll, base);
                    base[54] = '\0';
                    snprintf(ns[i].coll, sizeof(ns[i].coll), rnd() % 2 ? "%s_%08x" : "%s_pkey",
                             base, fnv1a32(full));
                }
                unique = true;
                for (size_t j = 0; j < i; j++)
                    unique = unique && !(strcmp(ns[i].db, ns[j].db) == 0 &&
                                         strcmp(ns[i].coll, ns[j].coll) == 0);
            } while (!unique);
            random_name(ns[i].idx[0], sizeof(ns[i].idx[0]), false);
            do
                random_name(ns[i].idx[1], sizeof(ns[i].idx[1]), false);
            while (strcmp(ns[i].idx[0], ns[i].idx[1]) == 0);
            order[i] = i;
        }
        a = name_all(ns, order, n, single, pa);
        check_plan(seed, ns, n, a, pa, single);
        /* another order: the same names */
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = rnd() % (i + 1), t = order[i];

            order[i] = order[j];
            order[j] = t;
        }
        b = name_all(ns, order, n, single, pb);
        for (size_t i = 0; i < n; i++) {
            const mg_schema_naming_entry_t *ea = mg_schema_naming_find(a, ns[i].db, ns[i].coll);
            const mg_schema_naming_entry_t *eb = mg_schema_naming_find(b, ns[i].db, ns[i].coll);

            if (strcmp(ea->schema, eb->schema) != 0 || strcmp(ea->table, eb->table) != 0 ||
                strcmp(ea->pkey, eb->pkey) != 0 ||
                strcmp(pa[i][1].pg_name, pb[i][1].pg_name) != 0 ||
                strcmp(pa[i][2].pg_name, pb[i][2].pg_name) != 0)
                fail_msg("seed %llu: \"%s.%s\" is named differently in another order",
                         (unsigned long long)seed, ns[i].db, ns[i].coll);
        }
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < 3; k++) {
                mg_schema_index_plan_cleanup(&pa[i][k]);
                mg_schema_index_plan_cleanup(&pb[i][k]);
            }
        mg_schema_naming_destroy(a);
        mg_schema_naming_destroy(b);
        free(pa);
        free(pb);
        free(order);
        free(ns);
    }
}

static void
test_quote(void **state)
{
    mg_buf_t b;
    mg_error_t e;

    mg_buf_init(&b, 1024);
    assert_true(mg_schema_quote_ident("we\"ird", &b, &e));
    assert_true(mg_schema_quote_literal(" it's", &b, &e));
    assert_string_equal(b.data, "\"we\"\"ird\"' it''s'");
    mg_buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_long_names_are_cut_with_a_hash),
        cmocka_unit_test(test_collisions_get_hashes_and_are_order_independent),
        cmocka_unit_test(test_same_collection_name_in_two_databases),
        cmocka_unit_test(test_hashed_names_rechecked_against_plain),
        cmocka_unit_test(test_reserved_schema_names),
        cmocka_unit_test(test_index_names_unique_by_construction),
        cmocka_unit_test(test_random_namespaces),
        cmocka_unit_test(test_quote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
