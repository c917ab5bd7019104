/*
 * tests/bench/schema/bench_key.c - the key column encoder (the copier's hot
 * path next to the renderer): CPU ns per _id for each kind of _id under the
 * key types that hold it, side by side in one run (best of `rounds`
 * alternating passes), as COPY binary writes it. Not a test.
 *
 * Usage: bench_schema_key [ids [rounds]]
 */
#include "mg/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static double
cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef enum { OID, STRING, INT, COMPOUND, DOUBLE, DECIMAL } kind_t;

static const char *const kind_names[] = {"ObjectId",       "string (~20 B)", "int64",
                                         "{day, shop, n}", "double",         "Decimal128"};

/* make_ids builds n documents {_id: <kind>} packed in one array. */
static bson_t **
make_ids(kind_t kind, size_t n)
{
    bson_t **docs = malloc(n * sizeof(*docs));

    for (size_t i = 0; i < n; i++) {
        bson_t *d = bson_new();
        char text[64];

        switch (kind) {
        case OID: {
            bson_oid_t oid;

            bson_oid_init(&oid, NULL);
            bson_append_oid(d, "_id", 3, &oid);
            break;
        }
        case STRING:
            snprintf(text, sizeof(text), "user-%llu@example.com",
                     (unsigned long long)(rng() % 100000000));
            bson_append_utf8(d, "_id", 3, text, -1);
            break;
        case INT:
            bson_append_int64(d, "_id", 3, (int64_t)(rng() % 10000000000u));
            break;
        case COMPOUND: {
            bson_t sub;

            bson_append_document_begin(d, "_id", 3, &sub);
            bson_append_int32(&sub, "day", 3, (int32_t)(rng() % 3650));
            bson_append_int32(&sub, "shop", 4, (int32_t)(rng() % 500));
            bson_append_int64(&sub, "n", 1, (int64_t)(rng() % 1000000));
            bson_append_document_end(d, &sub);
            break;
        }
        case DOUBLE:
            bson_append_double(d, "_id", 3, (double)(rng() % 100000000) / 100.0);
            break;
        case DECIMAL: {
            bson_decimal128_t dec;

            snprintf(text, sizeof(text), "%llu.%02llu", (unsigned long long)(rng() % 1000000),
                     (unsigned long long)(rng() % 100));
            bson_decimal128_from_string(text, &dec);
            bson_append_decimal128(d, "_id", 3, &dec);
            break;
        }
        }
        docs[i] = d;
    }
    return docs;
}

/* pass encodes every _id under type; returns CPU seconds (NAN-free: -1 when one does not fit). */
static double
pass(bson_t **docs, size_t n, mg_schema_key_type_t type, size_t *bytes)
{
    mg_buf_t buf;
    mg_error_t error;
    double t0 = cpu_s();

    mg_buf_init(&buf, 1u << 20);
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;

        bson_iter_init_find(&it, docs[i], "_id");
        mg_buf_reset(&buf);
        if (!mg_schema_key_encode(&it, type, MG_SCHEMA_FIDELITY_RELAXED, true, &buf, &error)) {
            mg_buf_cleanup(&buf);
            return -1;
        }
        *bytes += buf.len;
    }
    mg_buf_cleanup(&buf);
    return cpu_s() - t0;
}

int
main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    const mg_schema_key_type_t types[] = {
        MG_SCHEMA_KEY_TEXT_OID,  MG_SCHEMA_KEY_TEXT_STRING,
        MG_SCHEMA_KEY_BIGINT,    MG_SCHEMA_KEY_JSONB,
#ifdef MG_SCHEMA_KEY_MAX_BYTES
        MG_SCHEMA_KEY_CANONICAL,
#endif
    };
    const size_t ntypes = sizeof(types) / sizeof(types[0]);

    printf("%-16s", "_id \\ key type");
    for (size_t t = 0; t < ntypes; t++)
        printf(" %14s", mg_schema_key_type_name(types[t]));
    printf("   (CPU ns per _id, best of %d; - : does not fit)\n", rounds);
    for (int k = OID; k <= DECIMAL; k++) {
        bson_t **docs = make_ids((kind_t)k, n);
        double best[8];

        for (size_t t = 0; t < ntypes; t++)
            best[t] = 1e99;
        for (int r = 0; r < rounds; r++) {
            for (size_t t = 0; t < ntypes; t++) {
                size_t bytes = 0;
                double s = pass(docs, n, types[t], &bytes);

                if (s < 0)
                    best[t] = -1;
                else if (best[t] >= 0 && s < best[t])
                    best[t] = s;
            }
        }
        printf("%-16s", kind_names[k]);
        for (size_t t = 0; t < ntypes; t++) {
            if (best[t] < 0)
                printf(" %14s", "-");
            else
                printf(" %14.1f", best[t] * 1e9 / (double)n);
        }
        printf("\n");
        for (size_t i = 0; i < n; i++)
            bson_destroy(docs[i]);
        free(docs);
    }
    return 0;
}
