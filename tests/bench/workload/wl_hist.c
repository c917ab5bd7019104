/*
 * tests/bench/workload/wl_hist.c - log-linear latency histogram (see wl_hist.h).
 */
#include "wl_hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

wl_hist_t *
wl_hist_new(void)
{
    wl_hist_t *h = calloc(1, sizeof *h);
    if (h != NULL)
        h->min_ns = UINT64_MAX;
    return h;
}

void
wl_hist_destroy(wl_hist_t *h)
{
    free(h);
}

void
wl_hist_reset(wl_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min_ns = UINT64_MAX;
}

size_t
wl_hist_index(uint64_t v)
{
    if (v < 2 * (uint64_t)WL_HIST_SUB)
        return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - WL_HIST_SUB_BITS;
    return (size_t)WL_HIST_SUB * (shift + 1) + (size_t)((v >> shift) - WL_HIST_SUB);
}

uint64_t
wl_hist_bucket_low(size_t i)
{
    if (i < 2 * (size_t)WL_HIST_SUB)
        return (uint64_t)i;
    unsigned shift = (unsigned)(i / WL_HIST_SUB) - 1;
    return ((uint64_t)(i % WL_HIST_SUB) + WL_HIST_SUB) << shift;
}

uint64_t
wl_hist_bucket_high(size_t i)
{
    if (i < 2 * (size_t)WL_HIST_SUB)
        return (uint64_t)i;
    unsigned shift = (unsigned)(i / WL_HIST_SUB) - 1;
    return wl_hist_bucket_low(i) + ((UINT64_C(1) << shift) - 1);
}

static void
atomic_min(uint64_t *p, uint64_t v)
{
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v < cur &&
           !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static void
atomic_max(uint64_t *p, uint64_t v)
{
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > cur &&
           !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

void
wl_hist_record(wl_hist_t *h, uint64_t ns)
{
    if (ns > WL_HIST_MAX_NS) {
        __atomic_fetch_add(&h->clamped, 1, __ATOMIC_RELAXED);
        ns = WL_HIST_MAX_NS;
    }
    __atomic_fetch_add(&h->counts[wl_hist_index(ns)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->total, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
    atomic_min(&h->min_ns, ns);
    atomic_max(&h->max_ns, ns);
}

void
wl_hist_add(wl_hist_t *dst, const wl_hist_t *src)
{
    for (size_t i = 0; i < WL_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->clamped += src->clamped;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns)
        dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

uint64_t
wl_hist_percentile(const wl_hist_t *h, double q)
{
    if (h->total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t target = (uint64_t)ceil(q * (double)h->total);
    if (target < 1)
        target = 1;
    if (target > h->total)
        target = h->total;
    uint64_t seen = 0;
    for (size_t i = 0; i < WL_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= target) {
            uint64_t v = wl_hist_bucket_high(i);
            if (v > h->max_ns)
                v = h->max_ns;
            if (v < h->min_ns)
                v = h->min_ns;
            return v;
        }
    }
    return h->max_ns;
}

double
wl_hist_mean(const wl_hist_t *h)
{
    return h->total ? (double)h->sum_ns / (double)h->total : 0.0;
}
