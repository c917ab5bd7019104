/*
 * cutover/src/cutover_owner.c - who runs the cutover: durable, exclusive
 * ownership across reconnects and failovers (docs/cutover.md, "One
 * coordinator").
 *
 * The owner, a random token and a renewal (a new random value each time)
 * live in the state schema's `cutover_owner` row, changed only by
 * compare-and-set. The owner renews every third of its lease from a
 * thread with its own connection, and counts itself the owner only until
 * its lease has run since the start of its last acknowledged renewal (by
 * its own monotonic clock, less a margin). Another run that finds an owner
 * watches the renewal for the owner's lease plus the margin, by its own
 * clock: a change means the owner is alive (refuse); none means the owner
 * stopped acting before the watch ended, and the run takes over by
 * compare-and-set on exactly the renewal it watched. No clock is compared
 * across hosts, and nothing depends on a session (an advisory lock)
 * surviving a failover. Every write of the cutover row is guarded by the
 * token (state_cutover.c), so a run that lost its ownership records nothing.
 */
#include "cutover_internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define WATCH_POLL_US (100 * 1000)

struct cutover_owner {
    char owner[256];
    char token[40];
    int64_t ttl_ms;
    const char *target; /* the renewer's own connection */
    const char *schema;
    pthread_t thread;
    bool started;
    atomic_int stop;
    atomic_int lost;              /* another run holds it now */
    _Atomic double valid_until_s; /* monotonic: owned until then */
};

/* margin_s is what the owner gives up, and a taker waits longer, than the lease. */
static double
margin_s(int64_t ttl_ms)
{
    double m = (double)ttl_ms / 5000.0;

    return m < 0.2 ? 0.2 : m;
}

/* random_hex writes 32 random hex digits into out (40 bytes). */
static bool
random_hex(char out[40], mg_error_t *error)
{
    unsigned char b[16];
    size_t got = 0;

    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0)
            return mg_error_set_errno(error, errno, "could not read random bytes");
        got += (size_t)n;
    }
    for (size_t k = 0; k < sizeof(b); k++)
        snprintf(out + 2 * k, 3, "%02x", b[k]);
    return true;
}

/* renew_on renews the lease on st; extends validity from started (monotonic) when it holds. */
static bool
renew_on(cutover_owner_t *o, mg_state_t *st, double started, mg_error_t *error)
{
    char renewal[40];
    bool held = false;

    if (!random_hex(renewal, error) ||
        !mg_state_cutover_owner_renew(st, o->token, renewal, &held, error))
        return false;
    if (!held) {
        atomic_store(&o->lost, 1);
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "another migrate cutover took the cutover over");
    }
    atomic_store(&o->valid_until_s, started + (double)o->ttl_ms / 1000.0 - margin_s(o->ttl_ms));
    return true;
}

/* renewer renews the lease every third of it on its own connection until stopped or lost. */
static void *
renewer(void *arg)
{
    cutover_owner_t *o = arg;
    PGconn *pg = NULL;
    mg_state_t *st = NULL;
    sigset_t all;
    mg_error_t e;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!atomic_load(&o->stop) && !atomic_load(&o->lost)) {
        double started = mg_now_s(), next = started + (double)o->ttl_ms / 3000.0;
        mg_error_clear(&e);
        if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
            mg_state_destroy(st);
            PQfinish(pg);
            st = NULL;
            if ((pg = mg_pg_connect(o->target, &e)) != NULL)
                st = mg_state_new(pg, o->schema, &e);
        }
        if (st != NULL && !renew_on(o, st, started, &e)) {
            MG_LOG_EVENT(MG_LOG_WARNING, "cutover", "cutover.lease",
                         MG_LOG_FIELDS(MG_LOG_STR("token", o->token)),
                         "could not renew the cutover's lease: %s", e.message);
            if (mg_pg_lost(pg, &e)) {
                mg_state_destroy(st);
                PQfinish(pg);
                st = NULL;
                pg = NULL;
            }
            next = started + 0.5; /* try again soon */
        }
        while (!atomic_load(&o->stop) && mg_now_s() < next)
            usleep(20 * 1000);
    }
    mg_state_destroy(st);
    PQfinish(pg);
    return NULL;
}

/* take takes the row when it still shows (expect_token, expect_renewal); *taken says so. */
static bool
take(cutover_t *c, const char *expect_token, const char *expect_renewal, bool *taken,
     mg_error_t *error)
{
    cutover_owner_t *o = c->owner;
    char renewal[40];
    double started = mg_now_s();
    mg_state_cutover_claim_t claim = {o->owner,  o->token,     renewal,
                                      o->ttl_ms, expect_token, expect_renewal};

    if (!random_hex(renewal, error) || !mg_state_cutover_owner_take(c->st, &claim, taken, error))
        return false;
    if (*taken)
        atomic_store(&o->valid_until_s, started + (double)o->ttl_ms / 1000.0 - margin_s(o->ttl_ms));
    return true;
}

/*
 * watch looks at the owner's renewal for its lease plus the margin: *alive
 * when it changed (renewed, released or taken by another), else the owner
 * is gone. A stop request ends the watch with an error.
 */
static bool
watch(cutover_t *c, const mg_state_cutover_owner_t *seen, bool *alive, mg_error_t *error)
{
    double until = mg_now_s() + (double)seen->ttl_ms / 1000.0 + margin_s(seen->ttl_ms);
    mg_state_cutover_owner_t now;

    *alive = false;
    MG_LOG_EVENT(
        MG_LOG_NOTICE, "cutover", "cutover.lease",
        MG_LOG_FIELDS(MG_LOG_STR("owner", seen->owner), MG_LOG_INT("lease_ms", seen->ttl_ms)),
        "the cutover is owned by %s: watching its lease for %.1f s", seen->owner,
        until - mg_now_s());
    while (mg_now_s() < until) {
        if (c->s->stop != NULL && atomic_load(c->s->stop) > 0)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                                "interrupted by a signal while waiting for the cutover's owner");
        usleep(WATCH_POLL_US);
        if (!mg_state_cutover_owner_get(c->st, &now, error))
            return false;
        if (strcmp(now.token, seen->token) != 0 || strcmp(now.renewal, seen->renewal) != 0) {
            *alive = true;
            return true;
        }
    }
    return true;
}

static bool
busy(cutover_t *c, const mg_state_cutover_owner_t *seen, mg_error_t *error)
{
    c->refused = true;
    return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                        "another migrate cutover owns the cutover on this target (%s, lease "
                        "renewed at %s): it is alive, this run touches nothing",
                        seen->owner, seen->renewed_at);
}

/* claim takes the ownership, at once or after watching a silent owner; c->refused when alive. */
static bool
claim(cutover_t *c, mg_error_t *error)
{
    mg_state_cutover_owner_t seen;
    bool taken = false, alive;

    for (int tries = 0; tries < 3 && !taken; tries++) {
        if (!mg_state_cutover_owner_get(c->st, &seen, error))
            return false;
        if (!seen.held) {
            if (!take(c, NULL, NULL, &taken, error))
                return false;
            continue; /* another run was quicker: look again */
        }
        if (!watch(c, &seen, &alive, error))
            return false;
        if (alive)
            return busy(c, &seen, error);
        if (!take(c, seen.token, seen.renewal, &taken, error))
            return false;
        if (taken)
            MG_LOG_EVENT(MG_LOG_WARNING, "cutover", "cutover.takeover",
                         MG_LOG_FIELDS(MG_LOG_STR("previous_owner", seen.owner)),
                         "took the cutover over from %s: its lease was not renewed for %.1f s",
                         seen.owner, (double)seen.ttl_ms / 1000.0 + margin_s(seen.ttl_ms));
        else
            return busy(c, &seen, error);
    }
    if (!taken)
        return busy(c, &seen, error);
    return true;
}

bool
mg_cutover__own(cutover_t *c, mg_error_t *error)
{
    cutover_owner_t *o = calloc(1, sizeof(*o));
    char host[128] = "?";

    if (o == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    gethostname(host, sizeof(host) - 1);
    snprintf(o->owner, sizeof(o->owner), "%s:%d", host, (int)getpid());
    o->ttl_ms = c->s->lease_ms > 0 ? c->s->lease_ms : 15000;
    o->target = c->s->target;
    o->schema = mg_state_schema(c->st);
    atomic_init(&o->stop, 0);
    atomic_init(&o->lost, 0);
    atomic_init(&o->valid_until_s, 0.0);
    c->owner = o;
    if (!random_hex(o->token, error) || !claim(c, error))
        return false;
    MG_LOG_EVENT(MG_LOG_INFO, "cutover", "cutover.lease",
                 MG_LOG_FIELDS(MG_LOG_STR("owner", o->owner), MG_LOG_INT("lease_ms", o->ttl_ms)),
                 "this run owns the cutover (lease %lld ms)", (long long)o->ttl_ms);
    o->started = pthread_create(&o->thread, NULL, renewer, o) == 0;
    if (!o->started)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "could not start the lease renewer thread");
    return true;
}

/* confirm renews on the cutover's own connection, reconnecting a lost target for up to 30 s. */
static bool
confirm(cutover_t *c, mg_error_t *error)
{
    PGconn *pg;
    bool ok;

    if (renew_on(c->owner, c->st, mg_now_s(), error))
        return true;
    pg = mg_state_conn(c->st);
    if (atomic_load(&c->owner->lost) || !mg_pg_lost(pg, error))
        return false;
    ok = mg_pg_reconnect(&pg, c->s->target, NULL, "cutover", error->message, 30, NULL, 0, error);
    mg_state_set_conn(c->st, pg);
    if (!ok)
        return false;
    mg_error_clear(error);
    return renew_on(c->owner, c->st, mg_now_s(), error);
}

bool
mg_cutover__owned(cutover_t *c, bool confirm_now, mg_error_t *error)
{
    cutover_owner_t *o = c->owner;

    if (o == NULL)
        return true; /* the unit tests run without a lease */
    /* a lapsed lease is confirmed at once too: the renewer may not have run yet (a process
     * stopped past its lease and continued), and the compare-and-set tells whether another
     * run took over (lost) or nobody did (renewed, carry on) */
    if ((confirm_now || mg_now_s() >= atomic_load(&o->valid_until_s)) && !atomic_load(&o->lost)) {
        mg_error_t e;
        mg_error_clear(&e);
        if (!confirm(c, &e) && !atomic_load(&o->lost))
            MG_LOG(MG_LOG_WARNING, "cutover", "could not renew the cutover's lease: %s", e.message);
    }
    if (atomic_load(&o->lost)) {
        c->lost = true;
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "this run lost the cutover to another migrate cutover (its lease "
                            "lapsed and the other run took over): it touches nothing more, "
                            "neither the source's freeze nor the endpoint");
    }
    if (mg_now_s() >= atomic_load(&o->valid_until_s))
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_BUSY,
                            "the cutover's lease of %.1f s lapsed (the target could not be "
                            "reached to renew it): this run may no longer act for it",
                            (double)o->ttl_ms / 1000.0);
    return true;
}

void
mg_cutover__disown(cutover_t *c)
{
    cutover_owner_t *o = c->owner;
    mg_error_t e;

    if (o == NULL)
        return;
    atomic_store(&o->stop, 1);
    if (o->started)
        pthread_join(o->thread, NULL);
    mg_error_clear(&e);
    if (!atomic_load(&o->lost) && !mg_state_cutover_owner_release(c->st, &e))
        mg_log_error(MG_LOG_WARNING, "cutover", &e);
    free(o);
    c->owner = NULL;
}
