/*
 * engine-bench.c - micro-benchmarks of libportal.so's engine through its real
 * PANDA-style ABI (include/portal/panda.h), with no QEMU.
 *
 * This program is a tiny emulator of its own: it exports the emulator side
 * of panda.h (link with -rdynamic), keeps a flat, little-endian, 64-bit
 * guest memory in one array, dlopen()s the libportal.so named by --lib,
 * calls init_plugin(load=MODULE, module_arg=bench, log=error,
 * max_conversations=10000) with the demonstration module named by --module, and
 * plays the guest kernel module of PROTOCOL.md §4 (the round trip of
 * Tests/harness/guest_module.h, shared with the C harness's guest): trap with
 * (num, a1, a2, region, arg4) -> serve the READ/WRITE the host left in the
 * region header -> trap again with the response code -> ... until op 0.
 *
 * A "round trip" is one trap (the plugin's hypercall callback, including
 * its region reads and writes through panda_virtual_memory_read/write) plus
 * the mock guest serving the command it left (a bounds-checked memcpy of
 * the asked bytes into the region). Nothing is subtracted from any figure;
 * instead two floors run through the same guest loop:
 *   null   the guest alone: the callback does nothing (returns at once) and
 *          the guest writes the READ command into its region itself, like
 *          Tests/guests' guest-noplugin-bench: the mock guest's own cost.
 *   floor  a hand-written C host inside this program (no engine, no
 *          allocation, hard-coded protocol) answering the same conversation
 *          through the same panda_virtual_memory_read/write calls the
 *          plugin uses: what any host must pay here.
 * so the plugin's share is (c or swift) - floor.
 *
 * Workloads:
 *   swift  the demo module's bench READ_LOOP (hypercall 0x1338, arg1 0xbe0c0001, arg2 =
 *          guest address of {u64 count, u64 address}): one Swift async
 *          handler doing `count` 8-byte READs (+2 READs of its parameters).
 *   c      a C step function (portal_attach) on hypercall 0x133c doing
 *          arg1 8-byte READs of arg2, its state in conv->state.
 *   bulk   the demo module's bench BULK_READ/BULK_WRITE and a C step bulk read of 1 MiB.
 *
 * Output: one JSON object per line on stdout (bench/run.py reads them);
 * progress and problems on stderr. Exit status 0 only if every check held.
 *
 *   engine-bench --lib .build/release/libportal.so [--reps 7] [--trips N]
 *                [--only null,floor,c,swift,live,threads,bulk,alloc]
 *   engine-bench --lib ... --callgrind c|swift|floor|null --trips N
 *       (for valgrind --tool=callgrind --toggle-collect=cg_measured: one
 *        warm-up conversation, then cg_measured() runs one conversation of
 *        N round trips and nothing else)
 *   engine-bench-trace --lib ... --trace-retains c|swift
 *       (built with -DTRACE_RETAINS: the objects swift_retain/swift_release
 *        see on every steady-state round trip, named by their metadata)
 *   engine-bench --lib ... --trace-allocs c|swift
 *       (a backtrace on stderr for every heap allocation of one whole short
 *        conversation after a warm-up)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <portal/panda.h>
#include <portal/portal.h>

/* The guest module's side of a round trip, shared with the C harness's guest. */
#include "../Tests/harness/guest_module.h"

/* ---- heap allocation counting ------------------------------------------------
 * malloc and friends are defined here and exported (-rdynamic), so every
 * allocation of libportal.so and of the Swift runtime it links resolves to
 * them. They forward to glibc's own entry points and count calls while
 * `counting` is set. */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int counting;
static volatile int tracing;          /* --trace-allocs: a backtrace per counted allocation */
static __thread int in_trace;
static atomic_ulong n_alloc, n_free;

static void trace_alloc(void)
{
    if (in_trace) return;
    in_trace = 1;
    void *frames[24];
    int n = backtrace(frames, 24);
    char line[64];
    int len = snprintf(line, sizeof line, "-- allocation %lu\n", atomic_load(&n_alloc));
    fwrite(line, 1, (size_t)len, stderr);
    backtrace_symbols_fd(frames + 2, n - 2, 2);    /* no malloc */
    in_trace = 0;
}

static inline void count_alloc(void)
{
    if (counting) {
        atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
        if (tracing) trace_alloc();
    }
}

void *malloc(size_t n) { count_alloc(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count_alloc(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count_alloc(); return __libc_realloc(p, n); }
void free(void *p)
{
    if (p && counting) atomic_fetch_add_explicit(&n_free, 1, memory_order_relaxed);
    __libc_free(p);
}
void *memalign(size_t al, size_t n) { count_alloc(); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { count_alloc(); return __libc_memalign(al, n); }
void *valloc(size_t n) { count_alloc(); return __libc_memalign(4096, n); }
void *pvalloc(size_t n) { count_alloc(); return __libc_memalign(4096, (n + 4095) & ~(size_t)4095); }
int posix_memalign(void **out, size_t al, size_t n)
{
    if (al < sizeof(void *) || (al & (al - 1)) != 0) return EINVAL;
    count_alloc();
    void *p = __libc_memalign(al, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}

static void count_start(void)
{
    atomic_store(&n_alloc, 0);
    atomic_store(&n_free, 0);
    counting = 1;
}

static void count_stop(unsigned long *allocs, unsigned long *frees)
{
    counting = 0;
    *allocs = atomic_load(&n_alloc);
    *frees = atomic_load(&n_free);
}

/* ---- reference-count tracing (engine-bench-trace only) ---------------------
 * Built with -DTRACE_RETAINS, this program also defines swift_retain and
 * swift_release, so libportal.so's calls (and the concurrency runtime's)
 * resolve here first; they forward to libswiftCore's and, while
 * `rc_tracing` is set, tally each object. --trace-retains KIND then names
 * the objects retained on every round trip by the symbol of their type
 * metadata (dladdr), which tells per-conversation objects from objects
 * shared by every vCPU (whose reference counts bounce between cores). */
#ifdef TRACE_RETAINS
static volatile int rc_tracing;
struct rc_entry {
    void *object;
    unsigned long retains, releases;
};
#define RC_SLOTS 4096
static struct rc_entry rc_table[RC_SLOTS];
static unsigned long rc_dropped;

static void rc_note(void *object, int release)
{
    if (!object) return;
    uintptr_t h = ((uintptr_t)object >> 4) * 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < 64; i++) {
        struct rc_entry *e = &rc_table[(h + i) % RC_SLOTS];
        if (e->object == object || e->object == NULL) {
            e->object = object;
            if (release) e->releases++;
            else e->retains++;
            return;
        }
    }
    rc_dropped++;
}

void *swift_retain(void *object)
{
    static void *(*real)(void *);
    if (!real) real = (void *(*)(void *))dlsym(RTLD_NEXT, "swift_retain");
    if (rc_tracing) rc_note(object, 0);
    return real(object);
}

void swift_release(void *object)
{
    static void (*real)(void *);
    if (!real) real = (void (*)(void *))dlsym(RTLD_NEXT, "swift_release");
    if (rc_tracing) rc_note(object, 1);
    real(object);
}
#endif

/* ---- the guest: flat memory ----------------------------------------------- */

#define PAGE            4096u
#define HEADER          MODULE_HEADER
#define REGION_SIZE     4072u             /* PAGE - 24, registered at boot */
#define GUEST_BASE      0x40000000ull
#define DATA_BASE       GUEST_BASE                     /* the bench word, parameters */
#define WORD_ADDR       (DATA_BASE + 0x0)
#define PARAMS_ADDR(i)  (DATA_BASE + 0x100 + 16ull * (i))
#define REGION_BASE     (GUEST_BASE + 0x100000ull)      /* region pages */
#define MAX_REGIONS     8192u
#define BULK_BASE       (REGION_BASE + (uint64_t)MAX_REGIONS * PAGE)
#define BULK_BYTES      (1u << 20)
#define GUEST_SIZE      (BULK_BASE + BULK_BYTES + PAGE - GUEST_BASE)
#define BENCH_WORD      0x8877665544332211ull

#define OP_READ   1u
#define OP_WRITE  2u
#define OP_MAX    56

#define HC_SWIFT        0x1338u       /* the demo module's bench */
#define HC_C            0x133cu       /* C step: arg1 READs of arg2 */
#define HC_C_BULK       0x133bu       /* C step: read arg1 bytes at arg2 */
#define HC_FLOOR        0x5eed0001u   /* the in-harness floor host (not the plugin's) */
#define HC_FLOOR_BULK   0x5eed0002u
#define SEL_READ_LOOP   0xbe0c0001u
#define SEL_BULK_READ   0xbe0c0002u
#define SEL_BULK_WRITE  0xbe0c0003u

static uint8_t *gmem;

static inline uint8_t *gptr(uint64_t addr, uint64_t len)
{
    uint64_t off = addr - GUEST_BASE;
    if (addr < GUEST_BASE || off > GUEST_SIZE || len > GUEST_SIZE - off) return NULL;
    return gmem + off;
}

static inline uint64_t region_addr(unsigned i) { return REGION_BASE + (uint64_t)i * PAGE; }

static void put64(uint64_t addr, uint64_t v) { memcpy(gptr(addr, 8), &v, 8); }

/* ---- the emulator side of panda.h ------------------------------------------ */

struct CPUState {
    int index;
};

/* plugin_argv[0] becomes load=MODULE (--module) in main. */
static const char *plugin_argv[] = {"load=", "module_arg=bench", "log=error", "max_conversations=10000"};
static panda_hypercall_cb plugin_cb;
static int self_handle;

int panda_get_plugin_args(void *self, const char *const **argv)
{
    (void)self;
    *argv = plugin_argv;
    return (int)(sizeof plugin_argv / sizeof plugin_argv[0]);
}

void panda_get_guest_info(panda_guest_info *info)
{
    info->word_bits = 64;
    info->big_endian = 0;
    info->vcpu_count = 2;
}

void panda_register_hypercall_callback(void *self, panda_hypercall_cb callback)
{
    (void)self;
    plugin_cb = callback;
}

void panda_unregister_hypercall_callback(void *self)
{
    (void)self;
    plugin_cb = NULL;
}

int panda_cpu_index(CPUState *cpu) { return cpu->index; }

int panda_virtual_memory_read(CPUState *cpu, uint64_t addr, uint8_t *buf, int len)
{
    (void)cpu;
    uint8_t *p = len >= 0 ? gptr(addr, (uint64_t)len) : NULL;
    if (!p) return -1;
    memcpy(buf, p, (size_t)len);
    return 0;
}

int panda_virtual_memory_write(CPUState *cpu, uint64_t addr, const uint8_t *buf, int len)
{
    (void)cpu;
    uint8_t *p = len >= 0 ? gptr(addr, (uint64_t)len) : NULL;
    if (!p) return -1;
    memcpy(p, buf, (size_t)len);
    return 0;
}

static CPUState cpus[2] = {{0}, {1}};

/* ---- the mock guest module (PROTOCOL.md §4) -------------------------------- *
 * Its loop and its READ/WRITE are Tests/harness/guest_module.h's; what is
 * here is the flat memory they run over and what the benchmark counts. */

struct header {
    uint32_t op, pid;
    uint64_t addr, size;
};

typedef struct gconv {
    CPUState *cpu;
    panda_hypercall_cb cb;
    uint64_t num, a1, a2, region;
    uint8_t *hdr;          /* host pointer to the region page */
    uint64_t arg4;
    uint64_t ret;
    uint64_t served;       /* commands served */
    uint64_t self_feed;    /* null floor: READs the guest writes itself */
    int null_mode;         /* null floor: the guest feeds itself, then leaves */
    int done;
} gconv;

static atomic_ulong bad_pid, bad_op;

static void guest_begin(gconv *g)
{
    g->hdr = gptr(g->region, PAGE);
    memset(g->hdr, 0, HEADER);      /* like the module: only the header is zeroed */
    g->arg4 = 0;
    g->ret = 0;
    g->served = 0;
    g->done = 0;
}

static inline void guest_serve(gconv *g, uint32_t op)
{
    uint32_t pid;
    memcpy(&pid, g->hdr + 4, 4);
    if (pid != 0xffffffffu) atomic_fetch_add_explicit(&bad_pid, 1, memory_order_relaxed);
    g->arg4 = module_serve_flat(g->hdr, op, OP_READ, OP_WRITE, REGION_SIZE, gptr);
    g->served++;
}

/* One round trip: trap, then serve whatever the host left (or leave). */
static inline void guest_trap(gconv *g)
{
    panda_hypercall call = {.number = g->num, .args = {g->a1, g->a2, g->region, g->arg4}};
    if (g->cb(g->cpu, &call) && call.set_return) g->ret = call.return_value;
    if (g->null_mode) {
        if (g->self_feed == 0) {
            g->done = 1;
            return;
        }
        uint32_t op = OP_READ, pid = 0xffffffffu;
        uint64_t addr = WORD_ADDR, size = 8;
        memcpy(g->hdr, &op, 4);
        memcpy(g->hdr + 4, &pid, 4);
        memcpy(g->hdr + 8, &addr, 8);
        memcpy(g->hdr + 16, &size, 8);
        g->self_feed--;
        g->ret = BENCH_WORD;
    }
    int32_t op;
    memcpy(&op, g->hdr, 4);
    switch (module_after_trap(op, OP_MAX)) {
    case MODULE_LEAVE:
        g->done = 1;
        return;
    case MODULE_REFUSE:
        atomic_fetch_add_explicit(&bad_op, 1, memory_order_relaxed);
        g->done = 1;
        return;
    case MODULE_SERVE:
        guest_serve(g, (uint32_t)op);
        return;
    }
}

static void guest_run(gconv *g)
{
    guest_begin(g);
    while (!g->done) guest_trap(g);
}

/* A plain (non-conversation) hypercall. */
static void plain_hypercall(uint64_t num, uint64_t a1)
{
    panda_hypercall call = {.number = num, .args = {a1, 0, 0, 0}};
    plugin_cb(&cpus[0], &call);
}

/* ---- the floors ------------------------------------------------------------- */

static bool null_cb(CPUState *cpu, panda_hypercall *call)
{
    (void)cpu;
    (void)call;
    return true;
}

/* A hand-written host: per region, hard-coded READ loop or bulk read. */
struct floor_slot {
    uint64_t remaining, addr, last, done_bytes;
};
static struct floor_slot floor_slots[MAX_REGIONS];
static uint8_t floor_buf[2][HEADER + REGION_SIZE];   /* per vCPU */

static bool floor_cb(CPUState *cpu, panda_hypercall *call)
{
    uint32_t num = (uint32_t)call->number;
    if (num != HC_FLOOR && num != HC_FLOOR_BULK) return false;
    uint64_t region = call->args[2];
    struct floor_slot *s = &floor_slots[(region - REGION_BASE) / PAGE];
    uint8_t *buf = floor_buf[cpu->index];
    struct header h;
    if ((uint32_t)call->args[3] == 0) {
        s->remaining = call->args[0];
        s->addr = call->args[1];
        s->done_bytes = 0;
        if (s->remaining == 0) {
            call->return_value = 0;
            call->set_return = true;
            return true;
        }
    } else {
        bool bulk = num == HC_FLOOR_BULK;
        uint32_t want = bulk ? (uint32_t)(s->remaining < REGION_SIZE ? s->remaining : REGION_SIZE) : 8;
        if (panda_virtual_memory_read(cpu, region, buf, (int)(HEADER + want)) != 0) return true;
        memcpy(&h, buf, HEADER);
        if ((uint32_t)call->args[3] != PORTAL_RESP_READ_OK || h.size != want) {
            fprintf(stderr, "floor: unexpected answer\n");
            exit(1);
        }
        if (bulk) {
            s->remaining -= want;
            s->done_bytes += want;
            s->last = s->done_bytes;
        } else {
            memcpy(&s->last, buf + HEADER, 8);
            s->remaining--;
        }
        if (s->remaining == 0) {
            memset(&h, 0, sizeof h);
            h.pid = 0xffffffffu;
            panda_virtual_memory_write(cpu, region, (const uint8_t *)&h, HEADER);
            call->return_value = s->last;
            call->set_return = true;
            return true;
        }
    }
    if (num == HC_FLOOR_BULK) {
        h.op = OP_READ;
        h.pid = 0xffffffffu;
        h.addr = s->addr + s->done_bytes;
        h.size = s->remaining < REGION_SIZE ? s->remaining : REGION_SIZE;
        panda_virtual_memory_write(cpu, region, (const uint8_t *)&h, HEADER);
    } else {
        /* Like bench/floor-plugin.c: the READ command is built once. */
        static _Thread_local struct header cmd;
        static _Thread_local uint64_t cmd_addr = ~0ull;
        if (cmd_addr != s->addr) {
            cmd = (struct header){OP_READ, 0xffffffffu, s->addr, 8};
            cmd_addr = s->addr;
        }
        panda_virtual_memory_write(cpu, region, (const uint8_t *)&cmd, HEADER);
    }
    call->set_return = false;
    return true;
}

/* ---- the C step functions (portal.h) ---------------------------------------- */

static uint32_t op_read;

struct c_state {
    uint64_t remaining, last, done;
};

static portal_step c_read_loop(void *userdata, portal_conversation *conv, const portal_response *response,
                               portal_command *command, uint64_t *result)
{
    (void)userdata;
    struct c_state *s = conv->state;
    if (response == NULL) {
        s->remaining = conv->call.args[0];
    } else {
        if (response->code != PORTAL_RESP_READ_OK || response->size != 8) {
            conv->error = "bench: READ not answered READ_OK with 8 bytes";
            return PORTAL_STEP_FAIL;
        }
        memcpy(&s->last, response->data, 8);
        s->remaining--;
    }
    if (s->remaining == 0) {
        *result = s->last;
        return PORTAL_STEP_FINISH;
    }
    command->op = op_read;
    command->addr = conv->call.args[1];
    command->size = 8;
    return PORTAL_STEP_COMMAND;
}

static portal_step c_bulk_read(void *userdata, portal_conversation *conv, const portal_response *response,
                               portal_command *command, uint64_t *result)
{
    (void)userdata;
    struct c_state *s = conv->state;
    uint64_t total = conv->call.args[0];
    if (response != NULL) {
        if (response->code != PORTAL_RESP_READ_OK) {
            conv->error = "bench: bulk READ failed";
            return PORTAL_STEP_FAIL;
        }
        s->done += response->size;
    }
    if (s->done >= total) {
        *result = s->done;
        return PORTAL_STEP_FINISH;
    }
    uint64_t left = total - s->done;
    command->op = op_read;
    command->addr = conv->call.args[1] + s->done;
    command->size = (int64_t)(left < conv->region_size ? left : conv->region_size);
    return PORTAL_STEP_COMMAND;
}

/* ---- workloads -------------------------------------------------------------- */

enum kind { K_NULL, K_FLOOR, K_C, K_SWIFT, K_COUNT };
static const char *kind_name[K_COUNT] = {"null", "floor", "c", "swift"};

/* Sets up conversation g on `region` for `kind` doing `trips` READs of the
 * bench word. Swift takes its parameters from PARAMS_ADDR(param_slot). */
static void setup_read_loop(gconv *g, enum kind kind, CPUState *cpu, unsigned region, uint64_t trips,
                            unsigned param_slot)
{
    memset(g, 0, sizeof *g);
    g->cpu = cpu;
    g->region = region_addr(region);
    switch (kind) {
    case K_NULL:
        g->cb = null_cb;
        g->num = HC_FLOOR;
        g->null_mode = 1;
        g->self_feed = trips;
        break;
    case K_FLOOR:
        g->cb = floor_cb;
        g->num = HC_FLOOR;
        g->a1 = trips;
        g->a2 = WORD_ADDR;
        break;
    case K_C:
        g->cb = plugin_cb;
        g->num = HC_C;
        g->a1 = trips;
        g->a2 = WORD_ADDR;
        break;
    default:
        g->cb = plugin_cb;
        g->num = HC_SWIFT;
        g->a1 = SEL_READ_LOOP;
        g->a2 = PARAMS_ADDR(param_slot);
        put64(PARAMS_ADDR(param_slot), trips);
        put64(PARAMS_ADDR(param_slot) + 8, WORD_ADDR);
        break;
    }
}

/* Commands a read loop of `trips` READs is served (Swift reads its 2 parameters). */
static uint64_t expected_served(enum kind kind, uint64_t trips)
{
    return kind == K_SWIFT ? trips + 2 : trips;
}

static int failures;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "engine-bench: FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

static void check_loop(const char *what, enum kind kind, const gconv *g, uint64_t trips)
{
    if (!g->done || g->served != expected_served(kind, trips) || (trips && g->ret != BENCH_WORD)) {
        fail("%s/%s: served %" PRIu64 " commands (expected %" PRIu64 "), result 0x%" PRIx64, what,
             kind_name[kind], g->served, expected_served(kind, trips), g->ret);
    }
}

static inline double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* One long conversation: ns per round trip. */
static double sample_single(enum kind kind, uint64_t trips)
{
    gconv g;
    setup_read_loop(&g, kind, &cpus[0], 0, trips, 0);
    double t0 = now_ns();
    guest_run(&g);
    double t1 = now_ns();
    check_loop("single", kind, &g, trips);
    return (t1 - t0) / (double)g.served;
}

/* K live conversations driven round-robin: ns per round trip. */
static gconv *rr;

static double sample_live(enum kind kind, unsigned k, uint64_t total)
{
    uint64_t rounds = total / k;
    if (rounds < 4) rounds = 4;
    for (unsigned i = 0; i < k; i++) {
        setup_read_loop(&rr[i], kind, &cpus[0], i, rounds, 0);
        guest_begin(&rr[i]);
        guest_trap(&rr[i]);           /* started, first command served: parked */
    }
    double t0 = now_ns();
    for (uint64_t r = 1; r < rounds; r++) {
        for (unsigned i = 0; i < k; i++) guest_trap(&rr[i]);
    }
    double t1 = now_ns();
    for (unsigned i = 0; i < k; i++) {
        while (!rr[i].done) guest_trap(&rr[i]);
        check_loop("live", kind, &rr[i], rounds);
    }
    return (t1 - t0) / (double)((rounds - 1) * k);
}

/* Two vCPU threads, each its own conversation (cache-line apart). */
struct __attribute__((aligned(128))) thread_arg {
    pthread_barrier_t *barrier;
    double t0, t1;
    gconv g;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    pthread_barrier_wait(a->barrier);
    a->t0 = now_ns();
    guest_run(&a->g);
    a->t1 = now_ns();
    return NULL;
}

static void sample_threads(enum kind kind, uint64_t trips, double *per_thread, double *aggregate)
{
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    struct thread_arg args[2];
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        args[t].barrier = &barrier;
        /* regions and parameter blocks far apart: no shared cache lines */
        setup_read_loop(&args[t].g, kind, &cpus[t], 16u * (unsigned)t, trips, 8u * (unsigned)t);
    }
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, thread_main, &args[t]);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    pthread_barrier_destroy(&barrier);
    double start = args[0].t0 < args[1].t0 ? args[0].t0 : args[1].t0;
    double end = args[0].t1 > args[1].t1 ? args[0].t1 : args[1].t1;
    double served = 0, each = 0;
    for (int t = 0; t < 2; t++) {
        check_loop("threads", kind, &args[t].g, trips);
        served += (double)args[t].g.served;
        each += (args[t].t1 - args[t].t0) / (double)args[t].g.served;
    }
    *per_thread = each / 2;
    *aggregate = (end - start) / served;
}

/* Bulk: `reps` conversations moving 1 MiB each: MB/s (10^6 bytes). */
enum bulk { B_SWIFT_READ, B_SWIFT_WRITE, B_C_READ, B_FLOOR_READ, B_COUNT };
static const char *bulk_name[B_COUNT] = {"swift_read", "swift_write", "c_read", "floor_read"};

static double sample_bulk(enum bulk b, int reps)
{
    gconv g;
    memset(&g, 0, sizeof g);
    g.cpu = &cpus[0];
    g.region = region_addr(0);
    switch (b) {
    case B_SWIFT_READ:
    case B_SWIFT_WRITE:
        g.cb = plugin_cb;
        g.num = HC_SWIFT;
        g.a1 = b == B_SWIFT_READ ? SEL_BULK_READ : SEL_BULK_WRITE;
        g.a2 = PARAMS_ADDR(0);
        put64(PARAMS_ADDR(0), BULK_BYTES);
        put64(PARAMS_ADDR(0) + 8, BULK_BASE);
        break;
    case B_C_READ:
        g.cb = plugin_cb;
        g.num = HC_C_BULK;
        g.a1 = BULK_BYTES;
        g.a2 = BULK_BASE;
        break;
    default:
        g.cb = floor_cb;
        g.num = HC_FLOOR_BULK;
        g.a1 = BULK_BYTES;
        g.a2 = BULK_BASE;
        break;
    }
    uint64_t chunks = (BULK_BYTES + REGION_SIZE - 1) / REGION_SIZE;
    uint64_t want_served = chunks + (b <= B_SWIFT_WRITE ? 2 : 0);
    double t0 = now_ns();
    for (int r = 0; r < reps; r++) {
        guest_run(&g);
        if (!g.done || g.ret != BULK_BYTES || g.served != want_served) {
            fail("bulk %s: result %" PRIu64 ", %" PRIu64 " commands served (expected %" PRIu64 ")",
                 bulk_name[b], g.ret, g.served, want_served);
            return 0;
        }
    }
    double t1 = now_ns();
    if (b == B_SWIFT_WRITE) {
        const uint8_t *p = gptr(BULK_BASE, BULK_BYTES);
        for (uint32_t i = 0; i < BULK_BYTES; i++) {
            if (p[i] != (uint8_t)i) {
                fail("bulk swift_write: byte %u is 0x%02x", i, p[i]);
                break;
            }
        }
        for (uint32_t i = 0; i < BULK_BYTES; i++) gmem[BULK_BASE - GUEST_BASE + i] = (uint8_t)(i * 13u + 7u);
    }
    return (double)BULK_BYTES * reps / ((t1 - t0) / 1e9) / 1e6;
}

/* ---- output ----------------------------------------------------------------- */

static void emit_samples(const char *metric, const char *unit, const double *v, int n, const char *note)
{
    printf("{\"metric\": \"%s\", \"unit\": \"%s\", \"samples\": [", metric, unit);
    for (int i = 0; i < n; i++) printf("%s%.3f", i ? ", " : "", v[i]);
    printf("]%s%s%s}\n", note ? ", \"note\": \"" : "", note ? note : "", note ? "\"" : "");
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[64];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- allocation counts -------------------------------------------------------- */

static void alloc_steady(enum kind kind)
{
    const uint64_t warm = 20000, measured = 200000;
    gconv g;
    setup_read_loop(&g, kind, &cpus[0], 0, warm + measured + 10, 0);
    guest_begin(&g);
    for (uint64_t i = 0; i < warm; i++) guest_trap(&g);
    unsigned long allocs, frees;
    count_start();
    for (uint64_t i = 0; i < measured; i++) guest_trap(&g);
    count_stop(&allocs, &frees);
    while (!g.done) guest_trap(&g);
    check_loop("alloc", kind, &g, warm + measured + 10);
    printf("{\"metric\": \"alloc.%s.per_round_trip\", \"unit\": \"allocations\", \"value\": %.6f, "
           "\"allocations\": %lu, \"frees\": %lu, \"round_trips\": %" PRIu64 "}\n",
           kind_name[kind], (double)allocs / (double)measured, allocs, frees, measured);

    /* A whole short conversation: start, 1 READ, finish. */
    const int convs = 2000;
    for (int i = 0; i < 100; i++) {
        setup_read_loop(&g, kind, &cpus[0], 0, 1, 0);
        guest_run(&g);
    }
    count_start();
    for (int i = 0; i < convs; i++) {
        setup_read_loop(&g, kind, &cpus[0], 0, 1, 0);
        guest_run(&g);
    }
    count_stop(&allocs, &frees);
    check_loop("alloc-conversation", kind, &g, 1);
    printf("{\"metric\": \"alloc.%s.per_conversation\", \"unit\": \"allocations\", \"value\": %.3f, "
           "\"allocations\": %lu, \"frees\": %lu, \"conversations\": %d, "
           "\"note\": \"a whole conversation: start, %d READ(s), finish\"}\n",
           kind_name[kind], (double)allocs / convs, allocs, frees, convs,
           kind == K_SWIFT ? 3 : 1);
    fflush(stdout);
}

static void alloc_live(enum kind kind, unsigned k)
{
    const uint64_t rounds = 400;
    for (unsigned i = 0; i < k; i++) {
        setup_read_loop(&rr[i], kind, &cpus[0], i, rounds, 0);
        guest_begin(&rr[i]);
        guest_trap(&rr[i]);
    }
    for (uint64_t r = 1; r < 100; r++)
        for (unsigned i = 0; i < k; i++) guest_trap(&rr[i]);
    unsigned long allocs, frees;
    count_start();
    for (uint64_t r = 100; r < rounds; r++)
        for (unsigned i = 0; i < k; i++) guest_trap(&rr[i]);
    count_stop(&allocs, &frees);
    for (unsigned i = 0; i < k; i++) {
        while (!rr[i].done) guest_trap(&rr[i]);
        check_loop("alloc-live", kind, &rr[i], rounds);
    }
    uint64_t trips = (rounds - 100) * k;
    printf("{\"metric\": \"alloc.%s.live%u.per_round_trip\", \"unit\": \"allocations\", \"value\": %.6f, "
           "\"allocations\": %lu, \"frees\": %lu, \"round_trips\": %" PRIu64 "}\n",
           kind_name[kind], k, (double)allocs / (double)trips, allocs, frees, trips);
    fflush(stdout);
}

/* The counter must see this program's and the library's allocations. */
static void alloc_selftest(unsigned long init_allocs)
{
    void *(*volatile m)(size_t) = malloc;
    void (*volatile f)(void *) = free;
    unsigned long allocs, frees;
    count_start();
    void *a = m(24), *b = m(4000), *c = m(1 << 20);
    f(a);
    f(b);
    f(c);
    count_stop(&allocs, &frees);
    if (allocs != 3 || frees != 3) fail("allocation counter: counted %lu/%lu of 3 mallocs/frees", allocs, frees);
    if (init_allocs == 0) fail("allocation counter: init_plugin allocated nothing (malloc not interposed?)");
    printf("{\"metric\": \"alloc.selftest\", \"unit\": \"allocations\", \"value\": %lu, \"frees\": %lu, "
           "\"init_plugin_allocations\": %lu, \"note\": \"3 deliberate mallocs counted; "
           "init_plugin's allocations show the library's calls are interposed\"}\n",
           allocs, frees, init_allocs);
    fflush(stdout);
}

/* ---- callgrind mode ----------------------------------------------------------- */

__attribute__((noinline)) void cg_measured(enum kind kind, uint64_t trips)
{
    gconv g;
    setup_read_loop(&g, kind, &cpus[0], 0, trips, 0);
    guest_run(&g);
    check_loop("callgrind", kind, &g, trips);
}

/* ---- main --------------------------------------------------------------------- */

static bool want(const char *only, const char *name)
{
    if (!only) return true;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
    }
    return false;
}

static enum kind parse_kind(const char *s)
{
    for (int k = 0; k < K_COUNT; k++)
        if (strcmp(s, kind_name[k]) == 0) return (enum kind)k;
    fprintf(stderr, "engine-bench: unknown kind '%s' (null, floor, c, swift)\n", s);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *lib = NULL, *module = NULL, *only = NULL, *cg = NULL, *trace = NULL, *rc_kind = NULL;
    int reps = 7;
    uint64_t trips = 2000000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lib") && i + 1 < argc) lib = argv[++i];
        else if (!strcmp(argv[i], "--module") && i + 1 < argc) module = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--trips") && i + 1 < argc) trips = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--callgrind") && i + 1 < argc) cg = argv[++i];
        else if (!strcmp(argv[i], "--trace-allocs") && i + 1 < argc) trace = argv[++i];
        else if (!strcmp(argv[i], "--trace-retains") && i + 1 < argc) rc_kind = argv[++i];
        else {
            fprintf(stderr, "usage: %s --lib libportal.so --module libPortalDemo.so [--reps N] [--trips N] [--only LIST] [--callgrind KIND]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!lib || !module || reps < 1 || reps > 64 || trips < 100) {
        fprintf(stderr, "engine-bench: --lib and --module are required; --reps 1..64; --trips >= 100\n");
        return 2;
    }
    static char load_arg[4200];
    snprintf(load_arg, sizeof load_arg, "load=%s", module);
    plugin_argv[0] = load_arg;

    gmem = aligned_alloc(PAGE, GUEST_SIZE);
    memset(gmem, 0, GUEST_SIZE);
    put64(WORD_ADDR, BENCH_WORD);
    for (uint32_t i = 0; i < BULK_BYTES; i++) gmem[BULK_BASE - GUEST_BASE + i] = (uint8_t)(i * 13u + 7u);
    rr = calloc(MAX_REGIONS, sizeof *rr);

    void *handle = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
        fprintf(stderr, "engine-bench: dlopen %s: %s\n", lib, dlerror());
        return 1;
    }
    bool (*init)(void *) = (bool (*)(void *))dlsym(handle, "init_plugin");
    void (*uninit)(void *) = (void (*)(void *))dlsym(handle, "uninit_plugin");
    int (*attach)(uint32_t, portal_step_fn, void *) =
        (int (*)(uint32_t, portal_step_fn, void *))dlsym(handle, "portal_attach");
    uint32_t (*opnum)(const char *) = (uint32_t(*)(const char *))dlsym(handle, "portal_op");
    if (!init || !uninit || !attach || !opnum) {
        fprintf(stderr, "engine-bench: %s lacks init_plugin/uninit_plugin/portal_attach/portal_op\n", lib);
        return 1;
    }
    unsigned long init_allocs, init_frees;
    count_start();
    bool ok = init(&self_handle);
    count_stop(&init_allocs, &init_frees);
    if (!ok || !plugin_cb) {
        fprintf(stderr, "engine-bench: init_plugin failed\n");
        return 1;
    }
    op_read = opnum("READ");
    if (op_read != OP_READ || attach(HC_C, c_read_loop, NULL) != 0 || attach(HC_C_BULK, c_bulk_read, NULL) != 0) {
        fprintf(stderr, "engine-bench: portal_op/portal_attach failed\n");
        return 1;
    }
    /* Boot like the guest module: register the region size. */
    plain_hypercall(0xbebebebeu, REGION_SIZE);

    if (cg) {
        enum kind kind = parse_kind(cg);
        gconv g;                      /* warm-up, outside the toggled function */
        setup_read_loop(&g, kind, &cpus[0], 0, 1000, 0);
        guest_run(&g);
        cg_measured(kind, trips);     /* the only thing --toggle-collect=cg_measured counts */
        uninit(&self_handle);
        return failures ? 1 : 0;
    }

    if (rc_kind) {
#ifdef TRACE_RETAINS
        /* Objects retained/released during M steady-state round trips. */
        enum kind kind = parse_kind(rc_kind);
        const uint64_t warm = 1000, measured = 100000;
        gconv g;
        setup_read_loop(&g, kind, &cpus[0], 0, warm + measured + 10, 0);
        guest_begin(&g);
        for (uint64_t i = 0; i < warm; i++) guest_trap(&g);
        rc_tracing = 1;
        for (uint64_t i = 0; i < measured; i++) guest_trap(&g);
        rc_tracing = 0;
        /* Named while the conversation is alive: its objects still exist. */
        unsigned long total_r = 0, total_l = 0;
        for (unsigned i = 0; i < RC_SLOTS; i++) {
            struct rc_entry *e = &rc_table[i];
            if (!e->object) continue;
            total_r += e->retains;
            total_l += e->releases;
            if (e->retains + e->releases < measured / 2) continue;
            void *metadata = *(void **)e->object;
            Dl_info info;
            memset(&info, 0, sizeof info);
            bool found = dladdr(metadata, &info) != 0;
            /* Not a symbol (runtime-instantiated metadata, e.g. a generic
             * class): ask the runtime, for class metadata (kind 0) only. */
            char type_name[160] = "";
            uintptr_t metadata_kind = *(uintptr_t *)metadata;
            typedef struct { const char *data; uintptr_t length; } type_name_pair;
            type_name_pair (*get_name)(const void *, bool) =
                (type_name_pair(*)(const void *, bool))dlsym(RTLD_DEFAULT, "swift_getTypeName");
            if (get_name && metadata_kind == 0) {
                type_name_pair n = get_name(metadata, true);
                snprintf(type_name, sizeof type_name, "%.*s", (int)(n.length < 150 ? n.length : 150), n.data);
            } else {
                snprintf(type_name, sizeof type_name, "metadata kind 0x%lx", (unsigned long)metadata_kind);
            }
            printf("{\"object\": \"%p\", \"retains_per_round_trip\": %.3f, \"releases_per_round_trip\": %.3f, "
                   "\"type\": \"%s\", \"metadata_symbol\": \"%s\", \"metadata_module\": \"%s\", "
                   "\"metadata_module_offset\": \"0x%lx\"}\n",
                   e->object, (double)e->retains / (double)measured, (double)e->releases / (double)measured, type_name,
                   found && info.dli_sname ? info.dli_sname : "", found && info.dli_fname ? info.dli_fname : "",
                   found ? (unsigned long)((char *)metadata - (char *)info.dli_fbase) : 0ul);
        }
        printf("{\"total_retains_per_round_trip\": %.3f, \"total_releases_per_round_trip\": %.3f, "
               "\"untracked\": %lu}\n", (double)total_r / (double)measured, (double)total_l / (double)measured,
               rc_dropped);
        while (!g.done) guest_trap(&g);
        check_loop("trace-retains", kind, &g, warm + measured + 10);
        uninit(&self_handle);
        return failures ? 1 : 0;
#else
        fprintf(stderr, "engine-bench: --trace-retains needs the -DTRACE_RETAINS build (engine-bench-trace)\n");
        return 2;
#endif
    }

    if (trace) {
        /* Backtraces (stderr) of every allocation of one whole short
         * conversation (start, 1 READ, finish) after a warm-up. */
        enum kind kind = parse_kind(trace);
        void *frames[4];
        backtrace(frames, 4);         /* loads libgcc_s now, not while tracing */
        gconv g;
        for (int i = 0; i < 100; i++) {
            setup_read_loop(&g, kind, &cpus[0], 0, 1, 0);
            guest_run(&g);
        }
        setup_read_loop(&g, kind, &cpus[0], 0, 1, 0);
        unsigned long allocs, frees;
        tracing = 1;
        count_start();
        guest_run(&g);
        count_stop(&allocs, &frees);
        tracing = 0;
        check_loop("trace-allocs", kind, &g, 1);
        fprintf(stderr, "-- %lu allocations, %lu frees in one %s conversation\n", allocs, frees, kind_name[kind]);
        uninit(&self_handle);
        return failures ? 1 : 0;
    }

    printf("{\"info\": \"engine-bench\", \"lib\": \"%s\", \"reps\": %d, \"trips\": %" PRIu64 "}\n", lib, reps, trips);
    double v[64], w[64];
    char metric[96];

    for (int k = 0; k < K_COUNT; k++) {
        if (!want(only, kind_name[k])) continue;
        sample_single((enum kind)k, trips / 10);     /* warm-up */
        for (int r = 0; r < reps; r++) v[r] = sample_single((enum kind)k, trips);
        snprintf(metric, sizeof metric, "rt.%s", kind_name[k]);
        emit_samples(metric, "ns", v, reps, NULL);
        fprintf(stderr, "engine-bench: %-8s %8.1f ns per round trip\n", metric, median(v, reps));
    }

    if (want(only, "live")) {
        static const unsigned ks[] = {1, 64, 4096};
        static const enum kind kinds[] = {K_FLOOR, K_C, K_SWIFT};
        for (size_t a = 0; a < 3; a++) {
            for (size_t b = 0; b < 3; b++) {
                sample_live(kinds[a], ks[b], trips / 10);
                for (int r = 0; r < reps; r++) v[r] = sample_live(kinds[a], ks[b], trips);
                snprintf(metric, sizeof metric, "live.%s.%u", kind_name[kinds[a]], ks[b]);
                emit_samples(metric, "ns", v, reps, NULL);
                fprintf(stderr, "engine-bench: %-16s %8.1f ns per round trip\n", metric, median(v, reps));
            }
        }
    }

    if (want(only, "threads")) {
        static const enum kind kinds[] = {K_FLOOR, K_C, K_SWIFT};
        for (size_t a = 0; a < 3; a++) {
            sample_threads(kinds[a], trips / 10, &v[0], &w[0]);
            for (int r = 0; r < reps; r++) sample_threads(kinds[a], trips, &v[r], &w[r]);
            snprintf(metric, sizeof metric, "threads2.%s.per_thread", kind_name[kinds[a]]);
            emit_samples(metric, "ns", v, reps, "each thread's own ns per round trip (mean of the 2)");
            snprintf(metric, sizeof metric, "threads2.%s.aggregate", kind_name[kinds[a]]);
            emit_samples(metric, "ns", w, reps, "wall time / round trips of both threads");
            fprintf(stderr, "engine-bench: threads2.%s %8.1f ns per thread, %8.1f ns aggregate\n",
                    kind_name[kinds[a]], median(v, reps), median(w, reps));
        }
    }

    if (want(only, "bulk")) {
        int per = 64;
        for (int b = 0; b < B_COUNT; b++) {
            sample_bulk((enum bulk)b, 4);
            for (int r = 0; r < reps; r++) v[r] = sample_bulk((enum bulk)b, per);
            snprintf(metric, sizeof metric, "bulk.%s", bulk_name[b]);
            emit_samples(metric, "MB/s", v, reps, "1 MiB per conversation, MB = 10^6 bytes");
            fprintf(stderr, "engine-bench: %-18s %8.1f MB/s\n", metric, median(v, reps));
        }
    }

    if (want(only, "alloc")) {
        alloc_selftest(init_allocs);
        alloc_steady(K_FLOOR);
        alloc_steady(K_C);
        alloc_steady(K_SWIFT);
        alloc_live(K_C, 64);
        alloc_live(K_SWIFT, 64);
    }

    unsigned long bp = atomic_load(&bad_pid), bo = atomic_load(&bad_op);
    if (bp || bo) fail("the guest saw %lu commands without pid 0xffffffff and %lu invalid ops", bp, bo);
    uninit(&self_handle);
    printf("{\"info\": \"done\", \"failures\": %d}\n", failures);
    return failures ? 1 : 0;
}
