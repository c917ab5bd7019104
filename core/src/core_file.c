/*
 * core/src/core_file.c - whole-file reads, and the one atomic file write:
 * a temp file beside the target, fsync, rename over it, fsync of the
 * folder; the temp file is removed on every failure.
 */
#include "mg/core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* write_all writes len bytes to fd, through short writes and EINTR. */
static bool
write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* fsync_folder makes the rename of a file in path's folder durable. */
static bool
fsync_folder(const char *path, mg_error_t *error)
{
    char dir[PATH_MAX];
    int dfd;

    snprintf(dir, sizeof(dir), "%s", path);
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return mg_error_set_errno(error, errno, "could not open the folder of \"%s\"", path);
    if (fsync(dfd) != 0) {
        int e = errno;
        close(dfd);
        return mg_error_set_errno(error, e, "could not fsync the folder of \"%s\"", path);
    }
    close(dfd);
    return true;
}

/*
 * set_mode_owner gives the temp file (fd) the mode and owner asked for, or
 * those of the file it replaces (keep): a file the operator prepared (say,
 * readable by an application's group) keeps them across the rename.
 */
static bool
set_mode_owner(int fd, const char *tmp, const char *path, const mg_file_write_options_t *o,
               mg_error_t *error)
{
    struct stat old;

    /* lstat: only a regular file hands on its mode and owner, never what a link points at */
    if (o->mode < 0 && lstat(path, &old) == 0 && S_ISREG(old.st_mode)) {
        if (fchown(fd, old.st_uid, old.st_gid) != 0 && errno != EPERM)
            return mg_error_set_errno(error, errno, "could not give \"%s\" the owner of \"%s\"",
                                      tmp, path);
        if (fchmod(fd, old.st_mode & 07777) != 0)
            return mg_error_set_errno(error, errno, "could not give \"%s\" the mode of \"%s\"", tmp,
                                      path);
    }
    if (o->mode >= 0 && fchmod(fd, (mode_t)o->mode) != 0)
        return mg_error_set_errno(error, errno, "could not set the mode of \"%s\"", tmp);
    if ((o->uid >= 0 || o->gid >= 0) && fchown(fd, (uid_t)o->uid, (gid_t)o->gid) != 0)
        return mg_error_set_errno(error, errno, "could not set the owner of \"%s\"", tmp);
    return true;
}

bool
mg_file_write_atomic(const char *path, const void *data, size_t len,
                     const mg_file_write_options_t *options, mg_error_t *error)
{
    static const mg_file_write_options_t defaults = {.mode = -1, .uid = -1, .gid = -1};
    const mg_file_write_options_t *o = options != NULL ? options : &defaults;
    char tmp[PATH_MAX];
    int fd;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_LIMIT,
                            "could not write \"%s\": path too long", path);
    /*
     * a new file may hold a secret: it is created 0600 and opened up only on
     * request. The temp name is random and created exclusively (mkostemp:
     * O_CREAT|O_EXCL, which never follows a link), so a file or link planted
     * beside path in a shared folder is never opened, truncated or re-owned.
     */
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return mg_error_set_errno(error, errno, "could not create \"%s\"", tmp);
    if (!set_mode_owner(fd, tmp, path, o, error))
        goto fail;
    if (!write_all(fd, data, len) || fsync(fd) != 0) {
        mg_error_set_errno(error, errno, "could not write \"%s\"", tmp);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        mg_error_set_errno(error, errno, "could not close \"%s\"", tmp);
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        mg_error_set_errno(error, errno, "could not rename \"%s\" to \"%s\"", tmp, path);
        goto fail;
    }
    return fsync_folder(path, error);
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return false;
}

bool
mg_file_read(const char *path, mg_buf_t *out, mg_error_t *error)
{
    char chunk[65536];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return mg_error_set_errno(error, errno, "could not open \"%s\"", path);
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return mg_error_set_errno(error, e, "could not read \"%s\"", path);
        }
        if (n == 0)
            break;
        if (!mg_buf_append(out, chunk, (size_t)n, error)) {
            close(fd);
            mg_error_prefix(error, "could not read \"%s\"", path);
            return false;
        }
    }
    close(fd);
    return mg_buf_reserve(out, 0, error); /* data is allocated and NUL-terminated */
}
