/*
 * record_seeds.c - writes the fuzzer's seed corpus (program.h format).
 *
 *   record_seeds --lib /abs/path/libportal.so --out DIR
 *
 * Two kinds of seeds, all deterministic:
 *
 *  h-NAME  the harness scenario NAME (Tests/harness/scenarios_*.c) run
 *          against the real library, every trap recorded as it happened:
 *          the region page mapped, its header and answer payload as the
 *          guest left them before the trap (FA_MAP, FA_POKE), then the trap
 *          itself with its vCPU, number and registers (FA_TRAP). Work the
 *          scenario attaches or queues becomes FA_ATTACH / FA_REGISTER_IRQ /
 *          FA_QUEUE, a second init_plugin FA_REINIT. Traps made on vCPU
 *          threads other than the main one are not recorded (their order
 *          is not deterministic).
 *
 *  s-NAME-CFG  a scripted program of a well-behaved guest (the module loop
 *          of the harness guest, FA_CONV_*) for each kind of work the
 *          fuzzer attaches, each tour event, interrupts, nesting,
 *          interleaving, abandoning, registrations, unmapped pages, reinit,
 *          in several guest shapes and plugin argument variants.
 *
 * The harness sources are linked in unchanged: main.c with main renamed,
 * emulator.c with emu_hypercall and emu_init renamed so the wrappers here
 * see every trap and every init first.
 */
#define _GNU_SOURCE
#include "program.h"

#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool emu_hypercall_inner(CPUState *cpu, panda_hypercall *call);
bool emu_init_inner(guest *g, const char *const *args, int count);


/* ------------------------------------------------------------ encoding -- */

static fz_out out;

/* The fuzzer's guest has the harness defaults (guest_new) for its shape. */
static bool shape64 = true;
static uint64_t d_pool(void) { return shape64 ? 0xffff888000100000ull : 0xc1000000ull; }
static uint64_t d_flag(void) { return shape64 ? 0xffff888000010008ull : 0xc0010008ull; }
static uint64_t d_kdata(void) { return (shape64 ? 0xffff800000000000ull : 0xc0000000ull) + 0x200000; }

static void e_arg(uint64_t v)
{
    if (v == 0) {
        fz_u8(&out, FG_ZERO);
    } else if (v < 256) {
        fz_u8(&out, FG_U8);
        fz_u8(&out, (uint8_t)v);
    } else if (v == d_flag()) {
        fz_u8(&out, FG_FLAG);
    } else if (v >= d_pool() && (v - d_pool()) % FZ_POOL_STRIDE == 0 &&
               (v - d_pool()) / FZ_POOL_STRIDE < 32) {
        fz_u8(&out, FG_POOL);
        fz_u8(&out, (uint8_t)((v - d_pool()) / FZ_POOL_STRIDE));
    } else if (v >= USER_BASE && v - USER_BASE < 65536) {
        fz_u8(&out, FG_USER);
        fz_u16(&out, (uint16_t)(v - USER_BASE));
    } else if (v >= d_kdata() && v - d_kdata() < 65536) {
        fz_u8(&out, FG_KDATA);
        fz_u16(&out, (uint16_t)(v - d_kdata()));
    } else if (v >= 0xf0000000u && v < 0xf000000au) {
        fz_u8(&out, FG_RESP);
        fz_u8(&out, (uint8_t)(v - 0xf0000000u));
    } else if (v < 65536) {
        fz_u8(&out, FG_U16);
        fz_u16(&out, (uint16_t)v);
    } else if (v <= 0xffffffffull) {
        fz_u8(&out, FG_U32);
        fz_u32(&out, (uint32_t)v);
    } else {
        fz_u8(&out, FG_U64);
        fz_u64(&out, v);
    }
}

static void e_num(uint64_t v)
{
    for (int k = 0; k < FN_NAMED_COUNT; k++) {
        if (v == fz_named_numbers[k]) {
            fz_u8(&out, (uint8_t)k);
            return;
        }
        if (v == (0xffffffff00000000ull | fz_named_numbers[k])) {
            fz_u8(&out, FN_SX);
            fz_u8(&out, (uint8_t)k);
            return;
        }
    }
    if (v <= 0xffffffffull) {
        fz_u8(&out, FN_U32);
        fz_u32(&out, (uint32_t)v);
    } else {
        fz_u8(&out, FN_U64);
        fz_u64(&out, v);
    }
}

static uint8_t name_index(const char *name)
{
    for (int i = 0; i < FZ_NAME_COUNT; i++)
        if (strcmp(fz_names[i], name) == 0)
            return (uint8_t)i;
    unsigned h = 5381;
    for (const char *p = name; *p; p++)
        h = h * 33 + (unsigned char)*p;
    return (uint8_t)(2 + h % 5);   /* one of the c_* interrupts */
}

/* -------------------------------------------------- recording the harness -- */

static bool recording;
static pthread_t main_thread;
static guest *cur_g;
static bool have_cfg;
static uint8_t cfg;
static uint64_t seen_pages[64];
static int nseen;

static bool page_seen(uint64_t page)
{
    for (int i = 0; i < nseen; i++)
        if (seen_pages[i] == page)
            return true;
    if (nseen < 64)
        seen_pages[nseen++] = page;
    return false;
}

static bool recordable(void)
{
    return recording && cur_g && pthread_equal(pthread_self(), main_thread);
}

bool emu_init(guest *g, const char *const *args, int count)
{
    bool ok = emu_init_inner(g, args, count);
    if (ok && recording && pthread_equal(pthread_self(), main_thread)) {
        const guest_config *c = guest_get_config(g);
        if (!have_cfg) {
            have_cfg = true;
            shape64 = c->word_bits == 64;
            unsigned vcpus = c->vcpus > 4 ? 4 : c->vcpus;
            cfg = FZ_CFG_MAKE(c->word_bits == 32, c->big_endian, vcpus, 0);
        } else {
            fz_u8(&out, FA_REINIT);
        }
        cur_g = g;
    }
    return ok;
}

bool emu_hypercall(CPUState *cpu, panda_hypercall *call)
{
    if (recordable() && cpu->g == cur_g) {
        uint64_t region = cpu->trap_region;
        if (region) {
            uint64_t page = region & ~(uint64_t)(GUEST_PAGE_SIZE - 1);
            if (!page_seen(page)) {
                fz_u8(&out, FA_MAP);
                e_arg(page);
                fz_u8(&out, 0);
            }
            uint8_t raw[255];
            memset(raw, 0, sizeof raw);
            guest_peek(cpu->g, region, raw, REGION_HEADER);
            uint32_t op = (uint32_t)guest_decode(cpu->g, raw, 4);
            uint64_t size = guest_decode(cpu->g, raw + 16, 8);
            size_t n = REGION_HEADER;
            if (op == RESP_READ_OK || op == RESP_READ_PARTIAL)
                n += size < sizeof raw - REGION_HEADER ? size : sizeof raw - REGION_HEADER;
            guest_peek(cpu->g, region, raw, n);
            fz_u8(&out, FA_POKE);
            e_arg(region);
            fz_u8(&out, (uint8_t)n);
            fz_put(&out, raw, n);
        }
        fz_u8(&out, FA_TRAP);
        fz_u8(&out, (uint8_t)cpu->index);
        e_num(call->number);
        for (int i = 0; i < 4; i++)
            e_arg(call->args[i]);
    }
    return emu_hypercall_inner(cpu, call);
}

static int (*real_attach)(uint32_t, portal_step_fn, void *);
static int (*real_register)(const char *, portal_step_fn, void *);
static bool (*real_queue)(const char *);

static int rec_attach(uint32_t number, portal_step_fn step, void *userdata)
{
    if (recordable()) {
        fz_u8(&out, FA_ATTACH);
        e_num(number);
        fz_u8(&out, FS_SCRIPT);
    }
    return real_attach(number, step, userdata);
}

static int rec_register(const char *name, portal_step_fn step, void *userdata)
{
    if (recordable() && name) {
        fz_u8(&out, FA_REGISTER_IRQ);
        fz_u8(&out, name_index(name));
        fz_u8(&out, FS_IRQ_WRITE);
    }
    return real_register(name, step, userdata);
}

static bool rec_queue(const char *name)
{
    if (recordable() && name) {
        fz_u8(&out, FA_QUEUE);
        fz_u8(&out, name_index(name));
    }
    return real_queue(name);
}

/* ------------------------------------------------------------- writing -- */

static char out_dir[4096];
static int written;

static void write_seed(const char *name, uint8_t config)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    size_t n = out.len < FZ_MAX_LEN - 1 ? out.len : FZ_MAX_LEN - 1;
    fputc(config, f);
    fwrite(out.bytes, 1, n, f);
    fclose(f);
    written++;
}

static void begin(void)
{
    memset(&out, 0, sizeof out);
}

/* ------------------------------------------------------ scripted seeds -- */

static void a_boot(void) { fz_u8(&out, FA_BOOT); fz_u8(&out, 0); }
static void a_start(uint8_t slot, uint8_t vcpu, uint64_t num, uint64_t a1, uint64_t a2)
{
    fz_u8(&out, FA_CONV_START);
    fz_u8(&out, slot);
    fz_u8(&out, vcpu);
    e_num(num);
    e_arg(a1);
    e_arg(a2);
}
static void a_run(uint8_t slot) { fz_u8(&out, FA_CONV_RUN); fz_u8(&out, slot); }
static void a_step(uint8_t slot, uint8_t n) { fz_u8(&out, FA_CONV_STEP); fz_u8(&out, slot); fz_u8(&out, n - 1); }
static void a_converse(uint64_t num, uint64_t a1, uint64_t a2) { a_start(0, 0, num, a1, a2); a_run(0); }
static void a_queue(const char *name) { fz_u8(&out, FA_QUEUE); fz_u8(&out, name_index(name)); }
static void a_poke(uint64_t addr, const void *bytes, uint8_t n)
{
    fz_u8(&out, FA_POKE);
    e_arg(addr);
    fz_u8(&out, n);
    fz_put(&out, bytes, n);
}
static void a_trap(uint8_t vcpu, uint64_t num, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4)
{
    fz_u8(&out, FA_TRAP);
    fz_u8(&out, vcpu);
    e_num(num);
    e_arg(a1);
    e_arg(a2);
    e_arg(a3);
    e_arg(a4);
}
/* A region header: into conversation slot `target`'s region, or (target
 * FZ_TARGET_ADDR) at `at`. */
static void a_header(uint8_t target, uint64_t at, uint32_t op, uint64_t addr, uint64_t size)
{
    fz_u8(&out, FA_POKE_HEADER);
    fz_u8(&out, target);
    if (target & FZ_TARGET_ADDR)
        e_arg(at);
    if (op >= 0xf0000000u && op < 0xf0000010u) {
        fz_u8(&out, (uint8_t)(FZ_OPSEL_RESP + (op - 0xf0000000u)));
    } else if (op < FZ_OPSEL_RESP) {
        fz_u8(&out, (uint8_t)op);
    } else {
        fz_u8(&out, 0xff);
        fz_u32(&out, op);
    }
    fz_u8(&out, 0);
    e_arg(addr);
    e_arg(size);
}

#define TOUR 0x1338u
#define EV(n) (0x7e570000u + (n))

static void seed_tour(void)
{
    static const char banner[] = "portal-test-guest fuzz v1";
    a_boot();
    a_poke(USER_BASE + 0x800, banner, sizeof banner);
    a_converse(TOUR, EV(1), USER_BASE + 0x800);
    a_converse(TOUR, EV(2), USER_BASE + 0x800);
    a_converse(TOUR, EV(3), USER_BASE);
    a_converse(TOUR, EV(4), 0);
    a_converse(TOUR, EV(5), USER_BASE + 4 * GUEST_PAGE_SIZE - 100);
    a_converse(TOUR, EV(6), USER_BASE + 6 * GUEST_PAGE_SIZE);
    a_converse(TOUR, EV(7), USER_BASE + 6 * GUEST_PAGE_SIZE);
    a_converse(TOUR, EV(8), 0);
    a_converse(TOUR, EV(9), USER_BASE + 0x200);
    a_converse(TOUR, EV(10), 0);
    a_converse(TOUR, EV(0x10), 3);
    a_converse(TOUR, EV(0xb), 0);
}

static void seed_c_steps(void)
{
    a_boot();
    a_converse(0x1339, 0, 0);
    for (uint64_t k = 0; k < 3; k++)
        a_converse(0x133b, k, k);
    for (uint64_t k = 0; k < 17; k++)
        a_converse(0x133c, k, USER_BASE + 8 * k);
    a_converse(0x6901, USER_BASE, USER_BASE + 8);
    a_converse(0x6902, USER_BASE, 3);
    a_converse(0x6903, USER_BASE, USER_BASE + 64);
    a_converse(0x6903, USER_BASE, USER_BASE + 64);
    a_converse(0x6904, 7, 0);
}

static void seed_interrupts(void)
{
    a_boot();
    static const char *const names[] = {"c_write", "c_budget", "c_fail", "c_garbage", "c_script", "alpha", "beta"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        a_queue(names[i]);
    a_converse(0x1339, 0, 0);
    fz_u8(&out, FA_REGISTER_IRQ);
    fz_u8(&out, name_index("c_write"));
    fz_u8(&out, FS_IRQ_BUDGET);
    a_queue("c_write");
    a_queue("c_budget");
    a_start(1, 0, 0x7902, d_flag(), 0);
    a_run(1);
    a_queue("no-such-interrupt");
    a_converse(0x6901, USER_BASE, USER_BASE + 8);
}

static void seed_nested(void)
{
    a_boot();
    fz_u8(&out, FA_NEST);
    fz_u8(&out, 2);          /* depth 3, every op */
    e_num(0x6901);
    e_arg(USER_BASE);
    e_arg(USER_BASE + 16);
    a_converse(0x1339, 0, 0);
    a_queue("c_write");
    a_converse(TOUR, EV(4), 0);
}

static void seed_interleaved(void)
{
    a_boot();
    a_start(0, 0, 0x1339, 0, 0);
    a_start(1, 1, 0x6901, USER_BASE, USER_BASE + 8);
    a_start(2, 2, TOUR, EV(3), USER_BASE);
    a_start(3, 3, 0x6902, USER_BASE, 5);
    for (int round = 0; round < 4; round++)
        for (uint8_t s = 0; s < 4; s++)
            a_step(s, 1);
    fz_u8(&out, FA_CONV_MIGRATE);
    fz_u8(&out, 1);
    fz_u8(&out, 2);
    for (uint8_t s = 0; s < 4; s++)
        a_run(s);
}

static void seed_abandon(void)
{
    a_boot();
    a_start(0, 0, 0x1339, 0, 0);
    a_step(0, 1);
    fz_u8(&out, FA_CONV_ABANDON);
    fz_u8(&out, 0);
    a_start(0, 0, 0x6901, USER_BASE, USER_BASE + 8);   /* the same page (LIFO pool) */
    a_run(0);
    a_start(1, 0, TOUR, EV(3), USER_BASE);
    a_step(1, 2);
    /* the guest traps on the same region with arg4 = 0: a restart */
    a_trap(0, 0x1339, 0, 0, d_pool(), 0);
    a_run(1);
}

static void seed_register(void)
{
    static const uint64_t sizes[] = {0, 1, 24, 4072, 16360, 1u << 20, (1u << 20) + 1, ~0ull};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        a_trap(0, 0xbebebebe, sizes[i], 0, 0, 0);
        a_converse(0x6902, USER_BASE, 1);
        a_converse(0x1339, 0, 0);
    }
}

static void seed_unmapped(void)
{
    a_boot();
    fz_u8(&out, FA_UNMAP);
    e_arg(d_pool());
    fz_u8(&out, 0);
    a_converse(0x1339, 0, 0);
    a_trap(0, 0x7901, 0x7fff0000, 0, 0, 0);
    a_queue("c_write");
    a_converse(0x6901, USER_BASE, USER_BASE + 8);
    fz_u8(&out, FA_MAP);
    e_arg(d_pool());
    fz_u8(&out, 0);
    a_trap(0, 0x7901, d_flag(), 0, 0, 0);
    a_converse(0x1339, 0, 0);
}

static void seed_reinit(void)
{
    a_boot();
    a_start(0, 0, 0x1339, 0, 0);
    a_step(0, 1);
    a_start(1, 0, TOUR, EV(3), USER_BASE);
    a_step(1, 1);
    fz_u8(&out, FA_REINIT);
    a_run(0);
    a_run(1);
    a_queue("alpha");
    fz_u8(&out, FA_REINIT);
    a_boot();
    a_converse(TOUR, EV(9), USER_BASE);
    a_converse(0x1339, 0, 0);
}

static void seed_inject(void)
{
    a_boot();
    fz_u8(&out, FA_INJECT);
    fz_u8(&out, 1);                                 /* READ */
    fz_u8(&out, FZ_OPSEL_RESP + 1);                 /* READ_OK */
    e_arg(1u << 20);
    fz_u8(&out, 0x81);
    a_converse(0x1339, 0, 0);
    fz_u8(&out, FA_INJECT);
    fz_u8(&out, 0);
    fz_u8(&out, FZ_OPSEL_RESP + 9);                 /* invalid */
    e_arg(0);
    fz_u8(&out, 0x01);
    a_converse(0x6901, USER_BASE, USER_BASE + 8);
    a_start(0, 0, 0x1339, 0, 0);
    a_header(0, 0, 0xf0000001u, USER_BASE, 5000);
    a_step(0, 2);
    a_start(0, 0, 0x1339, 0, 0);
    a_header(0, 0, 0xf0000006u, 0, ~0ull);
    a_run(0);
}

static void seed_raw_protocol(void)
{
    uint64_t r = d_pool();
    fz_u8(&out, FA_MAP);
    e_arg(r);
    fz_u8(&out, 0);
    a_trap(0, 0xbebebebe, 4072, 0, 0, 0);
    a_trap(0, 0x7901, d_flag(), 0, 0, 0);
    a_trap(0, 0x1339, 0, 0, r, 0);
    a_header(FZ_TARGET_ADDR, r, 0xf0000001u, USER_BASE, 16);
    a_trap(0, 0x1339, 0, 0, r, 0xf0000001u);
    a_header(FZ_TARGET_ADDR, r, 0xf0000004u, 0, 0);
    a_trap(0, 0x1339, 0, 0, r, 0xf0000004u);
    a_trap(0, 0x1339, 0, 0, r, 0xfffffffff0000002ull);
    a_trap(0, 0x1339, 0, 0, r, 0xf0000009u);
    a_trap(1, 0x1339, 0, 0, r, 0);
    a_trap(0, 0x7902, 1, 0, r, 0);
    a_queue("c_write");
    a_trap(0, 0x7902, d_flag(), 0, r, 0);
    a_trap(0, 0x7902, d_flag(), 0, r, 0xf0000004u);
}

static void seed_bench(void)
{
    uint8_t params[16] = {0};
    params[0] = 3;                                   /* count, little-endian */
    uint64_t addr = USER_BASE;
    memcpy(params + 8, &addr, 8);
    a_boot();
    a_poke(USER_BASE + 0x100, params, 16);
    a_converse(TOUR, 0xbe0c0001, USER_BASE + 0x100);
    params[0] = 100;
    a_poke(USER_BASE + 0x100, params, 16);
    a_converse(TOUR, 0xbe0c0002, USER_BASE + 0x100);
    a_converse(TOUR, 0xbe0c0003, USER_BASE + 0x100);
    a_converse(TOUR, 0xbe0c0009, USER_BASE + 0x100);
}

static void seed_stale(void)
{
    a_boot();
    for (uint8_t s = 0; s < 6; s++) {
        a_start(s, 0, 0x1339, 0, 0);
        a_step(s, 1);
    }
    a_converse(0x6901, USER_BASE, USER_BASE + 8);
    for (uint8_t s = 0; s < 6; s++)
        a_run(s);
}

/* init_plugin with chosen arguments: every key, a reordered op table, and
 * each lie of panda_get_guest_info (1-4 must be refused). */
static void a_init_args(uint8_t mask, uint8_t lie, const uint32_t values[5], uint8_t demo,
                        uint8_t level, const uint8_t *ops, uint8_t nops)
{
    fz_u8(&out, FA_INIT_ARGS);
    fz_u8(&out, mask);
    fz_u8(&out, lie);
    for (int k = 0; k < 5; k++)
        if (mask & (1u << k))
            fz_u32(&out, values[k]);
    if (mask & 0x20)
        fz_u8(&out, demo);
    if (mask & 0x40)
        fz_u8(&out, level);
    if (mask & 0x80) {
        fz_u8(&out, nops);
        fz_put(&out, ops, nops);
    }
}

static void seed_init_args(void)
{
    /* READ, WRITE, READ_STR, READ_TIME as `NAME = N` lines, then the rest */
    uint8_t ops[60];
    uint8_t n = 0;
    ops[n++] = 0x40 | 0;
    ops[n++] = 0x40 | 1;
    ops[n++] = 0x40 | 2;
    ops[n++] = 0xc0;            /* a comment */
    for (uint8_t i = 3; i < 55 && n < sizeof ops; i++)
        ops[n++] = i;
    static const uint32_t small[5] = {64, 2, 3, 2, 1};
    static const uint32_t large[5] = {16360, 1000000, 1000000, 1000000, 1000000000};
    a_init_args(0xff, 0, small, 0, 4, ops, n);
    a_boot();
    a_converse(TOUR, EV(3), USER_BASE);
    a_converse(0x1339, 0, 0);
    for (uint8_t lie = 5; lie < 8; lie++) {
        a_init_args(0x1f, lie, large, 0, 0, NULL, 0);
        a_boot();
        a_converse(0x6901, USER_BASE, USER_BASE + 8);
    }
}

static void seed_init_lies(void)
{
    static const uint32_t none[5] = {0, 0, 0, 0, 0};
    for (uint8_t lie = 1; lie <= 4; lie++) {
        a_init_args(0x00, lie, none, 0, 0, NULL, 0);
        a_boot();
        a_converse(0x6901, USER_BASE, USER_BASE + 8);
    }
}

typedef struct scripted {
    const char *name;
    void (*build)(void);
    const uint8_t *configs;   /* ended by 0xff */
} scripted;

static const uint8_t cfg_all[] = {
    FZ_CFG_MAKE(0, 0, 1, 0), FZ_CFG_MAKE(1, 1, 1, 0), FZ_CFG_MAKE(0, 0, 4, 1),
    FZ_CFG_MAKE(0, 1, 1, 2), FZ_CFG_MAKE(1, 0, 2, 3), FZ_CFG_MAKE(0, 0, 1, 6), 0xff,
};
static const uint8_t cfg_few[] = {FZ_CFG_MAKE(0, 0, 4, 0), FZ_CFG_MAKE(1, 1, 4, 1), 0xff};
static const uint8_t cfg_bench[] = {FZ_CFG_MAKE(0, 0, 1, 4), FZ_CFG_MAKE(1, 1, 1, 4), 0xff};
static const uint8_t cfg_stale[] = {FZ_CFG_MAKE(0, 0, 1, 5), FZ_CFG_MAKE(0, 0, 1, 2), FZ_CFG_MAKE(0, 0, 1, 0), 0xff};

static const scripted scripts[] = {
    {"tour", seed_tour, cfg_all},
    {"c-steps", seed_c_steps, cfg_all},
    {"interrupts", seed_interrupts, cfg_all},
    {"nested", seed_nested, cfg_all},
    {"interleaved", seed_interleaved, cfg_few},
    {"abandon", seed_abandon, cfg_all},
    {"register", seed_register, cfg_all},
    {"unmapped", seed_unmapped, cfg_all},
    {"reinit", seed_reinit, cfg_all},
    {"inject", seed_inject, cfg_all},
    {"raw-protocol", seed_raw_protocol, cfg_all},
    {"bench", seed_bench, cfg_bench},
    {"stale", seed_stale, cfg_stale},
    {"init-args", seed_init_args, cfg_few},
    {"init-lies", seed_init_lies, cfg_few},
};

static void write_scripted(void)
{
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        for (const uint8_t *c = scripts[i].configs; *c != 0xff; c++) {
            shape64 = !(*c & FZ_CFG_32BIT);
            begin();
            scripts[i].build();
            char name[256];
            snprintf(name, sizeof name, "s-%s-%02x", scripts[i].name, *c);
            write_seed(name, *c);
        }
    }
}

/* --------------------------------------------------------------- main -- */

static const scenario *const tables[] = {
    scenarios_protocol, scenarios_interrupts,
    scenarios_conversations, scenarios_plugin,
};

int main(int argc, char **argv)
{
    const char *lib = NULL;
    const char *dir = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--lib") == 0)
            lib = argv[i + 1];
        else if (strcmp(argv[i], "--out") == 0)
            dir = argv[i + 1];
    }
    if (!lib || !dir) {
        fprintf(stderr, "usage: record_seeds --lib /abs/path/libportal.so --out DIR\n");
        return 2;
    }
    snprintf(out_dir, sizeof out_dir, "%s", dir);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        perror(out_dir);
        return 2;
    }
    char logs[4200];
    snprintf(logs, sizeof logs, "%s/../seed-logs", out_dir);
    if (mkdir(logs, 0755) != 0 && errno != EEXIST) {
        perror(logs);
        return 2;
    }

    write_scripted();

    char error[1024];
    if (!emu_open(lib, error, sizeof error)) {
        fprintf(stderr, "record_seeds: %s\n", error);
        return 2;
    }
    real_attach = api.attach;
    real_register = api.register_interrupt;
    real_queue = api.queue_interrupt;
    if (!real_attach || !real_register || !real_queue) {
        fprintf(stderr, "record_seeds: %s does not export the C API\n", lib);
        return 2;
    }
    api.attach = rec_attach;
    api.register_interrupt = rec_register;
    api.queue_interrupt = rec_queue;

    main_thread = pthread_self();
    int scenarios = 0, failed = 0;
    for (size_t k = 0; k < sizeof tables / sizeof tables[0]; k++) {
        for (const scenario *s = tables[k]; s->name; s++) {
            if (s->only_by_name)
                continue;
            T t;
            memset(&t, 0, sizeof t);
            t.name = s->name;
            snprintf(t.log_path, sizeof t.log_path, "%s/%s.log", logs, s->name);
            remove(t.log_path);
            begin();
            have_cfg = false;
            cfg = 0;
            nseen = 0;
            shape64 = true;
            cur_g = NULL;
            recording = true;
            s->run(&t);
            recording = false;
            if (emu_initialized())
                emu_uninit();
            if (t.g)
                guest_free(t.g);
            free(t.traps_buf);
            cur_g = NULL;
            scenarios++;
            if (t.failed) {
                failed++;
                fprintf(stderr, "record_seeds: scenario %s failed while recording: %s\n", s->name,
                        t.detail);
            }
            if (have_cfg && out.len > 0) {
                char name[256];
                snprintf(name, sizeof name, "h-%s", s->name);
                write_seed(name, cfg);
            }
        }
    }
    printf("record_seeds: %d seeds in %s (%d harness scenarios recorded, %d failed)\n", written,
           out_dir, scenarios, failed);
    return failed ? 1 : 0;
}
