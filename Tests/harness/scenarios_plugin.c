/*
 * scenarios_plugin.c - the plugin's life in the emulator: arguments,
 * uninit_plugin then init_plugin again, guest info, log levels, hypercalls
 * that are not the plugin's.
 */
#include "steps.h"

#include <dlfcn.h>
#include <libgen.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static script s;

/* The plugin serves: a conversation of one READ at USER_BASE takes two
 * traps and returns what its step function finished with. Used after the
 * plugin's life changed (reload, refused second load). */
static void expect_read_served(T *t, uint64_t result)
{
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    s.result = result;
    uint64_t ret;
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, &ret, &n);
    (void)tr;
    CHECK_EQ(n, 2);
    CHECK_EQ(ret, result);
}

/* An unknown key is refused: init_plugin returns false and says why in the
 * log_file the arguments name. */
static void args_unknown_refused(T *t)
{
    guest *g = t_guest(t, 64, false, 1);
    (void)g;
    CHECK(!t_init(t, "bogus_key=1", NULL), "init_plugin accepted bogus_key=1");
    CHECK(t_log_count(t, LOG_REFUSED_ARG_LEVEL, "init_plugin: argument 'bogus_key=1': unknown argument 'bogus_key'") == 1,
          "no \"%s\" line naming bogus_key in the log_file", LOG_REFUSED_ARG_LEVEL);
    CHECK(!emu_initialized(), "the harness thinks the plugin is loaded");
    CHECK(t_init(t, NULL), "init_plugin without arguments failed after a refusal");
}

/* Malformed values are refused, one at a time; a good init works after. */
static void args_malformed_refused(T *t)
{
    guest *g = t_guest(t, 64, false, 1);
    (void)g;
    static const char *const bad[] = {
        "install_budget=abc", "install_budget=", "install_budget=-1", "install_budget=12x",
        "region_size=abc", "region_size=-5", "log=loud", "log=", "max_conversations=x",
        "max_interrupts=1.5", "noequals", "=5", "ops=/nonexistent/portal-ops.txt", "ops=/dev/zero",
        "ops=/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool ok = t_init(t, bad[i], NULL);
        if (ok)
            t_uninit(t);
        CHECK(!ok, "init_plugin accepted %s", bad[i]);
    }
    CHECK(t_init(t, "install_budget=7", NULL), "init_plugin refused install_budget=7 afterwards");
}

static void args_all_valid(T *t)
{
    REQUIRE_API();
    guest *g = t_guest(t, 64, false, 1);
    char ops[1100], ops_arg[1200], log_arg[1100];
    snprintf(ops, sizeof ops, "%s.ops", t->log_path);
    FILE *f = fopen(ops, "w");
    CHECK(f, "cannot write %s", ops);
    fputs("# standard table\n", f);
    for (int i = 0; i < standard_op_count; i++)
        fprintf(f, "%s\n", standard_op_names[i]);
    fclose(f);
    snprintf(ops_arg, sizeof ops_arg, "ops=%s", ops);
    snprintf(log_arg, sizeof log_arg, "log_file=%s", t->log_path);
    const char *args[] = {"log=debug", log_arg, "region_size=4072", "install_budget=8",
                          ops_arg, "max_conversations=16", "max_interrupts=8"};
    CHECK(t_init_argv(t, args, 7), "init_plugin refused a full set of valid arguments");
    CHECK_EQ(api.op("VFS_CLOSE"), 55);
    guest_boot(g, 0);
    CHECK(t_log_count(t, NULL, NULL) >= 1, "log=debug wrote nothing to log_file");
}

/* uninit_plugin then init_plugin, three times: each life starts clean. */
static void uninit_then_init(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    for (int round = 0; round < 3; round++) {
        expect_read_served(t, 40 + (uint64_t)round);
        int stale = emu_stale_callbacks();
        t_uninit(t);
        CHECK(emu_stale_callbacks() == stale, "uninit_plugin left its callback registered");
        char budget[32];
        snprintf(budget, sizeof budget, "install_budget=%d", 3 + round);
        CHECK(t_init(t, budget, NULL), "init_plugin #%d failed", round + 2);
        guest_boot(g, 0);
        /* the attachment of the previous life is gone */
        uint64_t id;
        size_t n;
        converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
        t_traps_of_conv(t, id, &n);
        CHECK(n == 1, "round %d: an attachment survived uninit_plugin (%zu traps)", round, n);
        CHECK_EQ(s.starts, 1);
    }
}

/* The guest's shape is asked at init, not per hypercall. */
static void guest_info_at_init(T *t)
{
    REQUIRE_API();
    int before = emu_guest_info_calls();
    SETUP(32, true, 2);
    int at_init = emu_guest_info_calls();
    CHECK(at_init > before, "panda_get_guest_info was not called by init_plugin");
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, script_step, &s), 0);
    for (int i = 0; i < 20; i++)
        converse(g, i % 2, HC_SYSCALL_ENTER, 0, 0, NULL);
    CHECK_EQ(s.first.word_bits, 32);
    CHECK_EQ(s.first.big_endian, 1);
    CHECK_EQ(emu_guest_info_calls(), at_init);
}

static bool line_has_level(const char *line)
{
    static const char *const levels[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO,
                                         LOG_LEVEL_DEBUG};
    for (int i = 0; i < 4; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, LOG_PREFIX "%s: ", levels[i]);
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            return true;
    }
    return false;
}

static void run_failing_step(T *t, guest *g)
{
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    s.fail_after = 1;
    s.fail_message = "harness log level probe";
    api.attach(HC_SYSCALL_ENTER, script_step, &s);
    converse(g, 0, HC_SYSCALL_ENTER, 0, 0, NULL);
    (void)t;
}

/* log=debug: every line is "portal: LEVEL: ..."; log=error: only errors;
 * log=off: nothing. */
static void log_levels(T *t)
{
    REQUIRE_API();
    const char *dbg[] = {"log=debug"};
    guest *g = setup(t, 64, false, 1, dbg, 1);
    if (!g)
        return;
    run_failing_step(t, g);
    char *text = t_read_log(t);
    int lines = 0, bad = 0;
    char first_bad[200] = "";
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        if (!line_has_level(line) && bad++ == 0)
            snprintf(first_bad, sizeof first_bad, "%s", line);
    }
    free(text);
    CHECK(lines >= 1, "log=debug wrote no line");
    CHECK(bad == 0, "%d line(s) not of the form \"portal: LEVEL: message\", first: %s", bad,
          first_bad);
    CHECK(t_log_count(t, LOG_STEP_FAILED_LEVEL, s.fail_message) >= 1,
          "the failing step was not logged at %s", LOG_STEP_FAILED_LEVEL);

    t_uninit(t);
    unlink(t->log_path);
    CHECK(t_init(t, "log=error", NULL), "init_plugin refused log=error");
    guest_boot(g, 0);
    run_failing_step(t, g);
    CHECK(t_log_count(t, LOG_LEVEL_ERROR, NULL) >= 1, "log=error: no error line");
    CHECK_EQ(t_log_count(t, NULL, NULL), t_log_count(t, LOG_LEVEL_ERROR, NULL));

    t_uninit(t);
    unlink(t->log_path);
    CHECK(t_init(t, "log=off", NULL), "init_plugin refused log=off");
    guest_boot(g, 0);
    run_failing_step(t, g);
    t_uninit(t);
    CHECK_EQ(t_log_count(t, NULL, NULL), 0);
}

/* A hypercall that is not the plugin's is declined (the callback returns
 * false) and leaves the guest alone. */
static void foreign_hypercall_declined(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    bool handled = true;
    uint64_t ret = guest_hypercall(g, 0, HC_MODULE_BASE, 1, 2, 3, 4, &handled);
    CHECK(!handled, "the plugin claimed hypercall %#x", HC_MODULE_BASE);
    CHECK_EQ(ret, HC_MODULE_BASE);
    const trap_record *r = t_last_trap(t);
    CHECK_EQ(r->writes, 0);
}

/* dlclose and dlopen again, then a full life. Only when named: a Swift
 * library may not survive being unloaded, and a crash here would end the run. */
static void reload_dlclose(T *t)
{
    REQUIRE_API();
    char error[1024];
    t_uninit(t);
    CHECK(emu_reopen(error, sizeof error), "%s", error);
    REQUIRE_API();
    SETUP(64, false, 1);
    expect_read_served(t, 3);
}

/* build/module.so, beside the harness executable (Makefile). */
static void module_path(char *path, size_t size)
{
    char exe[512];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = 0;
    snprintf(path, size, "%s/module.so", dirname(exe));
}

/* An exported counter of the loaded module.so. */
static int module_counter(const char *path, const char *name)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!handle)
        return -1;
    const int *counter = dlsym(handle, name);
    int value = counter ? *counter : -1;
    dlclose(handle);
    return value;
}

/* load= under the PANDA-style front end: the module's step serves its
 * hypercall with the argument it was given (module_arg=), through the one
 * engine; uninit_plugin calls its exit hook; a second life loads it again.
 * Only when named (make test-harness names it): it needs build/module.so. */
static void module_load_serves(T *t)
{
    char path[600], load[700];
    module_path(path, sizeof path);
    snprintf(load, sizeof load, "load=%s", path);
    guest *g = t_guest(t, 64, false, 1);
    CHECK(t_init(t, load, "module_arg=0x100", NULL), "init_plugin refused %s,module_arg=0x100", load);
    guest_boot(g, 0);
    CHECK_EQ(module_counter(path, "harness_module_inits"), 1);
    CHECK_EQ(igloo_portal(g, 0, 0x4242, 0, 0), 0x100);
    CHECK_EQ(igloo_portal(g, 0, 0x4242, 0, 0), 0x101);
    t_uninit(t);
    CHECK_EQ(module_counter(path, "harness_module_exits"), 1);
    CHECK(t_init(t, load, "module_arg=7", NULL), "init_plugin refused the module in a second life");
    CHECK_EQ(igloo_portal(g, 0, 0x4242, 0, 0), 7);
    CHECK_EQ(module_counter(path, "harness_module_inits"), 2);
    t_uninit(t);
    CHECK_EQ(module_counter(path, "harness_module_exits"), 2);
}

/* Refusals under the PANDA-style front end: one line each, in the log, and
 * the plugin is not loaded. A module refused after another was initialised
 * has the other's exit hook called. */
static void module_load_refusals(T *t)
{
    char path[600], load[700], missing[700], line[1400];
    module_path(path, sizeof path);
    snprintf(load, sizeof load, "load=%s", path);
    t_guest(t, 64, false, 1);
    CHECK(!t_init(t, load, "module_arg=fail", NULL), "init_plugin accepted a module whose init failed");
    snprintf(line, sizeof line, "init_plugin: load=%s: its portal_analysis_init(\"fail\") returned 5", path);
    CHECK(t_log_count(t, LOG_LEVEL_ERROR, line) == 1, "no line \"%s\"", line);
    CHECK(!emu_initialized(), "the harness thinks the plugin is loaded");

    int exits = module_counter(path, "harness_module_exits");
    snprintf(missing, sizeof missing, "load=%s.missing", path);
    CHECK(!t_init(t, load, missing, NULL), "init_plugin accepted a missing second module");
    snprintf(line, sizeof line, "init_plugin: load=%s.missing: cannot open the module: %s.missing: cannot open shared object file: No such file or directory", path, path);
    CHECK(t_log_count(t, LOG_LEVEL_ERROR, line) == 1, "no line \"%s\"", line);
    CHECK_EQ(module_counter(path, "harness_module_exits"), exits + 1);
    CHECK(!t_init(t, "module_arg=x", load, NULL), "init_plugin accepted module_arg= before any load=");
    CHECK(t_log_count(t, LOG_REFUSED_ARG_LEVEL, "init_plugin: argument 'module_arg=x': an analysis module's argument must follow the load=PATH it belongs to") == 1,
          "no line refusing module_arg= before load=");
    CHECK(t_init(t, NULL), "init_plugin without arguments failed after the refusals");
}

/* Standard error goes to a file while a scenario looks at what the plugin
 * writes there (refusals that cannot go to the log_file). */
typedef struct captured_stderr {
    int saved;
    char path[1100];
} captured_stderr;

static bool capture_stderr(T *t, captured_stderr *c)
{
    snprintf(c->path, sizeof c->path, "%s.stderr", t->log_path);
    fflush(stderr);
    c->saved = dup(2);
    if (c->saved < 0) {
        t_fail(t, __LINE__, "dup(2) failed: %s", strerror(errno));
        return false;
    }
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        t_fail(t, __LINE__, "open %s failed: %s", c->path, strerror(errno));
        close(c->saved);
        return false;
    }
    bool redirected = dup2(fd, 2) >= 0;
    if (!redirected) {
        t_fail(t, __LINE__, "dup2 onto standard error failed: %s", strerror(errno));
        close(c->saved);
    }
    close(fd);
    return redirected;
}

/* Restores standard error; returns what was written, or NULL (with the
 * failure recorded) when it cannot be read back. The caller frees it. */
static char *release_stderr(T *t, captured_stderr *c)
{
    fflush(stderr);
    if (dup2(c->saved, 2) < 0)
        t_fail(t, __LINE__, "restoring standard error failed: %s", strerror(errno));
    close(c->saved);
    char *text = NULL;
    FILE *f = fopen(c->path, "r");
    if (f == NULL) {
        t_fail(t, __LINE__, "open %s failed: %s", c->path, strerror(errno));
    } else {
        text = calloc(1, 65536);
        if (text == NULL)
            t_fail(t, __LINE__, "calloc of 64 KiB failed");
        else
            text[fread(text, 1, 65535, f)] = 0;
        fclose(f);
    }
    unlink(c->path);
    return text;
}

/* Occurrences of needle in text (0 for a NULL text: nothing was captured). */
static int count_lines_with(const char *text, const char *needle)
{
    int count = 0;
    if (text == NULL)
        return 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        count++;
    return count;
}

/* The test dies (SIGALRM) rather than hang forever if a call blocks. */
#define WITHIN_SECONDS(n, call) (alarm(n), (call))
#define NO_ALARM() alarm(0)

/* log_file= and ops= naming a FIFO nobody opens from the other side: the
 * plugin refuses them, saying what they are, instead of blocking in open. */
static void fifo_arguments_refused(T *t)
{
    guest *g = t_guest(t, 64, false, 1);
    (void)g;
    char fifo[1100], log_arg[1200], ops_arg[1200], expected[1400];
    snprintf(fifo, sizeof fifo, "%s.fifo", t->log_path);
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s failed", fifo);
    snprintf(log_arg, sizeof log_arg, "log_file=%s", fifo);
    snprintf(ops_arg, sizeof ops_arg, "ops=%s", fifo);

    captured_stderr c;
    if (!capture_stderr(t, &c))
        return;
    const char *log_only[] = {log_arg};
    bool loaded = WITHIN_SECONDS(10, t_init_argv(t, log_only, 1));
    /* A refusal of another argument opens the log it names first. */
    const char *log_and_bad[] = {log_arg, "bogus_key=1"};
    bool loaded_bad = WITHIN_SECONDS(10, t_init_argv(t, log_and_bad, 2));
    NO_ALARM();
    char *err = release_stderr(t, &c);
    snprintf(expected, sizeof expected,
             LOG_PREFIX "error: init_plugin: argument '%s': it is a FIFO, expected a regular file or a character device\n",
             log_arg);
    int refusals = count_lines_with(err, expected);
    int bogus = count_lines_with(err, "init_plugin: argument 'bogus_key=1': unknown argument 'bogus_key'");
    free(err);
    CHECK(!loaded, "init_plugin accepted %s", log_arg);
    CHECK(!loaded_bad, "init_plugin accepted bogus_key=1");
    CHECK(refusals == 1, "standard error has %d lines \"%s\", expected 1", refusals, expected);
    CHECK(bogus == 1, "the refusal of bogus_key=1 is not on standard error (%d lines)", bogus);

    const char *ops_only[] = {ops_arg};
    loaded = WITHIN_SECONDS(10, t_init_argv(t, ops_only, 1));
    NO_ALARM();
    unlink(fifo);
    CHECK(!loaded, "init_plugin accepted %s", ops_arg);
    snprintf(expected, sizeof expected,
             "init_plugin: argument '%s': cannot read the op table: it is a FIFO, expected a regular file", ops_arg);
    CHECK(t_log_count(t, LOG_LEVEL_ERROR, expected) == 1, "no error line \"%s\" in the log_file", expected);
}

static int open_descriptors(void)
{
    DIR *dir = opendir("/proc/self/fd");
    int count = 0;
    if (!dir)
        return -1;
    while (readdir(dir))
        count++;
    closedir(dir);
    return count;
}

/* init_plugin while loaded is refused, and the refused load keeps nothing:
 * no descriptor of its log_file (nor, under LeakSanitizer, any memory). */
static void second_init_refused_without_leak(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 4);
    captured_stderr c;
    if (!capture_stderr(t, &c))
        return;
    bool again = emu_init_again();
    int before = open_descriptors();
    for (int i = 0; i < 50; i++)
        again = again || emu_init_again();
    int after = open_descriptors();
    char *err = release_stderr(t, &c);
    int refusals = count_lines_with(err, LOG_PREFIX "error: init_plugin: the plugin is already loaded: libportal.so (or an analysis module linked with it) was given to the emulator twice; give analysis modules to libportal.so with load=PATH\n");
    free(err);
    CHECK(!again, "a second init_plugin was accepted");
    CHECK(refusals == 51, "%d refusals on standard error, expected 51", refusals);
    CHECK(after == before, "50 refused loads left %d descriptors open", after - before);
    /* The first load still serves. */
    expect_read_served(t, 9);
}

/* uninit_plugin with a handle that never loaded the plugin changes nothing:
 * the current load keeps its work and its waiting conversations. */
static void uninit_of_a_foreign_handle_refused(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    s.result = 12;
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, script_step, &s), 0);
    static int stranger;
    emu_uninit_foreign(&stranger);
    emu_uninit_foreign(NULL);
    CHECK(t_log_count(t, LOG_LEVEL_ERROR, "uninit_plugin: handle ") == 2,
          "the foreign uninit_plugin calls were not refused with an error line each");
    CHECK(t_log_count(t, LOG_LEVEL_ERROR, "did not load the plugin") == 2,
          "the refusal does not say the handle did not load the plugin");
    CHECK_EQ(converse(g, 0, HC_SYSCALL_ENTER, 0, 0, NULL), 12);
    CHECK_EQ(s.starts, 1);
}

/* log_file=/dev/full: every write fails; standard error says so once. */
static void log_file_that_cannot_be_written(T *t)
{
    REQUIRE_API();
    guest *g = t_guest(t, 64, false, 1);
    captured_stderr c;
    if (!capture_stderr(t, &c))
        return;
    const char *args[] = {"log_file=/dev/full", "log=debug"};
    bool loaded = t_init_argv(t, args, 2);
    if (loaded) {
        guest_boot(g, 0);
        for (int i = 0; i < 5; i++)
            run_failing_step(t, g);
        t_uninit(t);
    }
    char *err = release_stderr(t, &c);
    int said = count_lines_with(err, LOG_PREFIX "error: log_file=/dev/full: cannot write log lines (No space left on device); this and later lines are lost\n");
    int lines = count_lines_with(err, LOG_PREFIX);
    free(err);
    CHECK(loaded, "init_plugin refused log_file=/dev/full (a character device)");
    CHECK(said == 1, "standard error said %d times that log lines are lost, expected once", said);
    CHECK(lines == 1, "standard error has %d lines, expected only that one", lines);
}

const scenario scenarios_plugin[] = {
    {"args_unknown_refused", args_unknown_refused, false},
    {"args_malformed_refused", args_malformed_refused, false},
    {"args_all_valid", args_all_valid, false},
    {"uninit_then_init", uninit_then_init, false},
    {"guest_info_at_init", guest_info_at_init, false},
    {"log_levels", log_levels, false},
    {"foreign_hypercall_declined", foreign_hypercall_declined, false},
    {"fifo_arguments_refused", fifo_arguments_refused, false},
    {"second_init_refused_without_leak", second_init_refused_without_leak, false},
    {"uninit_of_a_foreign_handle_refused", uninit_of_a_foreign_handle_refused, false},
    {"log_file_that_cannot_be_written", log_file_that_cannot_be_written, false},
    {"reload_dlclose", reload_dlclose, true},
    {"module_load_serves", module_load_serves, true},
    {"module_load_refusals", module_load_refusals, true},
    {NULL, NULL, false},
};
