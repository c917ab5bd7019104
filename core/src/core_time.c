/*
 * core/src/core_time.c - the monotonic clock every timing and deadline uses.
 */
#include "mg/core.h"

#include <time.h>

double
mg_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
