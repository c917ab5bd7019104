/*
 * cdc/src/cdc_lease.c - who applies the change stream, and the follower's
 * heartbeat (docs/cdc.md, "Who applies", "Lag").
 *
 * One follower at a time holds the lease: a session advisory lock on its
 * reader's connection plus the `follower` row naming it (state_follow.c).
 * Every half second it writes a heartbeat with its lag, so `migrate
 * status` and the cutover know it is alive without watching the
 * checkpoint move, and how far behind the source's latest write it is.
 */
#include "cdc_follow.h"

#include <string.h>
#include <unistd.h>

#define BEAT_EVERY_S  0.5
#define PROBE_EVERY_S 0.5

bool
mg_cdc__lease_claim(follow_t *f, mg_error_t *error)
{
    char holder[256];
    bool claimed;

    if (f->name[0] == '\0') {
        if (gethostname(f->host, sizeof(f->host)) != 0)
            snprintf(f->host, sizeof(f->host), "unknown");
        f->host[sizeof(f->host) - 1] = '\0';
        snprintf(f->name, sizeof(f->name), "%s:%d", f->host, (int)getpid());
    }
    if (!mg_state_follower_claim(f->st, f->name, f->host, (int)getpid(), &claimed, holder,
                                 sizeof(holder), error))
        return false;
    if (!claimed)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "could not start applying the change stream: another follower is "
                            "applying it, %s; two appliers would race, so stop that one first "
                            "(or let it run: it is the one migrate cutover waits for)",
                            holder);
    f->claimed = true;
    f->last_beat = 0;
    MG_LOG_EVENT(MG_LOG_INFO, "cdc", "cdc.lease", MG_LOG_FIELDS(MG_LOG_STR("follower", f->name)),
                 "this process (%s) applies the change stream", f->name);
    return true;
}

/* lag_update feeds the committed position to the probes and publishes the lag. */
static double
lag_update(follow_t *f, double now)
{
    bool has;
    uint32_t t, i;
    double lag;

    pthread_mutex_lock(&f->ap.lock);
    has = f->has_committed_pos;
    t = f->committed_t;
    i = f->committed_i;
    pthread_mutex_unlock(&f->ap.lock);
    if (has)
        mg_cdc__lag_applied(&f->lag, t, i);
    lag = mg_cdc__lag_seconds(&f->lag, now);
    pthread_mutex_lock(&f->stats_lock);
    f->lag_s = lag;
    pthread_mutex_unlock(&f->stats_lock);
    return lag;
}

bool
mg_cdc__lease_tick(follow_t *f, mg_error_t *error)
{
    double now = mg_now_s();
    double lag = lag_update(f, now);
    mg_state_beat_t b;
    mg_error_t e;
    bool owner = true;

    if (now - f->lag.last_probe >= PROBE_EVERY_S) {
        if (!mg_cdc__lag_probe(&f->lag, f->mongo, now, &e))
            mg_log_error(MG_LOG_DEBUG, "cdc", &e); /* the stream's own errors say more */
        else
            lag = lag_update(f, now); /* an idle source: reached at once */
    }
    if (!f->claimed || now - f->last_beat < BEAT_EVERY_S)
        return true;
    memset(&b, 0, sizeof(b));
    b.lag_s = lag;
    b.has_source_write = f->lag.has_write;
    b.source_write_t = f->lag.write_t;
    b.source_write_i = f->lag.write_i;
    pthread_mutex_lock(&f->ap.lock);
    b.has_applied = f->has_committed_pos;
    b.applied_t = f->committed_t;
    b.applied_i = f->committed_i;
    pthread_mutex_unlock(&f->ap.lock);
    if (!mg_state_follower_beat(f->st, f->name, &b, &owner, &e)) {
        /* a lost target shows at the next apply, which reconnects and claims again */
        mg_log_error(MG_LOG_DEBUG, "cdc", &e);
        return true;
    }
    f->last_beat = now;
    if (!f->fenced && !f->fence_seen && !mg_cdc__fence_check(f, &f->fence_seen, &e))
        mg_log_error(MG_LOG_DEBUG, "cdc", &e);
    if (!owner) {
        f->claimed = false;
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "stopped applying the change stream: another follower took the "
                            "lease over (this one, %s, lost its session, e.g. in a target "
                            "failover, and the other started meanwhile)",
                            f->name);
    }
    return true;
}

void
mg_cdc__lease_release(follow_t *f, const char *reason)
{
    mg_error_t e;

    if (!f->claimed || f->pg == NULL)
        return;
    f->claimed = false;
    if (!mg_state_follower_release(f->st, f->name, reason, &e))
        mg_log_error(MG_LOG_DEBUG, "cdc", &e);
}
