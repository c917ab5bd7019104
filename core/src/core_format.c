/*
 * core/src/core_format.c - numbers for people: "1.2 GB", "3.4M".
 */
#include "mg/core.h"

const char *
mg_format_bytes(int64_t n, char *buf, size_t bufsz)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, bufsz, "%lld B", (long long)n);
    else
        snprintf(buf, bufsz, "%.1f %s", v, units[u]);
    return buf;
}

const char *
mg_format_count(int64_t n, char *buf, size_t bufsz)
{
    if (n >= 1000000000)
        snprintf(buf, bufsz, "%.1fG", (double)n / 1e9);
    else if (n >= 1000000)
        snprintf(buf, bufsz, "%.1fM", (double)n / 1e6);
    else if (n >= 10000)
        snprintf(buf, bufsz, "%.1fk", (double)n / 1e3);
    else
        snprintf(buf, bufsz, "%lld", (long long)n);
    return buf;
}
