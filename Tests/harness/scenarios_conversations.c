/*
 * scenarios_conversations.c - conversations through the C API and the
 * plugin's entry points: failing and finishing step functions, attach and
 * detach, real vCPU threads in the C shim (the sanitizer runs' workload),
 * uninit_plugin with live conversations, and op tables (portal_op, ops=).
 * Nesting, migration, interleaving and the conversation limit are engine
 * behaviour, tested in Swift (Tests/PortalEngineTests).
 */
#include "steps.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static script s, s2;
static word_stats ws;
static irq_work tick;

/* ------------------------------------------------------- failing steps -- */

static void step_fail_then_good(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    s.fail_after = 1;
    s.fail_message = "harness scripted failure 1";
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(n, 2);
    CHECK_EQ(s.nanswers, 1);
    CHECK(tr[1].op == 0, "after the failing step the header op is %#x, expected 0 (NONE)", tr[1].op);
    t_note(t, "failing trap: handled %d, set_return %d, return_value %#llx", tr[1].handled,
           tr[1].set_return, (unsigned long long)tr[1].return_value);
    expect_page_reused(t, tr[0].region, 4, 99);
    if (t->failed)
        return;
    CHECK(t_log_count(t, LOG_STEP_FAILED_LEVEL, s.fail_message) >= 1,
          "no %s line in the log with the step's error \"%s\"", LOG_STEP_FAILED_LEVEL,
          s.fail_message);
}

static portal_step fail_at_once(void *userdata, portal_conversation *conv,
                                const portal_response *response, portal_command *command,
                                uint64_t *result)
{
    (void)response;
    (void)command;
    (void)result;
    (*(int *)userdata)++;
    conv->error = "harness fails at the first step";
    return PORTAL_STEP_FAIL;
}

static void step_fail_first_step(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    static int calls;
    calls = 0;
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, fail_at_once, &calls), 0);
    uint64_t id;
    converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    size_t n;
    trap_record *tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(calls, 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(tr[0].op, 0);
    expect_page_reused(t, tr[0].region, 8, 0);
    if (t->failed)
        return;
    CHECK_EQ(calls, 1);
}

/* Work that needs nothing from the guest: its value on the first trap. */
static void finish_immediately(T *t)
{
    REQUIRE_API();
    SETUP(32, true, 1);
    memset(&s, 0, sizeof s);
    s.result = 0x123456789ull;
    uint64_t ret;
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, &ret, &n);
    CHECK_EQ(n, 1);
    CHECK_EQ(tr[0].op, 0);
    CHECK(tr[0].handled && tr[0].set_return, "the hypercall was not claimed with a return value");
    CHECK_EQ(tr[0].return_value & 0xffffffffu, 0x23456789u);
    CHECK_EQ(ret, 0x23456789u);              /* the 32-bit register */
}

/* ------------------------------------------------------ attach / detach -- */

static void attach_detach_replace(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    memset(&s2, 0, sizeof s2);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    script_cmd(&s2, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    s.result = 1;
    s2.result = 2;
    uint64_t id;
    converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);     /* nothing attached */
    size_t n;
    trap_record *tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 1);
    CHECK_EQ(tr[0].op, 0);

    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, script_step, &s), 0);
    CHECK_EQ(api.detach(HC_SYSCALL_ENTER), 0);
    converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 1);
    CHECK_EQ(s.starts, 0);

    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, script_step, &s), 0);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, script_step, &s2), 0);    /* replaces */
    uint64_t ret = converse(g, 0, HC_SYSCALL_ENTER, 0, 0, NULL);
    CHECK_EQ(s.starts, 0);
    CHECK_EQ(s2.starts, 1);
    CHECK_EQ(ret, 2);
    CHECK(api.detach(0x4242) != 0, "detach of a number never attached returned 0");
}

/* portal_observe: the observer's READ, then the attached work's READ, in
 * one conversation; the attached work's result is the hypercall's. A failing
 * observer is logged and the attached work runs all the same; attach and
 * detach leave observers in place; portal_stop_observing removes them. */
static script observer;

static void observe_then_attached(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&observer, 0, sizeof observer);
    memset(&s, 0, sizeof s);
    script_cmd(&observer, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    observer.result = 1000;
    script_cmd(&s, api.op("READ"), 0, USER_BASE + 8, 4, NULL, 0);
    s.result = 77;
    CHECK_EQ(api.observe(HC_SYSCALL_ENTER, "watch", script_step, &observer), 0);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, script_step, &s), 0);
    uint64_t id;
    uint64_t ret = converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    size_t n;
    trap_record *tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(ret, 77);
    CHECK_EQ(n, 3);
    CHECK_HEADER(&tr[0], api.op("READ"), PORTAL_CURRENT_PID, USER_BASE, 8);
    CHECK_HEADER(&tr[1], api.op("READ"), PORTAL_CURRENT_PID, USER_BASE + 8, 4);
    CHECK_EQ(tr[2].op, 0);
    CHECK_EQ(observer.starts, 1);
    CHECK_EQ(observer.nanswers, 1);
    CHECK_EQ(observer.answers[0].size, 8);
    CHECK_EQ(s.starts, 1);
    CHECK_EQ(s.nanswers, 1);

    /* A failing observer: logged at warn, the attached work still answers. */
    script_reset(&observer);
    observer.fail_after = 1;
    observer.fail_message = "harness observer gives up";
    ret = converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    CHECK_EQ(ret, 77);
    CHECK_EQ(s.starts, 2);
    CHECK(t_log_count(t, LOG_LEVEL_WARN, "observer 'watch' failed: the work failed: harness observer gives up; the conversation goes on") == 1,
          "no warn line for the failing observer in the log");

    /* Detached work leaves the observer: the hypercall returns 0 after it. */
    script_reset(&observer);
    observer.fail_after = 0;
    CHECK_EQ(api.detach(HC_SYSCALL_ENTER), 0);
    ret = converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    t_traps_of_conv(t, id, &n);
    CHECK_EQ(ret, 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(observer.starts, 1);
    CHECK_EQ(s.starts, 2);

    /* Gone: nothing serves the number any more. */
    CHECK_EQ(api.stop_observing(HC_SYSCALL_ENTER, "watch"), 0);
    CHECK(api.stop_observing(HC_SYSCALL_ENTER, "watch") != 0, "a second portal_stop_observing returned 0");
    CHECK(t_log_count(t, LOG_LEVEL_ERROR, "portal_stop_observing(0x1338): no observer 'watch'") == 1,
          "no error line for the second portal_stop_observing");
    converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 1);
    CHECK_EQ(observer.starts, 1);
    CHECK(api.observe(HC_SYSCALL_ENTER, "watch", NULL, NULL) != 0, "portal_observe took a NULL step");
    CHECK(api.observe(0xbebebebe, "watch", script_step, &observer) != 0,
          "portal_observe took REGISTER_MEM_REGION");
}

static void attach_protocol_numbers_refused(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    CHECK(api.attach(PORTAL_HC_REGISTER_MEM_REGION, script_step, &s) != 0, "REGISTER_MEM_REGION");
    CHECK(api.attach(PORTAL_HC_ENABLE_PORTAL_INTERRUPT, script_step, &s) != 0,
          "ENABLE_PORTAL_INTERRUPT");
    CHECK(api.attach(PORTAL_HC_PORTAL_INTERRUPT, script_step, &s) != 0, "PORTAL_INTERRUPT");
    /* and they still work */
    guest_register_region(g, 0);
    igloo_portal(g, 0, HC_PORTAL_INTERRUPT, 1, 0);
    CHECK_EQ(s.starts, 0);
}

/* ------------------------------------------------------------- threads -- */

#define NV 8
#define SLOT_IN(g, i) (kdata(g) + (uint64_t)(i) * 16)
#define SLOT_OUT(g, i) (kdata(g) + (uint64_t)(i) * 16 + 8)

typedef struct nest_each {
    int want[GUEST_MAX_VCPUS];    /* per vCPU: nest in the next READ (only its thread touches it) */
    uint64_t in[GUEST_MAX_VCPUS], out[GUEST_MAX_VCPUS];
    int nested[GUEST_MAX_VCPUS];
} nest_each;

static nest_each ne;

static bool nest_when_asked(void *userdata, int vcpu, int depth, uint32_t op, uint64_t *num,
                            uint64_t *a1, uint64_t *a2)
{
    nest_each *p = userdata;
    if (depth != 0 || op != OP_READ || !p->want[vcpu])
        return false;
    p->want[vcpu] = 0;
    p->nested[vcpu]++;
    *num = HC_SYSCALL_RETURN;
    *a1 = p->in[vcpu];
    *a2 = p->out[vcpu];
    return true;
}

typedef struct thread_job {
    guest *g;
    int vcpu;
    int count;
    int nests;
    char error[200];
} thread_job;

static void *vcpu_thread(void *arg)
{
    thread_job *j = arg;
    guest *g = j->g;
    int v = j->vcpu;
    for (int i = 0; i < j->count && !j->error[0]; i++) {
        uint64_t value = ((uint64_t)(v + 1) << 40) + (uint64_t)i * 0x101;
        guest_put_u64(g, SLOT_IN(g, v), value);
        bool nest = i % 3 == 1;
        if (nest) {
            ne.want[v] = 1;
            ne.in[v] = SLOT_IN(g, NV + v);
            ne.out[v] = SLOT_OUT(g, NV + v);
            guest_put_u64(g, ne.in[v], ~value);
            j->nests++;
        }
        uint64_t ret = igloo_portal(g, v, HC_SYSCALL_ENTER, SLOT_IN(g, v), SLOT_OUT(g, v));
        if (ret != value + 1)
            snprintf(j->error, sizeof j->error, "vCPU %d conversation %d returned %#llx, expected %#llx",
                     v, i, (unsigned long long)ret, (unsigned long long)(value + 1));
        else if (guest_get_u64(g, SLOT_OUT(g, v)) != word_out(value))
            snprintf(j->error, sizeof j->error, "vCPU %d conversation %d: wrong output", v, i);
        else if (nest && guest_get_u64(g, ne.out[v]) != word_out(~value))
            snprintf(j->error, sizeof j->error, "vCPU %d conversation %d: wrong nested output", v, i);
    }
    return NULL;
}

/* The first answers of 8 vCPUs at the same moment: the threads wait at a
 * barrier, then each runs one conversation. Run first in a fresh process
 * (Tests/fuzz/run-sanitized.sh does), it makes the library's lazily
 * initialised globals (ResponseCode.none) initialise on several vCPU threads
 * at once: the path of the swift_once entry in Tests/fuzz/tsan.supp. */
typedef struct first_answer_job {
    guest *g;
    int vcpu;
    pthread_barrier_t *start;
    uint64_t ret;
} first_answer_job;

static void *first_answer_thread(void *arg)
{
    first_answer_job *j = arg;
    guest_put_u64(j->g, SLOT_IN(j->g, j->vcpu), 0x1000 + (uint64_t)j->vcpu);
    pthread_barrier_wait(j->start);
    j->ret = igloo_portal(j->g, j->vcpu, HC_SYSCALL_ENTER, SLOT_IN(j->g, j->vcpu), SLOT_OUT(j->g, j->vcpu));
    return NULL;
}

static void first_answers_at_once(T *t)
{
    REQUIRE_API();
    SETUP(64, false, NV);
    memset(&ws, 0, sizeof ws);
    guest_set_recording(g, false);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, word_step, &ws), 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NV);
    static first_answer_job jobs[NV];
    pthread_t th[NV];
    for (int v = 0; v < NV; v++) {
        jobs[v] = (first_answer_job){g, v, &start, 0};
        pthread_create(&th[v], NULL, first_answer_thread, &jobs[v]);
    }
    for (int v = 0; v < NV; v++)
        pthread_join(th[v], NULL);
    pthread_barrier_destroy(&start);
    for (int v = 0; v < NV; v++) {
        CHECK_EQ(jobs[v].ret, 0x1000 + (uint64_t)v + 1);
        CHECK_EQ(guest_get_u64(g, SLOT_OUT(g, v)), word_out(0x1000 + (uint64_t)v));
    }
    CHECK_EQ(ws.failed, 0);
}

/* 8 threads, one per vCPU, each running conversations (a third of them with
 * a nested one) while the main thread queues interrupts. */
static void concurrent_threads(T *t)
{
    REQUIRE_API();
    SETUP(64, false, NV);
    memset(&ws, 0, sizeof ws);
    memset(&ne, 0, sizeof ne);
    memset(&tick, 0, sizeof tick);
    guest_set_nest_hook(g, nest_when_asked, &ne);
    guest_set_recording(g, false);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, word_step, &ws), 0);
    CHECK_EQ(api.attach(HC_SYSCALL_RETURN, word_step, &ws), 0);
    CHECK_EQ(api.register_interrupt("tick", irq_step, &tick), 0);
    static thread_job jobs[NV];
    pthread_t th[NV];
    for (int v = 0; v < NV; v++) {
        memset(&jobs[v], 0, sizeof jobs[v]);
        jobs[v].g = g;
        jobs[v].vcpu = v;
        jobs[v].count = 1000;
        pthread_create(&th[v], NULL, vcpu_thread, &jobs[v]);
    }
    int queued = 0;
    for (int i = 0; i < 200; i++) {
        if (api.queue_interrupt("tick"))
            queued++;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    int nests = 0;
    for (int v = 0; v < NV; v++) {
        pthread_join(th[v], NULL);
        nests += jobs[v].nests;
    }
    for (int v = 0; v < NV; v++)
        CHECK(!jobs[v].error[0], "%s", jobs[v].error);
    igloo_portal(g, 0, HC_SYSCALL_ENTER + 0x100, 0, 0);
    igloo_portal(g, 0, HC_SYSCALL_ENTER + 0x100, 0, 0);
    CHECK_EQ(ws.failed, 0);
    CHECK_EQ(ws.finished, 8 * 1000 + (uint64_t)nests);
    CHECK(tick.runs >= 1 && tick.runs <= queued, "tick ran %d times for %d queued", tick.runs, queued);
    /* nothing is left pending: one more queue runs exactly once more */
    int runs = tick.runs;
    CHECK(api.queue_interrupt("tick"), "queue tick");
    guest_hypercall(g, 0, HC_MODULE_BASE, 0, 0, 0, 0, NULL);
    igloo_portal(g, 0, HC_SYSCALL_ENTER + 0x100, 0, 0);
    igloo_portal(g, 0, HC_SYSCALL_ENTER + 0x100, 0, 0);
    CHECK_EQ(tick.runs, runs + 1);
    t_note(t, "%d nested, tick queued %d times, ran %d times", nests, queued, runs);
}

/* ------------------------------------------------- limits and teardown -- */

/* uninit_plugin with three live conversations: each is logged, and after a
 * new init_plugin the same pages start fresh conversations. */
static void uninit_with_live_conversations(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 3);
    memset(&ws, 0, sizeof ws);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, word_step, &ws), 0);
    gconv *c[3];
    uint64_t regions[3];
    for (int v = 0; v < 3; v++) {
        guest_put_u64(g, SLOT_IN(g, v), 100 + (uint64_t)v);
        c[v] = guest_conv_start(g, v, HC_SYSCALL_ENTER, SLOT_IN(g, v), SLOT_OUT(g, v));
        guest_conv_step(c[v]);
        regions[v] = guest_conv_region(c[v]);
    }
    int stale = emu_stale_callbacks();
    t_uninit(t);
    for (int v = 0; v < 3; v++)
        guest_conv_free(c[v]);       /* the guest side is abandoned */
    CHECK(emu_stale_callbacks() == stale, "uninit_plugin left its hypercall callback registered");
    for (int v = 0; v < 3; v++) {
        char hex[32];
        snprintf(hex, sizeof hex, LOG_LIVE_CONVERSATION_REGION_FMT, (unsigned long long)regions[v]);
        CHECK(t_log_count(t, NULL, hex) >= 1, "no log line names live region %s", hex);
    }
    CHECK(t_init(t, NULL), "init_plugin after uninit_plugin failed");
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, word_step, &ws), 0);
    for (int v = 0; v < 3; v++) {
        uint64_t id;
        uint64_t ret = converse(g, v, HC_SYSCALL_ENTER, SLOT_IN(g, v), SLOT_OUT(g, v), &id);
        size_t n;
        trap_record *tr = t_traps_of_conv(t, id, &n);
        CHECK_EQ(n, 3);
        CHECK(tr[0].region == regions[0] || tr[0].region == regions[1] || tr[0].region == regions[2],
              "a fresh page was used instead of a reused one");
        CHECK_EQ(ret, 101 + (uint64_t)v);
    }
    CHECK_EQ(ws.failed, 0);
}

/* ------------------------------------------------------------ op tables -- */

static void ops_path(T *t, char *out, size_t len)
{
    snprintf(out, len, "%s", t->log_path);
    char *dot = strrchr(out, '.');
    if (dot)
        snprintf(dot, len - (size_t)(dot - out), ".ops");
}

static bool write_ops(const char *path, const char *const *names, int n, const char *comment)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    fprintf(f, "# %s\n", comment);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n", names[i]);
    return fclose(f) == 0;
}

static void op_table_default(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    static const struct { const char *name; uint32_t op; } want[] = {
        {"READ", 1}, {"WRITE", 2}, {"READ_STR", 3}, {"READ_PTR_ARRAY", 4}, {"DUMP", 5},
        {"OSI_PROC_PTREGS", 13}, {"READ_TIME", 17}, {"KALLSYMS_LOOKUP", 33},
        {"SET_SCOPE_ENABLED", 52}, {"VFS_OPEN", 53}, {"VFS_CLOSE", 55},
        {"NO_SUCH_OP", 0}, {"MAX", 0}, {"", 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(api.op(want[i].name) == want[i].op, "portal_op(\"%s\") = %u, expected %u",
              want[i].name, api.op(want[i].name), want[i].op);
}

/* A shifted table (ops=FILE): numbers follow the file, and the guest was
 * built with the same list. */
static void op_table_shifted(T *t)
{
    REQUIRE_API();
    static const char *const names[] = {"WRITE", "READ", "READ_TIME", "READ_STR"};
    char path[1100], arg[1200];
    ops_path(t, path, sizeof path);
    CHECK(write_ops(path, names, 4, "a shifted op table for the harness"), "cannot write %s", path);
    snprintf(arg, sizeof arg, "ops=%s", path);
    guest_config c = {.word_bits = 64};
    const char *args[] = {arg};
    guest *g = setup_config(t, &c, args, 1, false);
    if (!g)
        return;
    guest_set_ops(g, names, 4);
    guest_boot(g, 0);
    CHECK_EQ(api.op("WRITE"), 1);
    CHECK_EQ(api.op("READ"), 2);
    CHECK_EQ(api.op("READ_TIME"), 3);
    CHECK_EQ(api.op("READ_STR"), 4);
    CHECK_EQ(api.op("KALLSYMS_LOOKUP"), 0);
    memset(&s, 0, sizeof s);
    static const uint8_t four[4] = {9, 8, 7, 6};
    script_cmd(&s, api.op("READ"), 0, kdata(g), 8, NULL, 0);
    script_cmd(&s, api.op("READ_TIME"), 0, 0, 0, NULL, 0);
    script_cmd(&s, api.op("WRITE"), 0, USER_BASE, 4, four, 4);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(n, 4);
    CHECK_HEADER(&tr[0], 2, PORTAL_CURRENT_PID, kdata(g), 8);
    CHECK_HEADER(&tr[1], 3, PORTAL_CURRENT_PID, 0, 0);
    CHECK_HEADER(&tr[2], 1, PORTAL_CURRENT_PID, USER_BASE, 4);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_READ_NUM);
    CHECK_EQ(s.answers[1].size, TIME0);
    CHECK_EQ(s.answers[2].code, PORTAL_RESP_WRITE_OK);
    uint8_t mem[4];
    guest_peek(g, USER_BASE, mem, 4);
    CHECK_BYTES(mem, four, 4);
}

/* The older release: ends at SET_SCOPE_ENABLED 52, MAX 53. */
static void op_table_older(T *t)
{
    REQUIRE_API();
    char path[1100], arg[1200];
    ops_path(t, path, sizeof path);
    CHECK(write_ops(path, standard_op_names, 52, "the older release: MAX 53"), "cannot write %s",
          path);
    snprintf(arg, sizeof arg, "ops=%s", path);
    guest_config c = {.word_bits = 32, .big_endian = true};
    const char *args[] = {arg};
    guest *g = setup_config(t, &c, args, 1, false);
    if (!g)
        return;
    guest_set_ops(g, standard_op_names, 52);
    guest_boot(g, 0);
    CHECK_EQ(api.op("SET_SCOPE_ENABLED"), 52);
    CHECK_EQ(api.op("VFS_OPEN"), 0);
    CHECK_EQ(api.op("READ_TIME"), 17);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ_TIME"), 0, 0, 0, NULL, 0);
    script_cmd(&s, 53, 0, 0, 0, NULL, 0);       /* MAX of this table: never sent */
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_NUM);
    CHECK_EQ(n, 2);
    CHECK(tr[1].op == 0, "op 53 (MAX of the table) was written: header op %#x", tr[1].op);
}

const scenario scenarios_conversations[] = {
    {"step_fail_then_good", step_fail_then_good, false},
    {"step_fail_first_step", step_fail_first_step, false},
    {"finish_immediately", finish_immediately, false},
    {"attach_detach_replace", attach_detach_replace, false},
    {"observe_then_attached", observe_then_attached, false},
    {"attach_protocol_numbers_refused", attach_protocol_numbers_refused, false},
    {"first_answers_at_once", first_answers_at_once, false},
    {"concurrent_threads", concurrent_threads, false},
    {"uninit_with_live_conversations", uninit_with_live_conversations, false},
    {"op_table_default", op_table_default, false},
    {"op_table_shifted", op_table_shifted, false},
    {"op_table_older", op_table_older, false},
    {NULL, NULL, false},
};
