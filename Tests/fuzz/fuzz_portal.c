/*
 * fuzz_portal.c - a libFuzzer target that drives the real libportal.so
 * through its PANDA-style plugin ABI (include/portal/panda.h) and its C API
 * (include/portal/portal.h) from arbitrary guest behaviour.
 *
 * The library is dlopen'ed once (LLVMFuzzerInitialize). Every input gets a
 * fresh mock guest (the harness's Tests/harness/guest.c) and a fresh
 * init_plugin, runs the program of guest actions the input encodes
 * (program.h), and ends with uninit_plugin and the guest freed, so each
 * input starts from a clean state and the memory an input uses is bounded.
 *
 * What the plugin sees: hypercalls with any number, arguments and vCPU
 * index; regions whose headers and payloads hold anything; regions and flags
 * that are not mapped; registrations of any size at any time; conversations
 * run by a well-behaved module loop (the harness guest), abandoned,
 * restarted on the same page, interleaved across vCPUs, migrated and nested;
 * Swift async handlers (demo=tour, demo=bench) and C step functions that
 * finish, fail, send garbage commands and call the C API re-entrantly;
 * interrupt work queued at any time; uninit_plugin with live conversations;
 * init_plugin with arguments and op tables the input writes, and with an
 * emulator that describes an impossible guest; and bytes from a client of
 * the control socket (control=PATH: the QMP request framer and parser, the
 * commands' argument checks, guest requests run as interrupt work).
 *
 * Besides what AddressSanitizer, UndefinedBehaviorSanitizer and
 * LeakSanitizer report, the target stops with a message when:
 *  - an answer handed to a C step carries more payload than the region holds;
 *  - a hypercall from a vCPU the plugin was not told about is handled or
 *    touches guest memory;
 *  - a header the plugin writes into a conversation's region is not NONE or
 *    a valid command (op in 1 ..< MAX, size <= region, pid != 0, address
 *    within the guest's width);
 *  - init_plugin accepts an impossible guest (16 or 0 bits, 0 or 4097 vCPUs);
 *  - the library's heap keeps growing across inputs (it is measured before
 *    and after every input; see FZ_GROWTH_LIMIT).
 *
 * Environment:
 *   PORTAL_FUZZ_LIB    path of libportal.so (default: the .build-fuzz build
 *                      relative to this executable)
 *   PORTAL_FUZZ_DEMO   path of the demonstration module libPortalDemo.so
 *                      (Tests/demo), loaded with load= for the tour and the
 *                      bench (default: its debug build, relative to this
 *                      executable)
 *   PORTAL_FUZZ_TRACE  1: print every action of every input (for reading a
 *                      crashing input; use with a single input file)
 *   PORTAL_FUZZ_SKIP   comma-separated known findings to steer around while
 *                      they are being fixed (see README.md): bench, hugelen
 */
#define _GNU_SOURCE
#include "program.h"

#include "../harness/emulator.h"
#include "../harness/guest.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <sanitizer/allocator_interface.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* emulator.c is compiled with -Demu_hypercall=emu_hypercall_inner: every
 * trap of the harness guest comes through emu_hypercall below first. */
bool emu_hypercall_inner(CPUState *cpu, panda_hypercall *call);

/* The C API of portal.h, resolved from the loaded library with dlsym. */
#define portal_attach(...) api.attach(__VA_ARGS__)
#define portal_detach(...) api.detach(__VA_ARGS__)
#define portal_register_interrupt(...) api.register_interrupt(__VA_ARGS__)
#define portal_queue_interrupt(...) api.queue_interrupt(__VA_ARGS__)
#define portal_take_install_budget(...) api.take_install_budget(__VA_ARGS__)
#define portal_op(...) api.op(__VA_ARGS__)
#define portal_op_read() api.op("READ")
#define portal_op_write() api.op("WRITE")

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------------------ constants -- */

#define USER_BASE 0x10000ull
#define USER_PAGES 4
#define KDATA_PAGES 2
#define FZ_MAX_TRAPS 1024        /* traps per input: bounds the time an input takes */
#define FZ_RUN_STEPS 256         /* FA_CONV_RUN and FA_BOOT: traps per conversation */
#define FZ_MAX_MAP_PAGES 48      /* pages FA_MAP may add per input */
#define FZ_MAPPED_KEEP 16
#define FZ_MAX_NESTS 64
#define FZ_MAX_REQUEUES 16
#define FZ_MAX_REINITS 4
/* The library's heap may not grow by more than this over the inputs after
 * warm-up (caches of the Swift runtime fill during warm-up). */
#define FZ_WARMUP_INPUTS 2000
#define FZ_GROWTH_LIMIT (32ll << 20)


static const uint64_t interesting_sizes[] = {
    0, 1, 2, 7, 8, 23, 24, 64, 255, 256, 511, 512, 4071, 4072, 4073, 4096,
    16360, 65536, 1u << 20, (1u << 20) + 1, 0x7fffffffull, 0x80000000ull,
    0xffffffffull, 0x100000000ull, 0x7fffffffffffffffull, 0x8000000000000000ull,
    ~0ull, ~0ull - 23,
};
#define N_SIZES (sizeof interesting_sizes / sizeof interesting_sizes[0])

static const uint64_t tour_events[] = {
    0x7e570001, 0x7e570002, 0x7e570003, 0x7e570004, 0x7e570005, 0x7e570006,
    0x7e570007, 0x7e570008, 0x7e570009, 0x7e57000a, 0x7e57000b, 0x7e570010,
    0x7e57000c, 0x7e570000, 0xbe0c0001, 0,
};

static const uint64_t bench_selectors[] = {0xbe0c0001, 0xbe0c0002, 0xbe0c0003, 0xbe0c0004, 0};

static const int odd_cpu_indices[] = {-1, INT_MIN, INT_MAX, 16, 4096, 4097, 1 << 20, -4096};

/* The plugin's arguments, by FZ_CFG_VARIANT. "@OPS" is replaced by the
 * path of an op table of the older module release (MAX 53); "demo=NAME"
 * stands for load=PORTAL_FUZZ_DEMO,module_arg=NAME (the demonstration
 * module, out of libportal.so). Every variant
 * logs to /dev/null: demo=tour writes its report at every uninit_plugin,
 * whatever the log level, and log=debug formats every line. */
#define MAX_VARIANT_ARGS 10
/* load=PATH of the demonstration module (main). */
static char demo_load[8200];
static const char *const variant_args[8][MAX_VARIANT_ARGS] = {
    {"log=off", "log_file=/dev/null", "demo=tour", "max_conversations=64", "max_interrupts=8",
     "stale_after=16", "control=@CONTROL"},
    {"log=debug", "log_file=/dev/null", "demo=tour", "max_conversations=64", "max_interrupts=8",
     "stale_after=16", "install_budget=3"},
    {"log=off", "log_file=/dev/null", "demo=tour", "region_size=64", "max_conversations=4",
     "max_interrupts=2", "stale_after=2", "install_budget=1"},
    {"log=off", "log_file=/dev/null", "demo=tour", "ops=@OPS", "max_conversations=64",
     "max_interrupts=8", "stale_after=16"},
    {"log=debug", "log_file=/dev/null", "demo=bench", "max_conversations=8", "max_interrupts=8",
     "stale_after=4"},
    {"log=off", "log_file=/dev/null", "max_conversations=1", "max_interrupts=1", "stale_after=1"},
    {"log=warn", "log_file=/dev/null", "demo=tour", "region_size=16360", "max_conversations=64",
     "max_interrupts=8", "stale_after=16"},
    {"log=off", "log_file=/dev/null", "demo=tour", "max_conversations=64", "max_interrupts=8",
     "stale_after=1000", "control=@CONTROL"},
};

/* Op tables the guest module can use (FA_GUEST_OPS). */
static const char *const shuffled_ops[] = {
    "WRITE", "READ", "READ_TIME", "READ_STR", "KALLSYMS_LOOKUP", "READ_PTR_ARRAY", "DUMP",
};
static const char *const tiny_ops[] = {"READ", "WRITE"};

/* ---------------------------------------------------------------- state -- */

typedef struct script_cmd {
    uint32_t op;
    uint64_t addr;
    int64_t size;
    uint8_t data;
} script_cmd;

static struct {
    /* set once */
    char ops_path[4096];
    char control_path[108];
    bool trace;
    bool skip_bench, skip_hugelen;
    uint8_t user_pattern[USER_PAGES * GUEST_PAGE_SIZE];
    uint8_t kdata_pattern[2][KDATA_PAGES * GUEST_PAGE_SIZE];   /* [0] 32-bit, [1] 64-bit */

    /* per input */
    guest *g;
    uint8_t cfg;
    unsigned vcpus;
    unsigned variant;
    gconv *slot[FZ_SLOTS];
    uint64_t last_region;
    uint64_t mapped[FZ_MAPPED_KEEP];
    int nmapped, pages_mapped;
    int traps;
    bool nest_on;
    int nest_depth, nest_every, nest_tick, nests;
    uint64_t nest_num, nest_a1, nest_a2;
    int nscript;
    script_cmd script[FZ_SCRIPT_MAX];
    int requeues;
    int reinits;
    int irq_writes;
    uint64_t touched;         /* a sum over every payload byte the steps saw */
    uint64_t host_region_size;  /* the plugin's region size, as the fuzzer follows it */
    uint32_t host_op_max;       /* MAX of the plugin's op table */
    uint64_t host_flag;         /* the interrupt flag the plugin writes */
    unsigned info_lie;          /* what panda_get_guest_info says (FA_INIT_ARGS) */
    unsigned plugin_vcpus;      /* the vCPU count the plugin was told */
    char ops_custom_path[4096]; /* FA_INIT_ARGS's op table */

    /* over the run */
    uint64_t inputs;
    long long retained;       /* heap bytes kept by inputs after warm-up */
} fz;

/* A payload longer than any region (commands cut it). */
static uint8_t big_payload[(1u << 20) + 8192];

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    if (!fz.trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("portal-fuzz: FAILURE: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* --------------------------------------------------------------- reader -- */

typedef struct reader {
    const uint8_t *p;
    size_t n, i;
} reader;

static bool r_done(const reader *r) { return r->i >= r->n; }
static uint8_t r8(reader *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static uint16_t r16(reader *r) { return (uint16_t)(r8(r) | (r8(r) << 8)); }
static uint32_t r32(reader *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)r8(r) << (8 * i);
    return v;
}
static uint64_t r64(reader *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r8(r) << (8 * i);
    return v;
}

/* ---------------------------------------------------------- the guest -- */

static uint64_t kernel_base(void) { return guest_get_config(fz.g)->kernel_base; }
static uint64_t kdata(void) { return kernel_base() + 0x200000; }
static uint64_t pool_base(void) { return guest_get_config(fz.g)->pool_base; }

static uint64_t read_number(reader *r)
{
    uint8_t sel = r8(r);
    if (sel < FN_NAMED_COUNT)
        return fz_named_numbers[sel];
    switch (sel) {
    case FN_U32: return r32(r);
    case FN_U64: return r64(r);
    case FN_SX: return 0xffffffff00000000ull | fz_named_numbers[r8(r) % FN_NAMED_COUNT];
    case FN_HI: {
        uint32_t k = r8(r) % FN_NAMED_COUNT;
        return ((uint64_t)r32(r) << 32) | fz_named_numbers[k];
    }
    default:
        /* the numbers the plugin serves, more often */
        return fz_named_numbers[FN_SYSCALL_ENTER + (sel - FN_SELECTORS) % 8];
    }
}

static uint64_t conv_region(unsigned slot)
{
    gconv *c = fz.slot[slot % FZ_SLOTS];
    uint64_t r = c ? guest_conv_region(c) : 0;
    return r ? r : fz.last_region;
}

static uint64_t read_arg(reader *r)
{
    uint8_t sel = r8(r);
    if (sel >= FG_COUNT) {
        static const uint8_t again[] = {FG_POOL, FG_USER, FG_RESP, FG_EVENT};
        sel = again[(sel - FG_COUNT) % 4];
    }
    switch ((enum fz_arg)sel) {
    case FG_ZERO: return 0;
    case FG_U8: return r8(r);
    case FG_U16: return r16(r);
    case FG_U32: return r32(r);
    case FG_U64: return r64(r);
    case FG_POOL: return pool_base() + (uint64_t)(r8(r) % 32) * FZ_POOL_STRIDE;
    case FG_CONV: return conv_region(r8(r));
    case FG_USER: return USER_BASE + r16(r);
    case FG_KDATA: return kdata() + r16(r);
    case FG_FLAG: return guest_get_config(fz.g)->flag_addr;
    case FG_RESP: return 0xf0000000u + r8(r) % 10;
    case FG_RESP_SX: return 0xfffffffff0000000ull + r8(r) % 10;
    case FG_RESP_HI: {
        uint64_t code = 0xf0000000u + r8(r) % 10;
        return ((uint64_t)r32(r) << 32) | code;
    }
    case FG_EVENT: return tour_events[r8(r) % (sizeof tour_events / sizeof tour_events[0])];
    case FG_SIZE: return interesting_sizes[r8(r) % N_SIZES];
    case FG_MAPPED: {
        uint8_t k = r8(r);
        return fz.nmapped ? fz.mapped[k % fz.nmapped] : USER_BASE;
    }
    case FG_LAST_REGION: return fz.last_region;
    case FG_ONES: return ~0ull;
    case FG_KBOUND: return kernel_base() - 8 + r8(r) % 16;
    case FG_BENCH: return bench_selectors[r8(r) % (sizeof bench_selectors / sizeof bench_selectors[0])];
    case FG_COUNT: break;
    }
    return 0;
}

static uint32_t read_opsel(reader *r)
{
    uint8_t v = r8(r);
    if (v < FZ_OPSEL_RESP)
        return v;
    if (v < FZ_OPSEL_NEG)
        return 0xf0000000u + (v - FZ_OPSEL_RESP);
    if (v < FZ_OPSEL_U32)
        return 0xffffffffu - (v - FZ_OPSEL_NEG);
    return r32(r);
}

static uint64_t read_target(reader *r)
{
    uint8_t t = r8(r);
    if (t & FZ_TARGET_ADDR)
        return read_arg(r);
    return conv_region(t);
}

static unsigned read_vcpu(reader *r)
{
    /* one past the guest's vCPUs: a vCPU the plugin was not told about */
    return r8(r) % (fz.vcpus + 1);
}

/* What a command the plugin writes into a region must look like
 * (PROTOCOL.md §4, portal.h): checked after every trap of a guest
 * conversation in which the plugin wrote into the conversation's region. */
static void check_region_after_trap(const CPUState *cpu)
{
    uint8_t raw[REGION_HEADER];
    /* A guest that put its interrupt flag inside the header gets the flag
     * written over the command: nothing to check then. */
    if (fz.host_flag && fz.host_flag < cpu->trap_region + REGION_HEADER &&
        fz.host_flag + 8 > cpu->trap_region)
        return;
    if (guest_peek(fz.g, cpu->trap_region, raw, sizeof raw) != sizeof raw)
        return;
    uint32_t op = (uint32_t)guest_decode(fz.g, raw, 4);
    uint32_t pid = (uint32_t)guest_decode(fz.g, raw + 4, 4);
    uint64_t addr = guest_decode(fz.g, raw + 8, 8);
    uint64_t size = guest_decode(fz.g, raw + 16, 8);
    if (op == 0) {
        if (addr || size)
            die("region %#" PRIx64 ": NONE written with addr %#" PRIx64 " size %#" PRIx64,
                cpu->trap_region, addr, size);
        return;
    }
    if (op >= fz.host_op_max)
        die("region %#" PRIx64 ": the plugin wrote op %u, outside 1 ..< %u", cpu->trap_region, op,
            fz.host_op_max);
    if (size > fz.host_region_size)
        die("region %#" PRIx64 ": the plugin wrote a command of size %" PRIu64
            ", more than the region size %" PRIu64, cpu->trap_region, size, fz.host_region_size);
    if (pid == 0)
        die("region %#" PRIx64 ": the plugin wrote pid 0 (must become 0xffffffff)", cpu->trap_region);
    if ((fz.cfg & FZ_CFG_32BIT) && addr > 0xffffffffull)
        die("region %#" PRIx64 ": the plugin wrote address %#" PRIx64 " to a 32-bit guest",
            cpu->trap_region, addr);
}

/* Every trap of the guest goes through here. */
bool emu_hypercall(CPUState *cpu, panda_hypercall *call)
{
    fz.traps++;
    if (cpu->trap_region)
        fz.last_region = cpu->trap_region;
    trace("    trap vcpu %d num %#" PRIx64 " args %#" PRIx64 " %#" PRIx64 " %#" PRIx64 " %#" PRIx64 "\n",
          cpu->index, call->number, call->args[0], call->args[1], call->args[2], call->args[3]);
    bool handled = emu_hypercall_inner(cpu, call);
    trace("      -> handled %d set_return %d value %#" PRIx64 "\n", handled, call->set_return,
          call->return_value);

    /* A vCPU the plugin was not told about: declined, memory untouched. */
    if (cpu->index < 0 || (unsigned)cpu->index >= fz.plugin_vcpus) {
        if (handled || cpu->reads || cpu->writes)
            die("a hypercall from vCPU index %d (of %u) was handled (%d) or touched memory "
                "(%d reads, %d writes)", cpu->index, fz.plugin_vcpus, handled, cpu->reads, cpu->writes);
        return handled;
    }
    /* The region size the plugin now uses (PROTOCOL.md §2: 1 .. 1 MiB accepted). */
    if (handled && (uint32_t)call->number == 0xbebebebeu) {
        uint64_t v = call->args[0] & guest_mask(fz.g);
        if (v >= 1 && v <= (1u << 20))
            fz.host_region_size = v;
    }
    if (handled && (uint32_t)call->number == 0x7901u && (call->args[0] & guest_mask(fz.g)))
        fz.host_flag = call->args[0] & guest_mask(fz.g);
    if (cpu->trap_region && cpu->region_writes)
        check_region_after_trap(cpu);
    return handled;
}

static bool budget_left(void) { return fz.traps < FZ_MAX_TRAPS; }

static bool nest_hook(void *userdata, int vcpu, int depth, uint32_t op, uint64_t *num, uint64_t *a1,
                      uint64_t *a2)
{
    (void)userdata;
    (void)vcpu;
    (void)op;
    if (!fz.nest_on || depth + 1 > fz.nest_depth || fz.nests >= FZ_MAX_NESTS || !budget_left())
        return false;
    if (fz.nest_tick++ % fz.nest_every != 0)
        return false;
    fz.nests++;
    *num = fz.nest_num;
    *a1 = fz.nest_a1;
    *a2 = fz.nest_a2;
    return true;
}

static void conv_drop(unsigned slot)
{
    slot %= FZ_SLOTS;
    if (fz.slot[slot]) {
        guest_conv_free(fz.slot[slot]);
        fz.slot[slot] = NULL;
    }
}

/* n traps of the conversation in `slot` (it is freed when it ends). */
static void conv_steps(unsigned slot, int n)
{
    slot %= FZ_SLOTS;
    for (int i = 0; i < n && fz.slot[slot] && budget_left(); i++) {
        if (guest_conv_step(fz.slot[slot])) {
            trace("    conversation in slot %u ended, result %#" PRIx64 "\n", slot,
                  guest_conv_result(fz.slot[slot]));
            conv_drop(slot);
        }
    }
}

/* -------------------------------------------------- the plugin's work -- */

typedef struct step_state {
    uint32_t k;               /* steps taken */
    uint32_t flags;
    uint64_t acc;
    uint8_t payload[48];      /* WRITE payloads: alive until the step returns */
} step_state;

_Static_assert(sizeof(step_state) <= PORTAL_STATE_SIZE, "step state too large");

static bool carries_data(uint32_t code)
{
    return code == PORTAL_RESP_READ_OK || code == PORTAL_RESP_READ_PARTIAL;
}

/* Reads every payload byte an answer carries (AddressSanitizer checks each
 * access), and checks what portal.h promises about it. */
static void touch(const portal_conversation *conv, const portal_response *response)
{
    if (!response)
        return;
    if (carries_data(response->code)) {
        if (response->size > conv->region_size)
            die("an answer %#x carries %" PRIu64 " payload bytes, more than the region's %u",
                response->code, response->size, conv->region_size);
        if (response->size && !response->data)
            die("an answer %#x carries %" PRIu64 " payload bytes but no data pointer",
                response->code, response->size);
        uint64_t sum = 0;
        for (uint64_t i = 0; i < response->size; i++)
            sum += response->data[i];
        fz.touched += sum;
    }
}

static void encode(const portal_conversation *conv, uint8_t *out, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (conv->big_endian ? 8 * (n - 1 - i) : 8 * i));
}

/* The step asks for a READ of `size` bytes at `addr` (the command's other
 * fields as the plugin handed it over). */
static portal_step send_read(portal_command *command, uint64_t addr, int64_t size)
{
    command->op = portal_op_read();
    command->addr = addr;
    command->size = size;
    return PORTAL_STEP_COMMAND;
}

/* The step asks for a WRITE of the `length` bytes at `data` to `addr`. */
static portal_step send_write(portal_command *command, uint64_t addr, const uint8_t *data, uint64_t length)
{
    command->op = portal_op_write();
    command->addr = addr;
    command->size = (int64_t)length;
    command->data = data;
    command->data_length = (size_t)length;
    return PORTAL_STEP_COMMAND;
}

/* The step fails with `why` as the conversation's error. */
static portal_step step_fails(portal_conversation *conv, const char *why)
{
    conv->error = why;
    return PORTAL_STEP_FAIL;
}

static portal_step script_step(void *userdata, portal_conversation *conv,
                               const portal_response *response, portal_command *command,
                               uint64_t *result)
{
    (void)userdata;
    step_state *st = conv->state;
    touch(conv, response);
    if (response)
        st->acc += response->code + response->size;
    if ((int)st->k >= fz.nscript) {
        *result = st->acc;
        return PORTAL_STEP_FINISH;
    }
    const script_cmd *c = &fz.script[st->k++];
    command->op = c->op;
    command->addr = c->addr;
    command->size = c->size;
    command->pid = (uint32_t)st->k;
    switch (c->data % 5) {
    case 0: break;
    case 1:
        encode(conv, st->payload, c->addr ^ 0x1122334455667788ull, 8);
        command->data = st->payload;
        command->data_length = 8;
        break;
    case 2:
        command->data = big_payload;
        command->data_length = c->size < 0 ? 0 : (size_t)c->size > sizeof big_payload
                                                      ? sizeof big_payload : (size_t)c->size;
        break;
    case 3:
        command->data = big_payload;
        command->data_length = sizeof big_payload;
        break;
    case 4:
        command->data = big_payload;
        command->data_length = 0;
        break;
    }
    return PORTAL_STEP_COMMAND;
}

/* READs, then fails after call.args[0] % 3 answers. */
static portal_step fail_step(void *userdata, portal_conversation *conv,
                             const portal_response *response, portal_command *command,
                             uint64_t *result)
{
    (void)userdata;
    (void)result;
    step_state *st = conv->state;
    touch(conv, response);
    if (st->k++ == conv->call.args[0] % 3)
        return step_fails(conv, (conv->call.args[1] & 1) ? NULL : "fuzz: the step failed on purpose");
    return send_read(command, USER_BASE + 8 * st->k, 8);
}

/* Commands and step results a careless analysis plugin could produce. */
static portal_step garbage_step(void *userdata, portal_conversation *conv,
                                const portal_response *response, portal_command *command,
                                uint64_t *result)
{
    (void)userdata;
    step_state *st = conv->state;
    touch(conv, response);
    unsigned mode = (unsigned)((conv->call.args[0] + st->k++) % 17);
    if (st->k > 8)
        mode = 12;
    command->op = portal_op_read();
    command->addr = conv->call.args[1];
    command->size = 8;
    switch (mode) {
    case 0: command->op = 0; break;
    case 1: command->op = 56; break;
    case 2: command->op = 0xffffffffu; break;
    case 3: command->size = INT64_MIN; break;
    case 4: command->size = INT64_MAX; command->addr = ~0ull; break;
    case 5: command->size = -1; break;
    case 6:
        command->op = portal_op_write();
        command->size = INT64_MAX;
        command->data = big_payload;
        command->data_length = sizeof big_payload;
        break;
    case 7:
        command->op = portal_op_write();
        command->data = NULL;
        command->data_length = 100;
        break;
    case 8:
        command->op = portal_op_write();
        command->size = 4072;
        command->data = big_payload;
        command->data_length = 0;
        break;
    case 9:
        command->op = 3; /* READ_STR */
        command->pid = (uint32_t)conv->call.args[2];
        command->size = 0;
        break;
    case 10: return (portal_step)7;
    case 11: return (portal_step)-1;
    case 12: *result = ~0ull; return PORTAL_STEP_FINISH;
    case 13: conv->error = NULL; return PORTAL_STEP_FAIL;
    case 14: conv->error = "fuzz: garbage"; return PORTAL_STEP_FAIL;
    case 15:
        command->op = portal_op_write();
        command->data = big_payload;
        /* A data_length no buffer can have: longer than any region, so
         * portal.h says it is cut. */
        command->data_length = fz.skip_hugelen ? sizeof big_payload : SIZE_MAX;
        break;
    case 16:
        command->op = 17; /* READ_TIME */
        command->addr = ~0ull;
        command->size = -4096;
        break;
    }
    return PORTAL_STEP_COMMAND;
}

/* READ 8 bytes at arg1, WRITE value*3+7 at arg2, finish with value+1. */
static portal_step word_step(void *userdata, portal_conversation *conv,
                             const portal_response *response, portal_command *command,
                             uint64_t *result)
{
    (void)userdata;
    step_state *st = conv->state;
    touch(conv, response);
    switch (st->k++) {
    case 0:
        return send_read(command, conv->call.args[0], 8);
    case 1:
        if (response->code != PORTAL_RESP_READ_OK || response->size != 8)
            return step_fails(conv, "fuzz: word: the READ did not answer 8 bytes");
        memcpy(&st->acc, response->data, 8);
        encode(conv, st->payload, st->acc * 3 + 7, 8);
        return send_write(command, conv->call.args[1], st->payload, 8);
    default:
        if (response->code != PORTAL_RESP_WRITE_OK)
            return step_fails(conv, "fuzz: word: the WRITE failed");
        *result = st->acc + 1;
        return PORTAL_STEP_FINISH;
    }
}

/* args[1] % 8 + 1 region-sized READs from arg1. */
static portal_step chunk_step(void *userdata, portal_conversation *conv,
                              const portal_response *response, portal_command *command,
                              uint64_t *result)
{
    (void)userdata;
    step_state *st = conv->state;
    touch(conv, response);
    if (response && carries_data(response->code))
        st->acc += response->size;
    if (st->k >= conv->call.args[1] % 8 + 1) {
        *result = st->acc;
        return PORTAL_STEP_FINISH;
    }
    uint64_t addr = conv->call.args[0] + (uint64_t)st->k * conv->region_size;
    st->k++;
    return send_read(command, addr, conv->region_size);
}

static portal_step finish_step(void *userdata, portal_conversation *conv,
                               const portal_response *response, portal_command *command,
                               uint64_t *result);
static portal_step irq_write_step(void *userdata, portal_conversation *conv,
                                  const portal_response *response, portal_command *command,
                                  uint64_t *result);

/* Calls the C API from inside a step: attach, detach itself, queue and
 * register interrupts, take install budget outside an interrupt. */
static portal_step reentrant_step(void *userdata, portal_conversation *conv,
                                  const portal_response *response, portal_command *command,
                                  uint64_t *result)
{
    step_state *st = conv->state;
    touch(conv, response);
    switch (st->k++) {
    case 0:
        portal_attach(0x6904, finish_step, userdata);
        portal_queue_interrupt("c_write");
        portal_queue_interrupt(NULL);
        portal_take_install_budget(conv, 5);
        portal_take_install_budget(NULL, 5);
        (void)portal_op("");
        (void)portal_op(NULL);
        return send_read(command, conv->call.args[0], 16);
    case 1:
        portal_detach(0x6903);
        portal_detach(0x6903);
        portal_attach(0xbebebebe, finish_step, userdata);   /* refused */
        portal_register_interrupt("c_write", irq_write_step, userdata);
        portal_register_interrupt(NULL, irq_write_step, userdata);
        portal_register_interrupt("c_write", NULL, userdata);
        memcpy(st->payload, "fuzz", 4);
        return send_write(command, conv->call.args[1], st->payload, 4);
    default:
        portal_attach(0x6903, reentrant_step, userdata);
        portal_attach(0, NULL, userdata);
        *result = st->k;
        return PORTAL_STEP_FINISH;
    }
}

static portal_step finish_step(void *userdata, portal_conversation *conv,
                               const portal_response *response, portal_command *command,
                               uint64_t *result)
{
    (void)userdata;
    (void)command;
    touch(conv, response);
    *result = conv->call.args[0] ^ 0x5a5a5a5a5a5a5a5aull;
    return PORTAL_STEP_FINISH;
}

/* Interrupt work: one WRITE of 8 bytes into user memory. */
static portal_step irq_write_step(void *userdata, portal_conversation *conv,
                                  const portal_response *response, portal_command *command,
                                  uint64_t *result)
{
    (void)userdata;
    step_state *st = conv->state;
    touch(conv, response);
    if (response) {
        if (response->code != PORTAL_RESP_WRITE_OK)
            return step_fails(conv, "fuzz: interrupt WRITE failed");
        *result = 0;
        return PORTAL_STEP_FINISH;
    }
    st->k++;
    encode(conv, st->payload, (uint64_t)fz.irq_writes, 8);
    return send_write(command, USER_BASE + 8u * (unsigned)(fz.irq_writes++ % 64), st->payload, 8);
}

/* Interrupt work that spends install budget and queues itself again when it
 * gets less than it wants. */
static portal_step irq_budget_step(void *userdata, portal_conversation *conv,
                                   const portal_response *response, portal_command *command,
                                   uint64_t *result)
{
    (void)userdata;
    step_state *st = conv->state;
    touch(conv, response);
    if (response || st->k++ > 0) {
        *result = 0;
        return PORTAL_STEP_FINISH;
    }
    uint32_t got = portal_take_install_budget(conv, 7);
    if (conv->install_budget > 0 && (fz.irq_writes & 1))
        conv->install_budget--;                 /* spending it by hand, as portal.h allows */
    else if (fz.irq_writes & 2)
        conv->install_budget += 100;            /* cheating: must not raise the budget */
    if (got < 7 && fz.requeues < FZ_MAX_REQUEUES) {
        fz.requeues++;
        portal_queue_interrupt("c_budget");
    }
    command->op = 17; /* READ_TIME */
    return PORTAL_STEP_COMMAND;
}

/* Copies guest bytes as a C step may (issue 8, item 1): READ up to 64
 * bytes at arg1, then, after another vCPU registered a larger region size
 * in between, WRITE what came back to arg2 with response->data itself as
 * the payload. The plugin must not free the buffer the answer lies in
 * before it has encoded the WRITE (AddressSanitizer, which the fuzzed
 * library is built with, reports a heap-use-after-free if it does). The
 * bytes are not compared: injected answers and junk regions make the answer
 * something other than arg1's bytes. */
static portal_step copy_step(void *userdata, portal_conversation *conv,
                             const portal_response *response, portal_command *command,
                             uint64_t *result)
{
    (void)userdata;
    step_state *st = conv->state;
    touch(conv, response);
    switch (st->k++) {
    case 0:
        return send_read(command, conv->call.args[0], conv->region_size < 64 ? conv->region_size : 64);
    case 1: {
        if (!response || !carries_data(response->code) || response->size == 0) {
            *result = 0;
            return PORTAL_STEP_FINISH;
        }
        uint64_t larger = (uint64_t)conv->region_size * 2 + 4096;
        if (larger > (1u << 20))
            larger = 1u << 20;
        bool handled = false;
        int other = (int)((conv->call.vcpu + 1) % guest_get_config(fz.g)->vcpus);
        guest_hypercall(fz.g, other, 0xbebebebeu, larger, 0, 0, 0, &handled);
        st->acc = response->size;
        return send_write(command, conv->call.args[1], response->data, response->size);
    }
    default:
        *result = st->acc;
        return PORTAL_STEP_FINISH;
    }
}

static const portal_step_fn steps[FS_COUNT] = {
    script_step, fail_step, garbage_step, word_step, chunk_step, reentrant_step, finish_step,
    irq_write_step, irq_budget_step, copy_step,
};

/* ------------------------------------------------------ plugin life -- */

static void attach_work(void)
{
    void *ud = &fz;
    portal_attach(0x1339, script_step, ud);
    portal_attach(0x133b, fail_step, ud);
    portal_attach(0x133c, garbage_step, ud);
    portal_attach(0x6901, word_step, ud);
    portal_attach(0x6902, chunk_step, ud);
    portal_attach(0x6903, reentrant_step, ud);
    portal_attach(0x6904, finish_step, ud);
    portal_attach(0x7903, copy_step, ud);
    portal_register_interrupt("c_write", irq_write_step, ud);
    portal_register_interrupt("c_budget", irq_budget_step, ud);
    portal_register_interrupt("c_fail", fail_step, ud);
    portal_register_interrupt("c_garbage", garbage_step, ud);
    portal_register_interrupt("c_script", script_step, ud);
}

/* init_plugin with the input's argument set (byte 0), the guest as it is. */
static void plugin_up(void)
{
    const char *args[MAX_VARIANT_ARGS + 1];
    int n = 0;
    unsigned variant = fz.variant;
    if (variant == 4 && fz.skip_bench)
        variant = 0;
    char ops_arg[4200];
    char control_arg[160];
    for (int i = 0; i < MAX_VARIANT_ARGS && variant_args[variant][i]; i++) {
        const char *a = variant_args[variant][i];
        if (strcmp(a, "ops=@OPS") == 0) {
            snprintf(ops_arg, sizeof ops_arg, "ops=%s", fz.ops_path);
            a = ops_arg;
        } else if (strcmp(a, "demo=tour") == 0 || strcmp(a, "demo=bench") == 0) {
            args[n++] = demo_load;
            a = strcmp(a, "demo=tour") == 0 ? "module_arg=tour" : "module_arg=bench";
        }
        if (strcmp(a, "control=@CONTROL") == 0) {
            snprintf(control_arg, sizeof control_arg, "control=%s", fz.control_path);
            a = control_arg;
        }
        args[n++] = a;
    }
    fz.info_lie = 0;
    fz.plugin_vcpus = fz.vcpus;
    if (!emu_init(fz.g, args, n))
        die("init_plugin refused the arguments of variant %u", variant);
    fz.host_region_size = variant == 2 ? 64 : variant == 6 ? 16360 : 4072;
    fz.host_op_max = variant == 3 ? 53 : 56;
    fz.host_flag = 0;
    attach_work();
}

/* FA_INIT_ARGS: init_plugin with arguments and an op table the input
 * chooses (numbers mostly in range, sometimes just outside), and maybe a
 * guest description the plugin must refuse. Falls back to plugin_up()
 * when init_plugin refuses. */
static void plugin_up_custom(reader *r)
{
    static const char *const keys[5] = {"region_size", "install_budget", "max_conversations",
                                        "max_interrupts", "stale_after"};
    static const uint32_t limits[5] = {1u << 20, 1000000, 1000000, 1000000, 1000000000};
    static const char *const demos[4] = {"tour", "bench", "tour", "no-such-demo"};
    static const char *const levels[6] = {"off", "error", "warn", "info", "debug", "loud"};
    char text[8][64];
    char ops_arg[4200];
    const char *args[14];
    int n = 0;
    uint8_t mask = r8(r);
    uint8_t lie = r8(r) % 8;
    args[n++] = "log_file=/dev/null";
    uint64_t region = 4072;
    for (int k = 0; k < 5; k++) {
        if (!(mask & (1u << k)))
            continue;
        uint32_t v = r32(r);
        /* 0 and limit + 1 are refused; small values are the interesting ones */
        uint32_t value = (v & 0x80000000u) ? v % 64 : v % (limits[k] + 2);
        if (k == 0)
            region = value;
        snprintf(text[k], sizeof text[k], (v & 0x40000000u) ? "%s=0x%x" : "%s=%u", keys[k], value);
        args[n++] = text[k];
    }
    if (mask & 0x20) {
        args[n++] = demo_load;
        snprintf(text[5], sizeof text[5], "module_arg=%s", demos[r8(r) % 4]);
        args[n++] = text[5];
    }
    if (mask & 0x40) {
        snprintf(text[6], sizeof text[6], "log=%s", levels[r8(r) % 6]);
        args[n++] = text[6];
    }
    uint32_t ops_max = 56;
    if (mask & 0x80) {
        /* An op table file: names of the standard table in the order the
         * input gives, sometimes as `NAME = N` lines, comments, blank lines,
         * HYPER_OP_ prefixes, duplicates or garbage. */
        FILE *f = fopen(fz.ops_custom_path, "w");
        if (!f)
            die("cannot write %s", fz.ops_custom_path);
        unsigned lines = r8(r) % 72;
        ops_max = 1;
        for (unsigned i = 0; i < lines; i++) {
            uint8_t sel = r8(r);
            const char *name = standard_op_names[(sel & 0x3f) % standard_op_count];
            switch (sel >> 6) {
            case 0: fprintf(f, "%s\n", name); ops_max++; break;
            case 1: fprintf(f, "%s = %u\n", name, ops_max); ops_max++; break;
            case 2: fprintf(f, "HYPER_OP_%s\n", name); ops_max++; break;
            case 3:
                switch (sel & 3) {
                case 0: fprintf(f, "# comment\n"); break;
                case 1: fprintf(f, "\n"); break;
                case 2: fprintf(f, "%s = %u\n", name, (unsigned)r8(r)); ops_max = UINT32_MAX; break;
                case 3: {
                    /* Raw bytes from the input: any text at all, NULs and
                     * newlines included (a lone "=" once crashed the parser). */
                    unsigned length = r8(r) % 24;
                    for (unsigned k = 0; k < length; k++)
                        fputc(r8(r), f);
                    fputc('\n', f);
                    ops_max = UINT32_MAX;
                    break;
                }
                }
                break;
            }
        }
        fclose(f);
        snprintf(ops_arg, sizeof ops_arg, "ops=%s", fz.ops_custom_path);
        args[n++] = ops_arg;
    }
    trace("  INIT_ARGS lie %u:", lie);
    for (int i = 0; i < n; i++)
        trace(" %s", args[i]);
    trace("\n");

    emu_uninit();
    fz.info_lie = lie;
    fz.plugin_vcpus = lie == 6 ? 1 : lie == 7 ? 64 : fz.vcpus;
    if (!emu_init(fz.g, args, n)) {
        trace("    refused\n");
        plugin_up();
        return;
    }
    if (lie >= 1 && lie <= 4)
        die("init_plugin accepted an impossible guest (lie %u)", lie);
    fz.host_region_size = region ? region : 4072;
    fz.host_op_max = ops_max ? ops_max : 56;
    fz.host_flag = 0;
    attach_work();
}

/* What the emulator tells init_plugin about the guest (emulator.c is
 * compiled with -Dpanda_get_guest_info=emu_guest_info_inner). FA_INIT_ARGS
 * can make it lie: a 16-bit or 0-bit guest, 0 or 4097 vCPUs (refused), a
 * byte order flag of 0xff, fewer or more vCPUs than the guest has. */
void emu_guest_info_inner(panda_guest_info *info);
void panda_get_guest_info(panda_guest_info *info)
{
    emu_guest_info_inner(info);
    switch (fz.info_lie) {
    case 1: info->word_bits = 16; break;
    case 2: info->word_bits = 0; break;
    case 3: info->vcpu_count = 0; break;
    case 4: info->vcpu_count = 4097; break;
    case 5: info->big_endian = 0xff * info->big_endian; break;
    case 6: info->vcpu_count = 1; break;
    case 7: info->vcpu_count = 64; break;
    default: break;
    }
}

static void input_begin(uint8_t cfg)
{
    fz.cfg = cfg;
    fz.vcpus = FZ_CFG_VCPUS(cfg);
    fz.variant = FZ_CFG_VARIANT(cfg);
    guest_config c;
    memset(&c, 0, sizeof c);
    c.word_bits = (cfg & FZ_CFG_32BIT) ? 32 : 64;
    c.big_endian = (cfg & FZ_CFG_BIG_ENDIAN) != 0;
    c.vcpus = fz.vcpus;
    fz.g = guest_new(&c);
    guest_set_recording(fz.g, false);
    if ((cfg & FZ_CFG_SIGN_EXT) && c.word_bits == 64)
        guest_set_sign_extend(fz.g, true);
    if (fz.variant == 3)
        guest_set_ops(fz.g, standard_op_names, 52);
    guest_set_nest_hook(fz.g, nest_hook, NULL);
    /* The harness's scenario memory: user pages, kernel data, symbols, a clock. */
    guest_map(fz.g, USER_BASE, sizeof fz.user_pattern);
    guest_poke(fz.g, USER_BASE, fz.user_pattern, sizeof fz.user_pattern);
    guest_map(fz.g, kdata(), sizeof fz.kdata_pattern[0]);
    guest_poke(fz.g, kdata(), fz.kdata_pattern[c.word_bits == 64], sizeof fz.kdata_pattern[0]);
    guest_add_symbol(fz.g, "do_sys_open", kernel_base() + 0x1234560);
    guest_add_symbol(fz.g, "init_task", kernel_base() + 0x1235560);
    guest_set_time(fz.g, 0x1122334455667788ull, 1000);

    memset(fz.slot, 0, sizeof fz.slot);
    fz.last_region = 0;
    fz.nmapped = fz.pages_mapped = 0;
    fz.traps = 0;
    fz.nest_on = false;
    fz.nest_depth = fz.nest_every = 1;
    fz.nest_tick = fz.nests = 0;
    fz.requeues = 0;
    fz.reinits = 0;
    fz.irq_writes = 0;
    /* The script step's default commands: one of each kind of answer. */
    fz.nscript = 4;
    fz.script[0] = (script_cmd){1, USER_BASE, 16, 0};
    fz.script[1] = (script_cmd){2, USER_BASE + 64, 8, 1};
    fz.script[2] = (script_cmd){3, USER_BASE + 100, 0, 0};
    fz.script[3] = (script_cmd){17, 0, 0, 0};
    plugin_up();
}

static void input_end(void)
{
    for (unsigned i = 0; i < FZ_SLOTS; i++)
        conv_drop(i);
    emu_uninit();
    guest_free(fz.g);
    fz.g = NULL;
}

/* ------------------------------------------------------------ actions -- */

static void do_trap(reader *r, bool odd)
{
    static CPUState odd_cpu;
    int which = r8(r);
    uint64_t num = read_number(r);
    uint64_t a[4];
    for (int i = 0; i < 4; i++)
        a[i] = read_arg(r);
    if (!odd) {
        unsigned vcpu = (unsigned)which % (fz.vcpus + 1);
        trace("  TRAP vcpu %u\n", vcpu);
        guest_hypercall(fz.g, (int)vcpu, num, a[0], a[1], a[2], a[3], NULL);
        return;
    }
    /* A vCPU index the plugin was not told about: it must decline the
     * hypercall without touching memory. */
    memset(&odd_cpu, 0, sizeof odd_cpu);
    odd_cpu.index = odd_cpu_indices[which % (int)(sizeof odd_cpu_indices / sizeof odd_cpu_indices[0])];
    odd_cpu.g = fz.g;
    odd_cpu.in_trap = true;
    odd_cpu.trap_thread = pthread_self();
    panda_hypercall call;
    memset(&call, 0, sizeof call);
    call.number = num;
    memcpy(call.args, a, sizeof a);
    trace("  TRAP_ODD_CPU index %d\n", odd_cpu.index);
    emu_hypercall(&odd_cpu, &call);   /* checks that it was declined */
}

static void do_poke(reader *r)
{
    uint64_t addr = read_arg(r);
    uint8_t len = r8(r);
    uint8_t buf[256];
    for (unsigned i = 0; i < len; i++)
        buf[i] = r8(r);
    trace("  POKE %#" PRIx64 " %u bytes\n", addr, len);
    guest_poke(fz.g, addr, buf, len);
}

static void do_poke_header(reader *r, bool op_only)
{
    uint64_t at = read_target(r);
    uint32_t op = read_opsel(r);
    uint8_t raw[24];
    guest_encode(fz.g, raw, op, 4);
    if (op_only) {
        trace("  POKE_OP %#" PRIx64 " op %#x\n", at, op);
        guest_poke(fz.g, at, raw, 4);
        return;
    }
    uint8_t pid = r8(r);
    uint64_t addr = read_arg(r);
    uint64_t size = read_arg(r);
    guest_encode(fz.g, raw + 4, pid ? pid : 0xffffffffu, 4);
    guest_encode(fz.g, raw + 8, addr, 8);
    guest_encode(fz.g, raw + 16, size, 8);
    trace("  POKE_HEADER %#" PRIx64 " op %#x addr %#" PRIx64 " size %#" PRIx64 "\n", at, op, addr, size);
    guest_poke(fz.g, at, raw, sizeof raw);
}

static void do_map(reader *r, bool map)
{
    uint64_t addr = read_arg(r) & ~(uint64_t)(GUEST_PAGE_SIZE - 1);
    unsigned pages = 1 + r8(r) % 4;
    trace("  %s %#" PRIx64 " %u pages\n", map ? "MAP" : "UNMAP", addr, pages);
    if (!map) {
        guest_unmap(fz.g, addr, (uint64_t)pages * GUEST_PAGE_SIZE);
        return;
    }
    if (fz.pages_mapped + (int)pages > FZ_MAX_MAP_PAGES)
        return;
    fz.pages_mapped += (int)pages;
    guest_map(fz.g, addr, (uint64_t)pages * GUEST_PAGE_SIZE);
    if (fz.nmapped < FZ_MAPPED_KEEP)
        fz.mapped[fz.nmapped++] = addr;
}

static void do_conv_start(reader *r)
{
    unsigned slot = r8(r) % FZ_SLOTS;
    unsigned vcpu = read_vcpu(r);
    uint64_t num = read_number(r);
    uint64_t a1 = read_arg(r);
    uint64_t a2 = read_arg(r);
    trace("  CONV_START slot %u vcpu %u num %#" PRIx64 " a1 %#" PRIx64 " a2 %#" PRIx64 "\n", slot, vcpu,
          num, a1, a2);
    conv_drop(slot);   /* the guest abandons whatever ran there */
    fz.slot[slot] = guest_conv_start(fz.g, (int)vcpu, num, a1, a2);
    conv_steps(slot, 1);
}

static void do_nest(reader *r)
{
    uint8_t mode = r8(r);
    fz.nest_num = read_number(r);
    fz.nest_a1 = read_arg(r);
    fz.nest_a2 = read_arg(r);
    fz.nest_on = mode != 0;
    fz.nest_depth = 1 + mode % 3;
    fz.nest_every = 1 + (mode >> 2) % 4;
    trace("  NEST on %d depth %d every %d num %#" PRIx64 "\n", fz.nest_on, fz.nest_depth,
          fz.nest_every, fz.nest_num);
}

static void do_inject(reader *r)
{
    uint32_t op = r8(r) % 64;
    uint32_t code = read_opsel(r);
    uint64_t size = read_arg(r);
    uint8_t count = r8(r);
    trace("  INJECT op %u code %#x size %#" PRIx64 " count %u\n", op, code, size, count & 3);
    if (count & 0x80)
        guest_inject_answer(fz.g, op, code, size, count & 3);
    else
        guest_inject(fz.g, op, code, count & 3);
}

static void do_script(reader *r)
{
    int n = r8(r) % (FZ_SCRIPT_MAX + 1);
    for (int i = 0; i < n; i++) {
        fz.script[i].op = read_opsel(r);
        fz.script[i].addr = read_arg(r);
        fz.script[i].size = (int64_t)read_arg(r);
        fz.script[i].data = r8(r);
    }
    fz.nscript = n;
    trace("  SCRIPT %d commands\n", n);
}

static void do_boot(reader *r)
{
    unsigned vcpu = read_vcpu(r);
    trace("  BOOT vcpu %u\n", vcpu);
    guest_register_region(fz.g, (int)vcpu);
    guest_enable_interrupts(fz.g, (int)vcpu);
    /* the init interrupt conversation, with arg1 = 1 */
    gconv *c = guest_conv_start(fz.g, (int)vcpu, 0x7902, 1, 0);
    for (int i = 0; i < FZ_RUN_STEPS && budget_left(); i++)
        if (guest_conv_step(c))
            break;
    guest_conv_free(c);
}

/* FA_CONTROL: a client of the control socket (argument variants 0 and 7)
 * sends the input's bytes, after the greeting and (flags bit 0) the
 * capability negotiation, then closes its sending side and reads until the
 * server has answered everything and closed the connection. A server that
 * does not answer within 5 s is a finding. Guest requests among the bytes
 * wait as interrupt work: later traps of the input run them. */
static void do_control(reader *r)
{
    uint8_t flags = r8(r);
    uint16_t len = r16(r) % 2049;
    uint8_t bytes[2048];
    size_t got = 0;
    while (got < len && !r_done(r))
        bytes[got++] = r8(r);
    if (fz.variant != 0 && fz.variant != 7)
        return;
    trace("  CONTROL flags %#x, %zu bytes\n", flags, got);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("control: socket: %s", strerror(errno));
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    snprintf(address.sun_path, sizeof address.sun_path, "%s", fz.control_path);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        /* FA_INIT_ARGS may have loaded the plugin without a socket. */
        close(fd);
        return;
    }
    struct timeval wait = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    static const char negotiate[] = "{\"execute\":\"qmp_capabilities\"}";
    if ((flags & 1) && send(fd, negotiate, sizeof negotiate - 1, MSG_NOSIGNAL) < 0)
        die("control: send: %s", strerror(errno));
    if (got > 0 && send(fd, bytes, got, MSG_NOSIGNAL) < 0)
        die("control: send: %s", strerror(errno));
    shutdown(fd, SHUT_WR);
    char reply[65536];
    for (;;) {
        ssize_t n = recv(fd, reply, sizeof reply, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET)
                break;
            die("control: the server did not finish answering within 5 s: %s", strerror(errno));
        }
    }
    close(fd);
}

static void run_action(reader *r)
{
    uint8_t op = r8(r) % FA_COUNT;
    switch ((enum fz_action)op) {
    case FA_TRAP: do_trap(r, false); break;
    case FA_TRAP_ODD_CPU: do_trap(r, true); break;
    case FA_POKE: do_poke(r); break;
    case FA_POKE_HEADER: do_poke_header(r, false); break;
    case FA_POKE_OP: do_poke_header(r, true); break;
    case FA_MAP: do_map(r, true); break;
    case FA_UNMAP: do_map(r, false); break;
    case FA_CONV_START: do_conv_start(r); break;
    case FA_CONV_STEP: {
        unsigned slot = r8(r) % FZ_SLOTS;
        int n = 1 + r8(r) % 16;
        trace("  CONV_STEP slot %u x%d\n", slot, n);
        conv_steps(slot, n);
        break;
    }
    case FA_CONV_RUN: {
        unsigned slot = r8(r) % FZ_SLOTS;
        trace("  CONV_RUN slot %u\n", slot);
        conv_steps(slot, FZ_RUN_STEPS);
        break;
    }
    case FA_CONV_ABANDON: {
        unsigned slot = r8(r) % FZ_SLOTS;
        trace("  CONV_ABANDON slot %u\n", slot);
        conv_drop(slot);
        break;
    }
    case FA_CONV_MIGRATE: {
        unsigned slot = r8(r) % FZ_SLOTS;
        unsigned vcpu = read_vcpu(r);
        trace("  CONV_MIGRATE slot %u vcpu %u\n", slot, vcpu);
        if (fz.slot[slot])
            guest_conv_set_vcpu(fz.slot[slot], (int)vcpu);
        break;
    }
    case FA_NEST: do_nest(r); break;
    case FA_INJECT: do_inject(r); break;
    case FA_QUEUE: {
        const char *name = fz_names[r8(r) % FZ_NAME_COUNT];
        bool ok = portal_queue_interrupt(name);
        trace("  QUEUE %s -> %d\n", name, ok);
        break;
    }
    case FA_REGISTER_IRQ: {
        const char *name = fz_names[r8(r) % FZ_NAME_COUNT];
        unsigned step = r8(r) % FS_COUNT;
        trace("  REGISTER_IRQ %s step %u\n", name, step);
        portal_register_interrupt(name, steps[step], &fz);
        break;
    }
    case FA_ATTACH: {
        uint32_t num = (uint32_t)read_number(r);
        unsigned step = r8(r) % FS_COUNT;
        int rc = portal_attach(num, steps[step], &fz);
        trace("  ATTACH %#x step %u -> %d\n", num, step, rc);
        break;
    }
    case FA_DETACH: {
        uint32_t num = (uint32_t)read_number(r);
        int rc = portal_detach(num);
        trace("  DETACH %#x -> %d\n", num, rc);
        break;
    }
    case FA_SCRIPT: do_script(r); break;
    case FA_REINIT:
        /* An init costs as much as a hundred traps: a few per input. */
        if (fz.reinits++ >= FZ_MAX_REINITS)
            break;
        trace("  REINIT\n");
        emu_uninit();
        plugin_up();
        break;
    case FA_BOOT: do_boot(r); break;
    case FA_TIME: {
        uint64_t ns = r64(r);
        uint16_t step = r16(r);
        trace("  TIME %#" PRIx64 " +%u\n", ns, step);
        guest_set_time(fz.g, ns, step);
        break;
    }
    case FA_FILL: {
        uint64_t addr = read_arg(r);
        uint16_t len = r16(r) % 4097;
        trace("  FILL %#" PRIx64 " %u\n", addr, len);
        guest_fill_pattern(fz.g, addr, len);
        break;
    }
    case FA_JUNK: {
        bool on = r8(r) & 1;
        trace("  JUNK %d\n", on);
        guest_set_junk_fill(fz.g, on);
        break;
    }
    case FA_GUEST_OPS: {
        unsigned which = r8(r) % 4;
        trace("  GUEST_OPS %u\n", which);
        switch (which) {
        case 0: guest_set_ops_standard(fz.g); break;
        case 1: guest_set_ops(fz.g, standard_op_names, 52); break;
        case 2: guest_set_ops(fz.g, shuffled_ops, (int)(sizeof shuffled_ops / sizeof shuffled_ops[0])); break;
        case 3: guest_set_ops(fz.g, tiny_ops, 2); break;
        }
        break;
    }
    case FA_INIT_ARGS:
        if (fz.reinits++ >= FZ_MAX_REINITS) {
            r8(r);
            break;
        }
        plugin_up_custom(r);
        break;
    case FA_CONTROL: do_control(r); break;
    case FA_COUNT: break;
    }
}

/* ----------------------------------------------------------- libFuzzer -- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    size_t before = __sanitizer_get_current_allocated_bytes();

    uint8_t cfg = r8(&r);
    trace("INPUT %zu bytes, config %#x: %u-bit %s, %u vCPUs, variant %u\n", size, cfg,
          (cfg & FZ_CFG_32BIT) ? 32 : 64, (cfg & FZ_CFG_BIG_ENDIAN) ? "BE" : "LE",
          FZ_CFG_VCPUS(cfg), FZ_CFG_VARIANT(cfg));
    input_begin(cfg);
    while (!r_done(&r) && budget_left())
        run_action(&r);
    input_end();

    size_t after = __sanitizer_get_current_allocated_bytes();
    if (++fz.inputs > FZ_WARMUP_INPUTS) {
        fz.retained += (long long)after - (long long)before;
        if (fz.retained > FZ_GROWTH_LIMIT)
            die("memory growth: %lld heap bytes were kept by the %" PRIu64
                " inputs since warm-up (limit %lld); the input that crossed the limit kept %lld",
                fz.retained, fz.inputs - FZ_WARMUP_INPUTS, FZ_GROWTH_LIMIT,
                (long long)after - (long long)before);
    }
    return 0;
}

/* At exit (libFuzzer ends a timed run with exit()): what the growth check saw. */
static void report_heap(void)
{
    remove(fz.ops_custom_path);
    remove(fz.ops_path);
    if (fz.inputs > FZ_WARMUP_INPUTS)
        fprintf(stderr, "portal-fuzz: heap kept by the %" PRIu64 " inputs after warm-up: %lld bytes "
                "(limit %lld)\n", fz.inputs - FZ_WARMUP_INPUTS, fz.retained, FZ_GROWTH_LIMIT);
}

static void write_ops_file(const char *dir)
{
    snprintf(fz.ops_custom_path, sizeof fz.ops_custom_path, "%s/ops-input-%d.txt", dir, (int)getpid());
    /* Per process: fuzzers running side by side (-jobs, or a second run)
     * must not truncate each other's table while it is being read. */
    snprintf(fz.ops_path, sizeof fz.ops_path, "%s/ops-older-%d.txt", dir, (int)getpid());
    FILE *f = fopen(fz.ops_path, "w");
    if (!f) {
        /* a read-only build folder: fall back to the temporary directory */
        snprintf(fz.ops_path, sizeof fz.ops_path, "/tmp/portal-fuzz-ops-%d.txt", (int)getpid());
        snprintf(fz.ops_custom_path, sizeof fz.ops_custom_path, "/tmp/portal-fuzz-ops-input-%d.txt",
                 (int)getpid());
        f = fopen(fz.ops_path, "w");
        if (!f)
            die("cannot write the op table %s", fz.ops_path);
    }
    for (int i = 0; i < 52; i++)
        fprintf(f, "%s\n", standard_op_names[i]);
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *t = getenv("PORTAL_FUZZ_TRACE");
    fz.trace = t && *t && strcmp(t, "0") != 0;
    const char *skip = getenv("PORTAL_FUZZ_SKIP");
    if (skip) {
        fz.skip_bench = strstr(skip, "bench") != NULL;
        fz.skip_hugelen = strstr(skip, "hugelen") != NULL;
    }

    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        die("readlink /proc/self/exe failed");
    exe[n] = 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", dirname(exe));

    char lib[8192];
    const char *env = getenv("PORTAL_FUZZ_LIB");
    if (env && *env)
        snprintf(lib, sizeof lib, "%s", env);
    else
        snprintf(lib, sizeof lib, "%s/../../../.build-fuzz/debug/libportal.so", dir);
    const char *demo = getenv("PORTAL_FUZZ_DEMO");
    if (demo && *demo)
        snprintf(demo_load, sizeof demo_load, "load=%s", demo);
    else
        snprintf(demo_load, sizeof demo_load, "load=%s/../../../Tests/demo/.build/debug/libPortalDemo.so", dir);
    char error[4096];
    if (!emu_open(lib, error, sizeof error))
        die("%s", error);
    if (!api.attach || !api.detach || !api.register_interrupt || !api.queue_interrupt ||
        !api.take_install_budget || !api.op)
        die("%s does not export the C API of portal.h", lib);

    write_ops_file(dir);
    snprintf(fz.control_path, sizeof fz.control_path, "/tmp/portal-fuzz-control-%d.sock", (int)getpid());
    for (size_t i = 0; i < sizeof big_payload; i++)
        big_payload[i] = (uint8_t)(i * 131u + (i >> 9));
    for (size_t i = 0; i < sizeof fz.user_pattern; i++)
        fz.user_pattern[i] = pattern_byte(USER_BASE + i);
    for (int w = 0; w < 2; w++) {
        uint64_t base = (w ? 0xffff800000000000ull : 0xc0000000ull) + 0x200000;
        for (size_t i = 0; i < sizeof fz.kdata_pattern[w]; i++)
            fz.kdata_pattern[w][i] = pattern_byte(base + i);
    }

    /* Every argument variant must load: a refusal here is a broken fuzzer. */
    for (unsigned v = 0; v < 8; v++) {
        uint8_t cfg = FZ_CFG_MAKE(0, 0, 1, v);
        LLVMFuzzerTestOneInput(&cfg, 1);
    }
    fz.inputs = 0;
    atexit(report_heap);
    fprintf(stderr, "portal-fuzz: driving %s\n", lib);
    return 0;
}
