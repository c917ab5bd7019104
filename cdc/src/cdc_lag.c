/*
 * cdc/src/cdc_lag.c - how far behind the source's latest write the target
 * is (docs/cdc.md, "Lag").
 *
 * The follower reads the time of the source's latest write (`hello`'s
 * lastWrite) every half second: a probe (when, on the follower's monotonic
 * clock; what, a source Timestamp). Once the committed position reaches a
 * probe's Timestamp, every write the source had made when the probe was
 * taken is in the target. The lag is the time since the newest such probe
 * (0 when every probe is reached: the stream has seen everything the
 * source wrote). Both ends of each comparison come from one clock — source
 * Timestamps against source Timestamps, the follower's monotonic clock
 * against itself — so clock skew between hosts never enters the figure.
 */
#include "cdc_internal.h"

#include <mongoc/mongoc.h>
#include <string.h>

static bool
ts_le(uint32_t at, uint32_t ai, uint32_t bt, uint32_t bi)
{
    return at < bt || (at == bt && ai <= bi);
}

void
mg_cdc__lag_init(mg_cdc__lag_t *lag)
{
    memset(lag, 0, sizeof(*lag));
}

void
mg_cdc__lag_push(mg_cdc__lag_t *lag, double at, uint32_t t, uint32_t i)
{
    size_t k = lag->n;

    lag->last_probe = at;
    lag->has_write = true;
    lag->write_t = t;
    lag->write_i = i;
    /* full: the newest probe stands in for the last one (reaching it proves more) */
    if (k == MG_CDC_LAG_PROBES)
        k--;
    else
        lag->n++;
    lag->probes[k].at = at;
    lag->probes[k].t = t;
    lag->probes[k].i = i;
}

void
mg_cdc__lag_applied(mg_cdc__lag_t *lag, uint32_t t, uint32_t i)
{
    size_t done = 0;

    while (done < lag->n && ts_le(lag->probes[done].t, lag->probes[done].i, t, i)) {
        if (!lag->known || lag->probes[done].at > lag->caught_up_at)
            lag->caught_up_at = lag->probes[done].at;
        lag->known = true;
        done++;
    }
    if (done > 0) {
        memmove(lag->probes, lag->probes + done, (lag->n - done) * sizeof(lag->probes[0]));
        lag->n -= done;
    }
}

double
mg_cdc__lag_seconds(const mg_cdc__lag_t *lag, double now)
{
    if (!lag->known)
        return -1;
    if (lag->n == 0)
        return 0;
    return now > lag->caught_up_at ? now - lag->caught_up_at : 0;
}

bool
mg_cdc__lag_probe(mg_cdc__lag_t *lag, mongoc_client_t *client, double now, mg_error_t *error)
{
    uint32_t t, i;

    if (!mg_mongo_last_write(client, &t, &i, error))
        return false;
    mg_cdc__lag_push(lag, now, t, i);
    return true;
}

bool
mg_cdc_lag_measure(mg_mongo_t *src, mg_state_t *st, int64_t window_ms, mg_cdc_lag_t *out,
                   mg_error_t *error)
{
    mg_state_follower_t fo;
    mg_state_checkpoint_t cp;

    memset(out, 0, sizeof(*out));
    out->lag_s = -1;
    /* the source first: a checkpoint read after it and at or past it has every write */
    if (!mg_mongo_last_write(src->client, &out->last_write_t, &out->last_write_i, error) ||
        !mg_state_follower_get(st, window_ms, &fo, error) ||
        !mg_state_checkpoint_get(st, 0, &cp, error))
        return false;
    mg_state_checkpoint_cleanup(&cp);
    out->follower_alive = fo.alive;
    snprintf(out->follower, sizeof(out->follower), "%s", fo.exists ? fo.name : "");
    out->applied = cp.applied;
    out->applied_t = cp.t;
    out->applied_i = cp.i;
    out->caught_up =
        cp.applied && ts_le(out->last_write_t, out->last_write_i, out->applied_t, out->applied_i);
    out->lag_s = out->caught_up ? 0 : fo.lag_s;
    return true;
}
