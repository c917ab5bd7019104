/*
 * tests/unit/cutover/test_protocol.c - the cutover protocol without a
 * server: the table of steps, and the runner's rules driven through a table
 * of fake steps and a recorder in place of the state schema: what runs, what
 * is recorded, what is undone when a step fails before the flip, what a
 * refusal, a stop request, a deadline, a resumed cutover and a partly done
 * flip lead to, and the exit code of each.
 */
#include "cutover_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* What the fake steps do and what the recorder saw. */
typedef struct {
    int fail_at; /* the step whose function fails (-1: none) */
    mg_error_domain_t fail_domain;
    bool refuse;        /* the failing step is a refusal */
    bool flip_started;  /* the failing flip got part of the way */
    int begin_fails_at; /* the step whose recording fails (-1: none) */
    int end_fails_at;   /* the step whose end recording fails (-1: none) */
    bool undo_fails;
    int slow_step;  /* the step that takes 20 ms (-1: none) */
    char log[1024]; /* "b:freeze e:freeze u:freeze a:<reason> r d" ... */
    int undos, aborts, reports;
} script_t;

static void
note(script_t *sc, const char *fmt, const char *arg)
{
    size_t n = strlen(sc->log);

    snprintf(sc->log + n, sizeof(sc->log) - n, fmt, arg);
}

static bool
fake_run(cutover_t *c, step_t step, mg_error_t *error)
{
    script_t *sc = c->test;

    if ((int)step == sc->slow_step)
        usleep(20 * 1000);
    if ((int)step != sc->fail_at)
        return true;
    if (sc->refuse) {
        c->refused = true;
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_REFUSED,
                            "refused: the lag is too high");
    }
    if (step == S_FLIP)
        c->flip_started = sc->flip_started;
    return mg_error_set(error, sc->fail_domain, 0, "step %d broke", (int)step);
}

#define FAKE(name, step)                              \
    static bool name(cutover_t *c, mg_error_t *error) \
    {                                                 \
        return fake_run(c, step, error);              \
    }
FAKE(f_preflight, S_PREFLIGHT)
FAKE(f_freeze, S_FREEZE)
FAKE(f_fence, S_FENCE)
FAKE(f_drain, S_DRAIN)
FAKE(f_verify, S_VERIFY)
FAKE(f_flip, S_FLIP)

static bool
f_unfreeze(cutover_t *c, mg_error_t *error)
{
    script_t *sc = c->test;

    sc->undos++;
    note(sc, "u:%s ", "freeze");
    if (sc->undo_fails)
        return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0, "could not unblock");
    return true;
}

/* the real protocol's shape with fake functions */
static cutover_step_t table[N_STEPS];

static void
make_table(void)
{
    const cutover_step_t *p = mg_cutover__protocol();
    step_fn runs[N_STEPS] = {f_preflight, f_freeze, f_fence, f_drain, f_verify, f_flip, NULL};

    for (int k = 0; k < N_STEPS; k++) {
        table[k] = p[k];
        table[k].run = runs[k];
        table[k].undo = p[k].undo != NULL ? f_unfreeze : NULL;
    }
}

static int
step_of(const char *name)
{
    for (int k = 0; k < N_STEPS; k++)
        if (strcmp(table[k].name, name) == 0)
            return k;
    return -1;
}

static bool
rec_begin(cutover_t *c, const char *step, mg_error_t *error)
{
    script_t *sc = c->test;

    note(sc, "b:%s ", step);
    if (step_of(step) == sc->begin_fails_at)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "could not record %s", "the step");
    return true;
}

static bool
rec_end(cutover_t *c, const char *step, double seconds, mg_error_t *error)
{
    script_t *sc = c->test;

    assert_true(seconds >= 0);
    note(sc, "e:%s ", step);
    if (step_of(step) == sc->end_fails_at)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "could not record %s", "the end");
    return true;
}

static bool
rec_done(cutover_t *c, mg_error_t *error)
{
    note(c->test, "%s ", "d");
    return true;
}

static void
rec_aborted(cutover_t *c, const char *reason)
{
    script_t *sc = c->test;

    sc->aborts++;
    note(sc, "a:%s ", reason);
}

static void
rec_report(cutover_t *c)
{
    script_t *sc = c->test;

    sc->reports++;
    note(sc, "%s", "r ");
}

static const cutover_io_t recorder = {rec_begin, rec_end, rec_done, rec_aborted, rec_report};

/* run runs the fake protocol from `from` with the script; returns the exit code. */
static int
run(script_t *sc, mg_cutover_settings_t *s, int from, bool resumed, mg_error_t *e)
{
    cutover_t c;

    memset(&c, 0, sizeof(c));
    c.s = s;
    c.io = &recorder;
    c.test = sc;
    c.resumed = resumed;
    mg_error_clear(e);
    return mg_cutover__run_steps(&c, table, from, e);
}

static void
script_init(script_t *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->fail_at = sc->begin_fails_at = sc->end_fails_at = sc->slow_step = -1;
    sc->fail_domain = MG_ERROR_DOMAIN_PG;
}

static mg_cutover_settings_t settings;

static int
setup(void **state)
{
    memset(&settings, 0, sizeof(settings));
    settings.timeout_ms = 60000;
    make_table();
    return 0;
}

static void
test_the_table(void **state)
{
    const cutover_step_t *p = mg_cutover__protocol();
    static const char *const names[] = {"preflight", "freeze", "fence", "drain",
                                        "verify",    "flip",   "done"};

    for (int k = 0; k < N_STEPS; k++) {
        assert_int_equal(p[k].step, k); /* in the order they run */
        assert_string_equal(p[k].name, names[k]);
        assert_non_null(p[k].comment);
        assert_true((p[k].run != NULL) == (k != S_DONE));
        /* only the freeze is undone: from the flip on nothing may be */
        assert_true((p[k].undo != NULL) == (k == S_FREEZE));
    }
}

static void
test_a_clean_run_records_every_step_in_order(void **state)
{
    script_t sc;
    mg_error_t e;

    script_init(&sc);
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_OK);
    assert_string_equal(sc.log, "b:preflight e:preflight b:freeze e:freeze b:fence e:fence "
                                "b:drain e:drain b:verify e:verify b:flip e:flip b:done d "
                                "e:done r ");
    assert_int_equal(sc.undos, 0);
    assert_int_equal(sc.aborts, 0);
}

static void
test_a_failure_before_the_flip_unfreezes_and_aborts(void **state)
{
    static const step_t at[] = {S_FREEZE, S_FENCE, S_DRAIN, S_VERIFY, S_FLIP};
    script_t sc;
    mg_error_t e;
    char want[128];

    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        script_init(&sc);
        sc.fail_at = at[i];
        assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_ABORTED);
        /* the failing freeze is undone too: it may have taken effect */
        assert_int_equal(sc.undos, 1);
        assert_int_equal(sc.aborts, 1);
        assert_int_equal(sc.reports, 1);
        snprintf(want, sizeof(want), "aborted: step %d broke", (int)at[i]);
        assert_string_equal(e.message, want);
        snprintf(want, sizeof(want), "b:%s u:freeze a:step %d broke r ", table[at[i]].name,
                 (int)at[i]);
        assert_non_null(strstr(sc.log, want));
        assert_null(strstr(sc.log, "b:done")); /* nothing after the failure ran */
    }
}

static void
test_a_failing_preflight_has_nothing_to_undo(void **state)
{
    script_t sc;
    mg_error_t e;

    script_init(&sc);
    sc.fail_at = S_PREFLIGHT;
    sc.fail_domain = MG_ERROR_DOMAIN_MONGO;
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_SOURCE);
    assert_string_equal(e.message, "step 0 broke");
    assert_int_equal(sc.undos + sc.aborts + sc.reports, 0);
    /* recording the freeze fails: the freeze never ran, nothing to undo */
    script_init(&sc);
    sc.begin_fails_at = S_FREEZE;
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_TARGET);
    assert_int_equal(sc.undos + sc.aborts, 0);
}

static void
test_a_refusal_is_recorded_unless_a_dry_run(void **state)
{
    script_t sc;
    mg_error_t e;

    script_init(&sc);
    sc.fail_at = S_PREFLIGHT;
    sc.refuse = true;
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_STATE);
    assert_string_equal(e.message, "refused: the lag is too high");
    assert_string_equal(sc.log, "b:preflight a:the lag is too high ");
    settings.dry_run = true;
    script_init(&sc);
    sc.fail_at = S_PREFLIGHT;
    sc.refuse = true;
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_STATE);
    assert_string_equal(sc.log, ""); /* a dry run records nothing */
    /* a dry run that passes stops after the preflight */
    script_init(&sc);
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_OK);
    assert_string_equal(sc.log, "");
    settings.dry_run = false;
}

static void
test_a_partly_done_flip_is_not_undone(void **state)
{
    script_t sc;
    mg_error_t e;

    script_init(&sc);
    sc.fail_at = S_FLIP;
    sc.flip_started = true;
    sc.fail_domain = MG_ERROR_DOMAIN_SYSTEM;
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_FAILURE);
    assert_non_null(strstr(e.message, "the flip is partly done; run migrate cutover again"));
    assert_int_equal(sc.undos + sc.aborts, 0);
    /* after the flip a failed record is an error, not an abort */
    script_init(&sc);
    sc.end_fails_at = S_FLIP;
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_TARGET);
    assert_int_equal(sc.undos + sc.aborts, 0);
    /* a resumed cutover at the flip finishes it without freezing again */
    script_init(&sc);
    assert_int_equal(run(&sc, &settings, S_FLIP, true, &e), MG_EXIT_OK);
    assert_string_equal(sc.log, "b:flip e:flip b:done d e:done r ");
    /* and if it fails again, the source stays frozen: part of the flip may have happened */
    script_init(&sc);
    sc.fail_at = S_FLIP;
    assert_int_equal(run(&sc, &settings, S_FLIP, true, &e), MG_EXIT_TARGET);
    assert_int_equal(sc.undos + sc.aborts, 0);
}

static void
test_a_stop_request_or_the_deadline_aborts_before_the_flip(void **state)
{
    atomic_int stop;
    script_t sc;
    mg_error_t e;

    atomic_init(&stop, 1);
    settings.stop = &stop;
    /* asked to stop before the freeze: nothing is frozen, the attempt is recorded as aborted */
    script_init(&sc);
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_INTERRUPTED);
    assert_string_equal(sc.log, "b:preflight e:preflight a:interrupted by a signal before the "
                                "freeze: nothing was frozen ");
    /* asked after the freeze: unfrozen before the drain */
    script_init(&sc);
    assert_int_equal(run(&sc, &settings, S_FREEZE, true, &e), MG_EXIT_ABORTED);
    assert_string_equal(e.message, "aborted: interrupted by a signal before the flip");
    assert_non_null(strstr(sc.log, "e:fence u:freeze")); /* stopped before the drain */
    settings.stop = NULL;
    settings.timeout_ms = 1; /* the verify takes longer than the whole budget */
    script_init(&sc);
    sc.slow_step = S_VERIFY;
    assert_int_equal(run(&sc, &settings, S_PREFLIGHT, false, &e), MG_EXIT_ABORTED);
    assert_string_equal(e.message, "aborted: timed out before the flip (--timeout)");
    assert_null(strstr(sc.log, "b:flip"));
    settings.timeout_ms = 60000;
}

static void
test_a_resumed_cutover_may_be_frozen_already(void **state)
{
    script_t sc;
    mg_error_t e;

    /* recording the freeze again fails: the crashed attempt's freeze is undone */
    script_init(&sc);
    sc.begin_fails_at = S_FREEZE;
    assert_int_equal(run(&sc, &settings, S_FREEZE, true, &e), MG_EXIT_ABORTED);
    assert_string_equal(sc.log, "b:freeze u:freeze a:could not record the step r ");
    /* an undo that fails says so in the recorded reason */
    script_init(&sc);
    sc.fail_at = S_DRAIN;
    sc.undo_fails = true;
    assert_int_equal(run(&sc, &settings, S_FREEZE, true, &e), MG_EXIT_ABORTED);
    assert_non_null(strstr(e.message, "step 3 broke; unfreezing failed too: run migrate cutover "
                                      "--abort"));
}

static void
test_the_freeze_modes(void **state)
{
    freeze_kind_t kind;
    const char *cmd = NULL;
    mg_error_t e;

    assert_true(mg_cutover__parse_freeze("write-block", &kind, &cmd, &e));
    assert_int_equal(kind, FREEZE_WRITE_BLOCK);
    assert_true(mg_cutover__parse_freeze("none", &kind, &cmd, &e));
    assert_int_equal(kind, FREEZE_NONE);
    assert_true(mg_cutover__parse_freeze("hook:/bin/true --x", &kind, &cmd, &e));
    assert_int_equal(kind, FREEZE_HOOK);
    assert_string_equal(cmd, "/bin/true --x");
    assert_false(mg_cutover_freeze_check("hook:", &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_CONFIG);
    assert_false(mg_cutover_freeze_check("writeblock", &e));
    assert_non_null(strstr(e.message, "invalid --freeze \"writeblock\""));
    assert_string_equal(mg_cutover_verify_name(MG_CUTOVER_VERIFY_COUNTS), "counts");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_the_table, setup),
        cmocka_unit_test_setup(test_a_clean_run_records_every_step_in_order, setup),
        cmocka_unit_test_setup(test_a_failure_before_the_flip_unfreezes_and_aborts, setup),
        cmocka_unit_test_setup(test_a_failing_preflight_has_nothing_to_undo, setup),
        cmocka_unit_test_setup(test_a_refusal_is_recorded_unless_a_dry_run, setup),
        cmocka_unit_test_setup(test_a_partly_done_flip_is_not_undone, setup),
        cmocka_unit_test_setup(test_a_stop_request_or_the_deadline_aborts_before_the_flip, setup),
        cmocka_unit_test_setup(test_a_resumed_cutover_may_be_frozen_already, setup),
        cmocka_unit_test_setup(test_the_freeze_modes, setup),
    };

    mg_log_init("test", MG_LOG_FATAL, MG_LOG_FORMAT_JSON);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
