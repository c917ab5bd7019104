/*
 * tests/unit/core/test_file.c - the atomic file write: content, modes, an
 * existing file's mode kept, no temp file left behind on failure, nothing
 * planted beside the target followed (issue 17, point 8); whole file reads.
 */
#include "mg/core.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char dir[256];

static int
setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/mg_test_file.XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

/* count_entries returns the number of names in dir other than . and .. */
static int
count_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int
teardown(void **state)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
test_write_read_replace(void **state)
{
    char path[300];
    mg_buf_t b;
    mg_error_t e;
    struct stat st;

    snprintf(path, sizeof(path), "%s/a.txt", dir);
    assert_true(mg_file_write_atomic(path, "first\n", 6, NULL, &e));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600); /* new file: it may hold a secret */
    mg_buf_init(&b, 1024);
    assert_true(mg_file_read(path, &b, &e));
    assert_string_equal(b.data, "first\n");
    /* an existing file keeps the mode the operator gave it */
    assert_int_equal(chmod(path, 0640), 0);
    assert_true(mg_file_write_atomic(path, "second", 6, NULL, &e));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    mg_buf_reset(&b);
    assert_true(mg_file_read(path, &b, &e));
    assert_string_equal(b.data, "second");
    /* an explicit mode wins */
    mg_file_write_options_t o = {.mode = 0644, .uid = -1, .gid = -1};
    assert_true(mg_file_write_atomic(path, "", 0, &o, &e));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(count_entries(dir), 1); /* no temp file left */
    mg_buf_cleanup(&b);
}

static void
test_failure_leaves_no_temp_and_old_content(void **state)
{
    char path[300];
    mg_buf_t b;
    mg_error_t e;

    /* the target is a non-empty folder: the rename fails after the temp file was written */
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/sub/x", dir);
    assert_true(mg_file_write_atomic(path, "keep", 4, NULL, &e));
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_false(mg_file_write_atomic(path, "data", 4, NULL, &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_SYSTEM);
    assert_non_null(strstr(e.message, "could not rename"));
    assert_int_equal(count_entries(dir), 1); /* only "sub": the temp file is gone */
    /* a folder that does not exist: nothing is created */
    snprintf(path, sizeof(path), "%s/nope/y", dir);
    assert_false(mg_file_write_atomic(path, "data", 4, NULL, &e));
    assert_int_equal(e.code, ENOENT);
    mg_buf_init(&b, 1024);
    assert_false(mg_file_read(path, &b, &e));
    assert_non_null(strstr(e.message, "could not open"));
    /* a read over the buffer's cap fails and says so */
    snprintf(path, sizeof(path), "%s/sub/x", dir);
    mg_buf_init(&b, 2);
    assert_false(mg_file_read(path, &b, &e));
    assert_int_equal(e.code, MG_ERROR_CODE_LIMIT);
    mg_buf_cleanup(&b);
}

/* slurp reads path into out (NUL-terminated). */
static void
slurp(const char *path, char *out, size_t outsz)
{
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(out, 1, outsz - 1, f);
    out[n] = '\0';
    fclose(f);
}

/*
 * A link planted where the temp file used to be made (path.tmp.<pid>, a
 * name anyone could guess in a shared folder) pointed the write, and the
 * re-owning after it, at any file; a link at path itself lent its target's
 * mode and owner to the new file.
 */
static void
test_planted_links_are_not_followed(void **state)
{
    char path[300], victim[300], planted[340], text[64];
    struct stat st;
    mg_error_t e;

    snprintf(victim, sizeof(victim), "%s/victim", dir);
    assert_true(mg_file_write_atomic(victim, "victim", 6, NULL, &e));
    assert_int_equal(chmod(victim, 0644), 0);
    snprintf(path, sizeof(path), "%s/endpoint", dir);
    snprintf(planted, sizeof(planted), "%s.tmp.%d", path, (int)getpid());
    assert_int_equal(symlink(victim, planted), 0);
    assert_true(mg_file_write_atomic(path, "secret", 6, NULL, &e));
    slurp(victim, text, sizeof(text));
    assert_string_equal(text, "victim");
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    slurp(path, text, sizeof(text));
    assert_string_equal(text, "secret");
    /* a link at path is replaced by the file, 0600, and what it points at is left alone */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(victim, path), 0);
    assert_true(mg_file_write_atomic(path, "secret", 6, NULL, &e));
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    slurp(victim, text, sizeof(text));
    assert_string_equal(text, "victim");
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_read_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_leaves_no_temp_and_old_content, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_planted_links_are_not_followed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
