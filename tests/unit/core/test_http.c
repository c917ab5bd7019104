/*
 * tests/unit/core/test_http.c - the HTTP endpoint helper keeps its bounds
 * (issue 17, item 10): beyond max_connections or max_per_client the
 * connection open longest is closed, every connection is closed
 * connection_timeout_ms after it was accepted, and a fresh request is
 * answered through a flood of idle clients (the old helper, one select()
 * thread without a limit, refused it after ~1100 idle connections).
 */
#include "mg/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
handler(void *userdata, const char *path, const mg_http_request_t *req, mg_http_reply_t *reply)
{
    (void)userdata;
    (void)req;
    reply->status = 200;
    (void)mg_buf_printf(&reply->body, NULL, "ok %s\n", path);
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* dial connects from source (127.0.0.x) to the server; -1 on failure. */
static int
dial(const char *source, uint16_t port)
{
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    inet_pton(AF_INET, source, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    dst.sin_port = htons(port);
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* get asks for /x from source and returns the HTTP status (0: no answer within 2 s). */
static int
get(const char *source, uint16_t port)
{
    static const char req[] = "GET /x HTTP/1.0\r\n\r\n";
    char buf[256];
    size_t got = 0;
    int fd = dial(source, port), status = 0;
    int64_t until = now_ms() + 2000;

    if (fd < 0 || write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    while (got < sizeof(buf) - 1 && now_ms() < until) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 100) <= 0)
            continue;
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(fd);
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* closed_by_server: the server closed fd (EOF or reset), waiting up to ms. */
static bool
closed_by_server(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;

    if (poll(&p, 1, ms) <= 0)
        return false;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static uint64_t
stat_wait(mg_http_server_t *server, size_t field, uint64_t want)
{
    mg_http_stats_t st;
    int64_t until = now_ms() + 3000;
    uint64_t v;

    do {
        mg_http_server_stats(server, &st);
        memcpy(&v, (const char *)&st + field, sizeof(v));
        if (v >= want)
            break;
        usleep(10000);
    } while (now_ms() < until);
    return v;
}

static void
raise_nofile(rlim_t want)
{
    struct rlimit rl;

    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void
test_total_limit_closes_the_oldest(void **state)
{
    mg_http_options_t o = {.max_connections = 8, .max_per_client = 8};
    mg_error_t err = {0};
    mg_http_server_t *s = mg_http_server_start("127.0.0.1", 0, &o, handler, NULL, &err);
    int fds[40];
    char src[32];

    (void)state;
    assert_non_null(s);
    for (int i = 0; i < 40; i++) {
        snprintf(src, sizeof(src), "127.0.0.%d", 2 + i % 10);
        fds[i] = dial(src, mg_http_server_port(s));
        assert_true(fds[i] >= 0);
    }
    assert_true(stat_wait(s, offsetof(mg_http_stats_t, closed_total), 32) >= 32);
    /* the oldest went, the newest are open */
    assert_true(closed_by_server(fds[0], 2000));
    assert_false(closed_by_server(fds[39], 200));
    assert_int_equal(get("127.0.0.1", mg_http_server_port(s)), 200);
    for (int i = 0; i < 40; i++)
        close(fds[i]);
    mg_http_server_destroy(s);
}

static void
test_per_client_limit_spares_the_others(void **state)
{
    mg_http_options_t o = {.max_connections = 64, .max_per_client = 4};
    mg_error_t err = {0};
    mg_http_server_t *s = mg_http_server_start("127.0.0.1", 0, &o, handler, NULL, &err);
    int other[3], flood[20];
    mg_http_stats_t st;

    (void)state;
    assert_non_null(s);
    for (int i = 0; i < 3; i++)
        assert_true((other[i] = dial("127.0.0.3", mg_http_server_port(s))) >= 0);
    for (int i = 0; i < 20; i++)
        assert_true((flood[i] = dial("127.0.0.2", mg_http_server_port(s))) >= 0);
    assert_true(stat_wait(s, offsetof(mg_http_stats_t, closed_client), 16) >= 16);
    assert_int_equal(get("127.0.0.2", mg_http_server_port(s)), 200);
    for (int i = 0; i < 3; i++)
        assert_false(closed_by_server(other[i], 100));
    assert_true(closed_by_server(flood[0], 2000));
    mg_http_server_stats(s, &st);
    assert_int_equal(st.closed_total, 0);
    for (int i = 0; i < 3; i++)
        close(other[i]);
    for (int i = 0; i < 20; i++)
        close(flood[i]);
    mg_http_server_destroy(s);
}

/* a client that sends a header byte every 50 ms is closed after connection_timeout_ms */
static void
test_slow_client_times_out(void **state)
{
    mg_http_options_t o = {.connection_timeout_ms = 300};
    mg_error_t err = {0};
    mg_http_server_t *s = mg_http_server_start("127.0.0.1", 0, &o, handler, NULL, &err);
    int fd;
    int64_t t0, closed_after = -1;

    (void)state;
    assert_non_null(s);
    fd = dial("127.0.0.1", mg_http_server_port(s));
    assert_true(fd >= 0);
    t0 = now_ms();
    assert_int_equal(write(fd, "GET /x HTTP/1.1\r\nX-Slow: ", 25), 25);
    while (now_ms() - t0 < 3000) {
        if (closed_by_server(fd, 50)) {
            closed_after = now_ms() - t0;
            break;
        }
        if (send(fd, "a", 1, MSG_NOSIGNAL) != 1) {
            closed_after = now_ms() - t0;
            break;
        }
    }
    print_message("slow client closed after %lld ms\n", (long long)closed_after);
    assert_true(closed_after >= 250 && closed_after < 1500);
    assert_true(stat_wait(s, offsetof(mg_http_stats_t, closed_timeout), 1) >= 1);
    close(fd);
    mg_http_server_destroy(s);
}

/* the default server answers through 1100 idle connections (the old one refused) */
static void
test_answers_through_many_idle_connections(void **state)
{
    enum { N = 1100 };
    mg_error_t err = {0};
    mg_http_server_t *s = mg_http_server_new("127.0.0.1", 0, handler, NULL, &err);
    static int fds[N];
    char src[32];
    int opened = 0;

    (void)state;
    raise_nofile(N + 200);
    assert_non_null(s);
    for (int i = 0; i < N; i++) {
        snprintf(src, sizeof(src), "127.0.1.%d", 1 + i % 100);
        fds[i] = dial(src, mg_http_server_port(s));
        opened += fds[i] >= 0;
    }
    print_message("%d idle connections opened\n", opened);
    assert_true(opened > 1024);
    for (int i = 0; i < 5; i++)
        assert_int_equal(get("127.0.0.1", mg_http_server_port(s)), 200);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    mg_http_server_destroy(s);
}

static void
test_only_get_and_head(void **state)
{
    mg_error_t err = {0};
    mg_http_server_t *s = mg_http_server_new("127.0.0.1", 0, handler, NULL, &err);
    static const char req[] = "POST /x HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi";
    char buf[64] = "";
    int fd;

    (void)state;
    assert_non_null(s);
    fd = dial("127.0.0.1", mg_http_server_port(s));
    assert_true(fd >= 0);
    assert_int_equal(write(fd, req, sizeof(req) - 1), sizeof(req) - 1);
    assert_true(read(fd, buf, sizeof(buf) - 1) > 12);
    assert_non_null(strstr(buf, " 405 "));
    close(fd);
    mg_http_server_destroy(s);
}

static void
test_bad_address(void **state)
{
    mg_error_t err = {0};

    (void)state;
    assert_null(mg_http_server_new("localhost", 0, handler, NULL, &err));
    assert_non_null(strstr(err.message, "invalid HTTP listen address \"localhost\""));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_total_limit_closes_the_oldest),
        cmocka_unit_test(test_per_client_limit_spares_the_others),
        cmocka_unit_test(test_slow_client_times_out),
        cmocka_unit_test(test_answers_through_many_idle_connections),
        cmocka_unit_test(test_only_get_and_head),
        cmocka_unit_test(test_bad_address),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
