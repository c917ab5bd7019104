/*
 * tests/bench/workload/wl_hist.h - a compact log-linear latency histogram
 * with HdrHistogram's precision (3 significant digits).
 *
 * Values are nanoseconds from 0 to WL_HIST_MAX_NS (about 73 minutes; larger
 * values are clamped and counted in `clamped`). Values below 2048 ns have a
 * bucket each; above, every power of two is split into 1024 equal buckets,
 * so a recorded value and the value reported for it differ by less than
 * 1/1024 (0.1%). 33,792 buckets of 8 bytes: 270 KB per histogram.
 *
 * Recording is one relaxed atomic increment, so many threads may record
 * into one histogram; reading (percentiles, merge) expects the writers to
 * have stopped.
 */
#ifndef WL_HIST_H
#define WL_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WL_HIST_SUB_BITS 10
#define WL_HIST_SUB      (1u << WL_HIST_SUB_BITS)
#define WL_HIST_TOP_BIT  42 /* values below 2^42 ns */
#define WL_HIST_MAX_NS   ((UINT64_C(1) << WL_HIST_TOP_BIT) - 1)
#define WL_HIST_BUCKETS  ((size_t)WL_HIST_SUB * (WL_HIST_TOP_BIT - WL_HIST_SUB_BITS + 1))

typedef struct wl_hist {
    uint64_t counts[WL_HIST_BUCKETS];
    uint64_t total, clamped, sum_ns, min_ns, max_ns;
} wl_hist_t;

/* wl_hist_new returns a zeroed histogram (caller frees with wl_hist_destroy), or NULL. */
wl_hist_t *wl_hist_new(void);
void wl_hist_destroy(wl_hist_t *h);
void wl_hist_reset(wl_hist_t *h);

/* wl_hist_index returns the bucket of value v (v <= WL_HIST_MAX_NS). */
size_t wl_hist_index(uint64_t v);
/* wl_hist_bucket_low / _high return the smallest and largest value of bucket i. */
uint64_t wl_hist_bucket_low(size_t i);
uint64_t wl_hist_bucket_high(size_t i);

/* wl_hist_record adds one value; thread-safe (atomic). */
void wl_hist_record(wl_hist_t *h, uint64_t ns);
/* wl_hist_add adds every count of src to dst (not thread-safe). */
void wl_hist_add(wl_hist_t *dst, const wl_hist_t *src);

/* wl_hist_percentile returns the value at quantile q in [0, 1]: the highest
 * value equivalent to the bucket holding the ceil(q * total)-th smallest
 * value, capped at the largest value recorded; 0 when empty. */
uint64_t wl_hist_percentile(const wl_hist_t *h, double q);
double wl_hist_mean(const wl_hist_t *h);

#endif
