/*
 * tests/bench/schema/bench_double.c - the renderer's double formatting:
 * mg_schema__double_format (shortest digits, Schubfach) against the printf
 * + strtod reference it replaced, on the same values in one run. Prints ns
 * per value for both and the ratio, per kind of value. Not a test: numbers
 * depend on the machine.
 *
 * Usage: bench_schema_double [values_per_kind [rounds]]
 */
#include "schema_internal.h"
#include "schema_double.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* rng is splitmix64 with a fixed seed. */
static uint64_t rng_state = 42;

static uint64_t
rng(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double
unit(void)
{
    return (double)(rng() >> 11) / 9007199254740992.0;
}

typedef enum { KIND_DATAGEN, KIND_BITS, KIND_PRICE, KIND_SHORT, KIND_INTEGER, KIND_COUNT } kind_t;

static const char *const kind_names[KIND_COUNT] = {
    "datagen (unit * 1e6)", "random bit patterns", "prices (cents / 100)",
    "short (m/10^k, k<=6)", "integers < 2^53",
};

/* make_value returns one finite value (not -0.0) of the kind. */
static double
make_value(kind_t kind)
{
    for (;;) {
        uint64_t bits = rng();
        double v;

        switch (kind) {
        case KIND_DATAGEN:
            return unit() * 1e6;
        case KIND_BITS:
            memcpy(&v, &bits, sizeof(v));
            if (isfinite(v) && v != 0.0)
                return v;
            break;
        case KIND_PRICE:
            return (double)(bits % 10000000) / 100.0;
        case KIND_SHORT:
            return (double)(bits % 1000000000) / pow(10.0, (double)(rng() % 7));
        default:
            return (double)(bits >> 11);
        }
    }
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* run formats every value with fn; returns seconds, adds the lengths to *sum. */
static double
run(size_t (*fn)(double, char *), const double *v, size_t n, size_t *sum)
{
    char out[MG_SCHEMA_DOUBLE_MAX];
    double t0 = now_s();
    size_t i;

    for (i = 0; i < n; i++)
        *sum += fn(v[i], out);
    return now_s() - t0;
}

int
main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 3, r, kind;
    double *v = malloc(n * sizeof(*v));
    size_t i, sum_old = 0, sum_new = 0;

    if (v == NULL || n == 0 || rounds < 1) {
        fprintf(stderr, "usage: bench_schema_double [values_per_kind [rounds]]\n");
        return 2;
    }
    printf("%-24s %9s  %10s %10s %8s   (best of %d rounds, alternating)\n", "values", "count",
           "old ns/v", "new ns/v", "speedup", rounds);
    for (kind = 0; kind < KIND_COUNT; kind++) {
        double best_old = 1e30, best_new = 1e30;

        for (i = 0; i < n; i++)
            v[i] = make_value((kind_t)kind);
        for (r = 0; r < rounds; r++) {
            double t_old = run(mg_schema__double_format_reference, v, n, &sum_old);
            double t_new = run(mg_schema__double_format, v, n, &sum_new);

            best_old = t_old < best_old ? t_old : best_old;
            best_new = t_new < best_new ? t_new : best_new;
        }
        printf("%-24s %9zu  %10.1f %10.1f %7.1fx\n", kind_names[kind], n, best_old * 1e9 / n,
               best_new * 1e9 / n, best_old / best_new);
    }
    /* the same texts, so the same total length */
    printf("output bytes: old %zu, new %zu\n", sum_old, sum_new);
    free(v);
    return sum_old == sum_new ? 0 : 1;
}
