/*
 * ha/src/ha_fence.c - fencing: the primary's write deadline (its lease, or
 * the failsafe grant of its peers), the checks made against it before
 * Postgres may take writes, and the watchdog, a child process of the daemon
 * that stops Postgres when the deadline passes without the daemon moving it
 * (daemon stopped by SIGSTOP, stuck, or killed).
 *
 * The daemon writes int64 deadlines (monotonic ms, 0 = disarmed) into a
 * pipe. When the pipe closes (the daemon died) the child still enforces
 * the last deadline, then exits. The deadline lies before the lease can
 * expire in etcd, so no other node can be promoted while this Postgres
 * still takes writes.
 */
#include "ha_daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WATCH_SLICE_MS 100 /* the watchdog looks at the clock at least this often while armed */

/* fence_postgres stops the postmaster of data_dir: immediate shutdown, then SIGKILL. */
static void
fence_postgres(const char *data_dir)
{
    long pid = (long)mg_ha__postmaster_pid(data_dir);

    if (pid <= 1 || !mg_ha__proc_alive((pid_t)pid, 0))
        return;
    kill((pid_t)pid, SIGQUIT);
    for (int i = 0; i < 40 && mg_ha__proc_alive((pid_t)pid, 0); i++) {
        struct timespec ts = {0, 50 * 1000000L};

        nanosleep(&ts, NULL);
    }
    if (mg_ha__proc_alive((pid_t)pid, 0))
        kill((pid_t)pid, SIGKILL);
    fprintf(stderr,
            "{\"level\":\"warning\",\"module\":\"ha\",\"event\":\"ha.fenced\",\"pid\":%d,"
            "\"message\":\"watchdog: write deadline passed, stopped Postgres (pid %ld)\"}\n",
            (int)getpid(), pid);
}

/* state_path is where a watchdog says what it enforces: <data_dir>.watchdog, beside the data dir.
 */
static void
state_path(const char *data_dir, char *out, size_t outsz)
{
    size_t n = strlen(data_dir);

    while (n > 1 && data_dir[n - 1] == '/')
        n--;
    snprintf(out, outsz, "%.*s.watchdog", (int)n, data_dir);
}

/*
 * publish_deadline writes "pid starttime deadline" (boot clock) for the
 * next daemon on this data dir: after a fast restart it adopts the deadline
 * and ends this watchdog, instead of this one killing the Postgres the new
 * daemon kept (issue 16, finding 16). Best effort, no fsync: it only has to
 * outlive a process, not the machine (Postgres does not either).
 */
static void
publish_deadline(const char *data_dir, int64_t deadline)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], text[96];
    int fd, n;

    state_path(data_dir, path, sizeof(path));
    if (deadline == 0) {
        unlink(path);
        return;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    n = snprintf(text, sizeof(text), "%d %llu %lld\n", (int)getpid(),
                 (unsigned long long)mg_ha__proc_starttime(getpid()), (long long)deadline);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    if (write(fd, text, (size_t)n) == n && close(fd) == 0)
        (void)rename(tmp, path);
    else
        unlink(tmp);
}

int64_t
mg_ha__watchdog_adopt(mg_ha_watchdog_t *w, const char *data_dir)
{
    char path[PATH_MAX];
    long pid = 0;
    unsigned long long start = 0;
    long long deadline = 0;
    FILE *f;

    state_path(data_dir, path, sizeof(path));
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %llu %lld", &pid, &start, &deadline) != 3)
        pid = 0;
    fclose(f);
    if (pid <= 1 || pid == (long)w->pid || start == 0 || deadline <= 0 ||
        !mg_ha__proc_alive((pid_t)pid, start))
        return 0;
    /* ours first, then the orphan goes: the fence never lapses in between */
    mg_ha__watchdog_arm(w, deadline);
    kill((pid_t)pid, SIGTERM);
    for (int i = 0; i < 50 && mg_ha__proc_alive((pid_t)pid, start); i++) {
        struct timespec ts = {0, 20 * 1000000L};

        nanosleep(&ts, NULL);
    }
    return deadline;
}

static void
watchdog_main(int fd, const char *data_dir)
{
    int64_t deadline = 0;
    bool open_pipe = true;

    for (;;) {
        int64_t now = mg_ha__now_ms();
        /*
         * poll() sleeps on the monotonic clock, which stops during a suspend;
         * the deadline is on the boot clock, which does not: wake at least
         * every WATCH_SLICE_MS, so a resume past the deadline fences at once.
         */
        int64_t left = deadline > now ? deadline - now : 0;
        int timeout = deadline == 0 ? -1 : (int)(left < WATCH_SLICE_MS ? left : WATCH_SLICE_MS);
        struct pollfd p = {fd, POLLIN, 0};
        int r;

        if (!open_pipe) {
            if (deadline == 0)
                return;
            p.fd = -1;
        }
        r = poll(&p, 1, timeout);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0 && open_pipe) {
            int64_t v;
            ssize_t n = read(fd, &v, sizeof(v));

            if (n == (ssize_t)sizeof(v)) {
                if (v != deadline)
                    publish_deadline(data_dir, v);
                deadline = v;
            } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                open_pipe = false;
            }
            continue;
        }
        if (deadline != 0 && mg_ha__now_ms() >= deadline) {
            fence_postgres(data_dir);
            deadline = 0;
            publish_deadline(data_dir, 0);
        }
    }
}

bool
mg_ha__watchdog_start(mg_ha_watchdog_t *w, const char *data_dir, mg_error_t *error)
{
    int fds[2];
    pid_t pid;

    w->pid = 0;
    w->fd = -1;
    if (pipe(fds) != 0)
        return mg_error_set_errno(error, errno, "could not create the watchdog pipe");
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return mg_error_set_errno(error, errno, "could not fork the watchdog");
    }
    if (pid == 0) {
        long maxfd = sysconf(_SC_OPEN_MAX);

        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_IGN); /* Ctrl-C of the daemon: it disarms us itself */
        for (long fd = 3; fd < (maxfd > 0 && maxfd < 65536 ? maxfd : 1024); fd++)
            if (fd != fds[0])
                close((int)fd);
        watchdog_main(fds[0], data_dir);
        _exit(0);
    }
    close(fds[0]);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    w->pid = pid;
    w->fd = fds[1];
    return true;
}

void
mg_ha__watchdog_arm(mg_ha_watchdog_t *w, int64_t deadline_ms)
{
    if (w->fd >= 0 && write(w->fd, &deadline_ms, sizeof(deadline_ms)) < 0)
        (void)0; /* the child is gone: nothing left to fence with */
}

void
mg_ha__watchdog_stop(mg_ha_watchdog_t *w)
{
    if (w->fd >= 0) {
        mg_ha__watchdog_arm(w, 0);
        close(w->fd); /* EOF with no deadline: the child exits */
        w->fd = -1;
    }
    if (w->pid > 0) {
        for (int i = 0; i < 100; i++) {
            struct timespec ts = {0, 20 * 1000000L};

            if (waitpid(w->pid, NULL, WNOHANG) == w->pid) {
                w->pid = 0;
                return;
            }
            nanosleep(&ts, NULL);
        }
        kill(w->pid, SIGKILL);
        (void)waitpid(w->pid, NULL, 0);
        w->pid = 0;
    }
}

/* ------------------------------------------------------------------------
 * The daemon's side: the write deadline
 * ------------------------------------------------------------------------ */

int64_t
mg_ha__writable_until(const mg_ha_daemon_t *d)
{
    return mg_ha_fence_deadline(d->key_ok_ms, d->failsafe_until_ms, d->conf->ttl_ms,
                                d->conf->retry_ms);
}

bool
mg_ha__may_become_primary(mg_ha_daemon_t *d, mg_error_t *error)
{
    int64_t until;
    bool ok;

    mg_ha__keeper_lock(d); /* an action runs: the keeper may be moving the deadline */
    until = mg_ha__writable_until(d);
    ok = until > 0 && mg_ha__now_ms() < until;
    if (ok) {
        d->write_deadline_ms = until;
        d->wd_deadline_ms = until + d->conf->retry_ms / 2;
        mg_ha__watchdog_arm(&d->watchdog, d->wd_deadline_ms);
    } else {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                     "leader lease too old to take writes (renewed %lldms ago)",
                     (long long)(mg_ha__now_ms() - d->key_ok_ms));
    }
    mg_ha__keeper_unlock(d);
    return ok;
}

int64_t
mg_ha__watchdog_deadline(bool may_write, int64_t writable_until, int64_t armed, int64_t margin_ms)
{
    if (!may_write)
        return 0;
    if (writable_until > 0)
        return writable_until + margin_ms / 2;
    return armed; /* no key to move it with: the last deadline stands, never a later one */
}

/*
 * pg_may_write says whether the local Postgres may take writes: it runs and
 * its data directory is no standby's (a primary, or one in crash recovery).
 */
static bool
pg_may_write(mg_ha_daemon_t *d)
{
    return mg_ha__pg_running(&d->pg) > 0 && !mg_ha__pg_is_standby_dir(&d->pg);
}

void
mg_ha__arm_watchdog(mg_ha_daemon_t *d)
{
    bool may_write = d->state == MG_HA_STATE_PRIMARY || pg_may_write(d);
    int64_t until = mg_ha__writable_until(d);

    d->wd_deadline_ms =
        mg_ha__watchdog_deadline(may_write, until, d->wd_deadline_ms, d->conf->retry_ms);
    d->write_deadline_ms = mg_ha__write_deadline(may_write, until, d->write_deadline_ms);
    mg_ha__watchdog_arm(&d->watchdog, d->wd_deadline_ms);
}

void
mg_ha__stop_writes(mg_ha_daemon_t *d)
{
    pthread_mutex_lock(&d->shared.lock);
    d->shared.demoting = true;
    pthread_mutex_unlock(&d->shared.lock);
}

void
mg_ha__fence_if_due(mg_ha_daemon_t *d)
{
    int64_t now = mg_ha__now_ms(), until = mg_ha__writable_until(d);
    mg_error_t error;
    char msg[200];
    mg_ha_event_ctx_t ctx = {"primary", "demoted", "fence", NULL};

    /* also a Postgres made writable outside state primary (finding 7): mg_ha__fence_due */
    if (!mg_ha__fence_due(d->state == MG_HA_STATE_PRIMARY || pg_may_write(d), until,
                          d->write_deadline_ms, now))
        return;
    if (until <= 0)
        until = d->write_deadline_ms; /* for the message */
    mg_ha__stop_writes(d);
    if (!mg_ha__pg_stop_now(&d->pg, true, &error))
        mg_log_error(MG_LOG_ERROR, MODULE, &error);
    if (d->state == MG_HA_STATE_PRIMARY)
        d->state = MG_HA_STATE_DEMOTED;
    d->write_deadline_ms = 0;
    snprintf(msg, sizeof(msg),
             "fenced: could not renew the leader lease and the peers did not all grant failsafe "
             "(%" PRId64 "ms past the write deadline)",
             now - until);
    mg_ha__event(d, MG_LOG_WARNING, "ha.fenced", &ctx, msg);
}
