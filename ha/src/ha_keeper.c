/*
 * ha/src/ha_keeper.c - keeps the node's lease alive while an action runs.
 *
 * Actions can take long: a Postgres start (up to 120 s), pg_promote (60 s),
 * the CHECKPOINT after it, a stop, pg_rewind, pg_basebackup. The loop does
 * not renew its lease meanwhile, so the lease and the leader key it holds
 * lapsed, and the node's own watchdog killed slow crash recoveries and
 * promotions (issue 16, finding 10; in synchronous mode a livelock: the
 * candidate with a replay backlog was killed while it promoted). The
 * keeper thread, with its own etcd client, renews the lease every
 * loop_wait while an action runs, moves the write deadline with it when
 * the lease holds `leader` for us, and extends the watchdog if it is armed.
 * It never arms it and never takes a key: the action and the loop decide.
 */
#include "ha_daemon.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* keeper_main renews the lease every loop_wait while an action runs. */
static void *
keeper_main(void *arg)
{
    mg_ha_daemon_t *d = arg;
    mg_ha_keeper_t *k = &d->keeper;

    pthread_mutex_lock(&k->lock);
    for (;;) {
        struct timespec until;
        int64_t lease, sent;
        bool ok;
        mg_error_t error;

        while (!k->active && !k->stop)
            pthread_cond_wait(&k->cond, &k->lock);
        if (k->stop)
            break;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += d->conf->loop_ms / 1000;
        until.tv_nsec += (d->conf->loop_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (k->active && !k->stop &&
               pthread_cond_timedwait(&k->cond, &k->lock, &until) != ETIMEDOUT)
            ;
        if (!k->active || k->stop)
            continue;
        lease = d->lease;
        pthread_mutex_unlock(&k->lock);
        sent = mg_ha__now_ms();
        mg_etcd_deadline_set(k->etcd, d->conf->retry_ms);
        ok = lease != 0 && mg_etcd_lease_keepalive(k->etcd, lease, NULL, &error);
        pthread_mutex_lock(&k->lock);
        if (!ok || !k->active || d->lease != lease)
            continue;
        d->lease_ok_ms = sent;
        if (k->key_held && d->key_ok_ms > 0) {
            d->key_ok_ms = sent;
            if (d->wd_deadline_ms > 0) { /* armed for writes: follow the new deadline */
                d->wd_deadline_ms = mg_ha__writable_until(d) + d->conf->retry_ms / 2;
                mg_ha__watchdog_arm(&d->watchdog, d->wd_deadline_ms);
            }
        }
        pthread_mutex_lock(&d->shared.lock);
        d->shared.lease_ok_ms = d->lease_ok_ms;
        d->shared.writable_until_ms = mg_ha__writable_until(d);
        pthread_mutex_unlock(&d->shared.lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

bool
mg_ha__keeper_start(mg_ha_daemon_t *d, const mg_etcd_options_t *options, mg_error_t *error)
{
    mg_ha_keeper_t *k = &d->keeper;
    int rc;

    k->etcd = mg_etcd_new(options, error);
    if (k->etcd == NULL)
        return false;
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    rc = pthread_create(&k->thread, NULL, keeper_main, d);
    if (rc != 0) {
        mg_etcd_destroy(k->etcd);
        k->etcd = NULL;
        return mg_error_set_errno(error, rc, "could not start the lease keeper thread");
    }
    k->running = true;
    return true;
}

void
mg_ha__keeper_begin(mg_ha_daemon_t *d)
{
    mg_ha_keeper_t *k = &d->keeper;

    if (!k->running)
        return;
    pthread_mutex_lock(&k->lock);
    k->key_held = strcmp(d->view.leader, d->conf->name) == 0 && d->view.leader_lease == d->lease &&
                  d->lease != 0;
    k->active = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
}

void
mg_ha__keeper_end(mg_ha_daemon_t *d)
{
    mg_ha_keeper_t *k = &d->keeper;

    if (!k->running)
        return;
    pthread_mutex_lock(&k->lock);
    k->active = false;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
}

void
mg_ha__keeper_key(mg_ha_daemon_t *d, bool held, int64_t key_ok_ms)
{
    mg_ha_keeper_t *k = &d->keeper;

    if (k->running)
        pthread_mutex_lock(&k->lock);
    k->key_held = held;
    d->key_ok_ms = key_ok_ms;
    if (k->running)
        pthread_mutex_unlock(&k->lock);
}

void
mg_ha__keeper_stop(mg_ha_daemon_t *d)
{
    mg_ha_keeper_t *k = &d->keeper;

    if (!k->running)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    mg_etcd_destroy(k->etcd);
    k->etcd = NULL;
    k->running = false;
}

void
mg_ha__keeper_lock(mg_ha_daemon_t *d)
{
    if (d->keeper.running)
        pthread_mutex_lock(&d->keeper.lock);
}

void
mg_ha__keeper_unlock(mg_ha_daemon_t *d)
{
    if (d->keeper.running)
        pthread_mutex_unlock(&d->keeper.lock);
}
