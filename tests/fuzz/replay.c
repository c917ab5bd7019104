/*
 * tests/fuzz/replay.c - runs a fuzz target's LLVMFuzzerTestOneInput over
 * every file named on the command line (directories: every file in them),
 * for builds without libFuzzer: the corpus and its regression inputs run
 * in `make test` with any compiler. A finding aborts, as under libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: could not read \"%s\"\n", path);
        if (fp != NULL)
            fclose(fp);
        return 1;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        fprintf(stderr, "replay: could not read \"%s\"\n", path);
        free(buf);
        fclose(fp);
        return 1;
    }
    fclose(fp);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int
run_path(const char *path, int *count)
{
    struct stat st;
    DIR *dir;
    struct dirent *e;
    int bad = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: could not stat \"%s\"\n", path);
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    if ((dir = opendir(path)) == NULL) {
        fprintf(stderr, "replay: could not open directory \"%s\"\n", path);
        return 1;
    }
    while ((e = readdir(dir)) != NULL) {
        char child[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
        bad |= run_path(child, count);
    }
    closedir(dir);
    return bad;
}

int
main(int argc, char **argv)
{
    int bad = 0, count = 0;

    for (int i = 1; i < argc; i++)
        bad |= run_path(argv[i], &count);
    printf("replay: %d inputs\n", count);
    return bad != 0 || count == 0;
}
