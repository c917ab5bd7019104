/*
 * ha/src/ha_proc.c - child processes of pgdaemon: Postgres programs run as
 * an unprivileged OS user when the daemon is root, with the daemon's own
 * environment (so test harnesses can find them), in their own session.
 */
#include "ha_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int64_t
mg_ha__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mg_ha__wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
mg_ha__runas_resolve(const char *user, mg_ha_runas_t *runas, mg_error_t *error)
{
    struct passwd *pw;

    memset(runas, 0, sizeof(*runas));
    if (user == NULL || user[0] == '\0') {
        if (geteuid() == 0)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "option \"pg_user\" must name an unprivileged OS user when "
                                "pgdaemon runs as root (Postgres refuses to run as root)");
        return true;
    }
    pw = getpwnam(user);
    if (pw == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                            "invalid value for option \"pg_user\": no OS user \"%s\"", user);
    if (pw->pw_uid == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "invalid value for option \"pg_user\": \"%s\" is root", user);
    if (pw->pw_uid != geteuid()) {
        if (geteuid() != 0)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "invalid value for option \"pg_user\": switching to \"%s\" "
                                "needs root",
                                user);
        runas->switch_user = true;
    }
    runas->uid = pw->pw_uid;
    runas->gid = pw->pw_gid;
    snprintf(runas->name, sizeof(runas->name), "%s", user);
    return true;
}

/* child_setup runs in the child between fork and exec; exits 127 on failure. */
static void
child_setup(const mg_ha_runas_t *runas, int out_fd, int err_fd)
{
    int devnull = open("/dev/null", O_RDONLY);

    setsid();
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    if (out_fd >= 0)
        dup2(out_fd, 1);
    if (err_fd >= 0)
        dup2(err_fd, 2);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    {
        sigset_t all;

        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
    }
    if (runas != NULL && runas->switch_user) {
        if (setgid(runas->gid) != 0 || initgroups(runas->name, runas->gid) != 0 ||
            setuid(runas->uid) != 0) {
            dprintf(2, "pgdaemon: could not switch to user \"%s\": %s\n", runas->name,
                    strerror(errno));
            _exit(127);
        }
    }
}

static char **
merged_env(char *const extra_env[])
{
    size_t n = 0, m = 0, i, j = 0;
    char **env;

    while (environ != NULL && environ[n] != NULL)
        n++;
    while (extra_env != NULL && extra_env[m] != NULL)
        m++;
    env = calloc(n + m + 1, sizeof(*env));
    if (env == NULL)
        return NULL;
    for (i = 0; i < m; i++)
        env[j++] = extra_env[i];
    for (i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;

        for (size_t k = 0; k < m; k++)
            if (strncmp(extra_env[k], environ[i], klen) == 0 && extra_env[k][klen] == '=')
                overridden = true;
        if (!overridden)
            env[j++] = environ[i];
    }
    env[j] = NULL;
    return env;
}

static pid_t
spawn_fds(const mg_ha_runas_t *runas, char *const argv[], char *const extra_env[], int out_fd,
          int err_fd, mg_error_t *error)
{
    char **env = merged_env(extra_env);
    pid_t pid;

    if (env == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return -1;
    }
    if (access(argv[0], X_OK) != 0) {
        int e = errno;

        free(env);
        mg_error_set_errno(error, e, "could not execute \"%s\"", argv[0]);
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        int e = errno;

        free(env);
        mg_error_set_errno(error, e, "could not fork to run \"%s\"", argv[0]);
        return -1;
    }
    if (pid == 0) {
        child_setup(runas, out_fd, err_fd);
        execve(argv[0], argv, env);
        dprintf(2, "pgdaemon: could not execute \"%s\": %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(env);
    return pid;
}

static int
open_log(const char *log_path)
{
    return open(log_path ? log_path : "/dev/null", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

pid_t
mg_ha__spawn(const mg_ha_runas_t *runas, char *const argv[], char *const extra_env[],
             const char *log_path, mg_error_t *error)
{
    int fd = open_log(log_path);
    pid_t pid;

    if (fd < 0)
        return mg_error_set_errno(error, errno, "could not open log file \"%s\"",
                                  log_path ? log_path : "/dev/null"),
               -1;
    if (runas != NULL && runas->switch_user && log_path != NULL)
        (void)fchown(fd, runas->uid, runas->gid);
    pid = spawn_fds(runas, argv, extra_env, fd, fd, error);
    close(fd);
    return pid;
}

bool
mg_ha__run(const mg_ha_runas_t *runas, char *const argv[], char *const extra_env[],
           const char *log_path, int64_t timeout_ms, mg_buf_t *out, mg_error_t *error)
{
    int fd = open_log(log_path);
    int pipefd[2] = {-1, -1};
    int64_t deadline = mg_ha__now_ms() + timeout_ms;
    pid_t pid;
    int status = 0;
    bool exited = false;

    if (fd < 0)
        return mg_error_set_errno(error, errno, "could not open log file \"%s\"",
                                  log_path ? log_path : "/dev/null");
    if (out != NULL && pipe2(pipefd, O_CLOEXEC) != 0) {
        close(fd);
        return mg_error_set_errno(error, errno, "could not create a pipe");
    }
    pid = spawn_fds(runas, argv, extra_env, out != NULL ? pipefd[1] : fd, fd, error);
    close(fd);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (pid < 0) {
        if (pipefd[0] >= 0)
            close(pipefd[0]);
        return false;
    }
    while (!exited) {
        int64_t left = deadline - mg_ha__now_ms();
        pid_t w;

        if (pipefd[0] >= 0) {
            struct pollfd p = {pipefd[0], POLLIN, 0};

            if (poll(&p, 1, left > 100 ? 100 : (left > 0 ? (int)left : 0)) > 0) {
                char chunk[4096];
                ssize_t n = read(pipefd[0], chunk, sizeof(chunk));

                if (n > 0)
                    (void)mg_buf_append(out, chunk, (size_t)n, NULL);
                else {
                    close(pipefd[0]);
                    pipefd[0] = -1;
                }
            }
        } else {
            struct timespec ts = {0, 20 * 1000000L};

            nanosleep(&ts, NULL);
        }
        w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            exited = true;
        else if (mg_ha__now_ms() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (pipefd[0] >= 0)
                close(pipefd[0]);
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "\"%s\" did not finish within %lldms and was killed", argv[0],
                                (long long)timeout_ms);
        }
    }
    while (pipefd[0] >= 0) {
        char chunk[4096];
        ssize_t n = read(pipefd[0], chunk, sizeof(chunk));

        if (n > 0) {
            (void)mg_buf_append(out, chunk, (size_t)n, NULL);
        } else {
            close(pipefd[0]);
            pipefd[0] = -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    if (WIFEXITED(status))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "\"%s\" failed with exit status %d%s%s", argv[0], WEXITSTATUS(status),
                            log_path ? "; see " : "", log_path ? log_path : "");
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                        "\"%s\" was killed by signal %d", argv[0],
                        WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

uint64_t
mg_ha__proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    char *p;
    unsigned long long st = 0;
    char state = '?';

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    /* fields after ')': 3 state ... 22 starttime */
    if (sscanf(p + 2,
               "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
               "%*d %llu",
               &state, &st) != 2)
        return 0;
    if (state == 'Z' || state == 'X')
        return 0;
    return (uint64_t)st;
}

bool
mg_ha__proc_alive(pid_t pid, uint64_t starttime)
{
    uint64_t st;

    if (pid <= 0)
        return false;
    st = mg_ha__proc_starttime(pid);
    return st != 0 && (starttime == 0 || st == starttime);
}

bool
mg_ha__rmtree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            char child[PATH_MAX];
            struct stat st;

            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
                mg_ha__rmtree(child);
            else
                unlink(child);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
    return access(path, F_OK) != 0;
}

bool
mg_ha__write_file(const char *path, const char *text, size_t len, int mode,
                  const mg_ha_runas_t *runas, mg_error_t *error)
{
    bool chown = runas != NULL && runas->switch_user;
    mg_file_write_options_t o = {mode, chown ? (long)runas->uid : -1,
                                 chown ? (long)runas->gid : -1};

    return mg_file_write_atomic(path, text, len, &o, error);
}

bool
mg_ha__lsn_parse(const char *text, uint64_t *lsn)
{
    unsigned int hi, lo;
    char extra;

    if (text == NULL || sscanf(text, "%X/%X%c", &hi, &lo, &extra) != 2)
        return false;
    *lsn = ((uint64_t)hi << 32) | lo;
    return true;
}

pid_t
mg_ha__postmaster_pid(const char *data_dir)
{
    char path[PATH_MAX + 32];
    FILE *f;
    long pid = 0;

    snprintf(path, sizeof(path), "%s/postmaster.pid", data_dir);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1 || pid < 0)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}
