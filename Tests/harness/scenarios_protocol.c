/*
 * scenarios_protocol.c - the C step API at the protocol: a response and the
 * conversation's fields as portal.h hands them to a step function (a READ,
 * READ_NUM answers, READ_PTR_ARRAY: the one op only this mock guest serves), a
 * portal_command turned into exact header bytes in every byte order and
 * width (PROTOCOL.md §4), the region size a step sees, the hypercall numbers
 * of a sign-extending guest, and word reads and writes in every layout.
 * Which answers the engine gives to which guest behaviour is the Swift
 * tests' business (Tests/PortalEngineTests).
 */
#include "steps.h"

#include <stdlib.h>
#include <string.h>

/* Most scenarios keep their script static: it is large, and a library that
 * (wrongly) ran a step after the scenario returned would find it alive. */
static script s;

static void expect_pattern(uint8_t *out, uint64_t addr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = pattern_byte(addr + i);
}

/* -------------------------------------- the response a step function sees -- */

static void resp_read_ok_kernel(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    uint64_t a = kdata(g) + 0x10;
    script_cmd(&s, api.op("READ"), 0, a, 16, NULL, 0);
    s.result = 0x1234;
    uint64_t ret;
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, &ret, &n);
    CHECK_EQ(ret, 0x1234);
    CHECK_EQ(s.starts, 1);
    CHECK_EQ(s.nanswers, 1);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 16);
    CHECK_EQ(s.answers[0].addr, a);
    uint8_t want[16];
    expect_pattern(want, a, 16);
    CHECK_BYTES(s.answers[0].data, want, 16);
    CHECK_EQ(n, 2);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, a, 16);
    CHECK_EQ(tr[0].args[3], 0);            /* arg4 is 0 on the first trip */
    CHECK_EQ(tr[1].args[3], PORTAL_RESP_READ_OK);
    CHECK_EQ(tr[1].op, 0);                 /* finished: NONE */
    CHECK_EQ(tr[1].ret_reg, 0x1234);
    CHECK_EQ(s.first.call.number, HC_SYSCALL_ENTER);
    CHECK_EQ(s.first.region_address, tr[0].region);
    CHECK_EQ(s.first.region_size, 4072);
    CHECK_EQ(s.first.word_bits, 64);
    CHECK_EQ(s.first.big_endian, 0);
}

static void resp_read_num(T *t, unsigned bits, bool be)
{
    REQUIRE_API();
    SETUP(bits, be, 1);
    memset(&s, 0, sizeof s);
    static const char sym[] = "do_sys_open", nosym[] = "no_such_symbol";
    script_cmd(&s, api.op("READ_TIME"), 0, 0, 0, NULL, 0);
    script_cmd(&s, api.op("READ_TIME"), 0, 0, 0, NULL, 0);
    script_cmd(&s, api.op("KALLSYMS_LOOKUP"), 0, 0, sizeof sym, sym, sizeof sym);
    script_cmd(&s, api.op("KALLSYMS_LOOKUP"), 0, 0, sizeof nosym, nosym, sizeof nosym);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 4);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_NUM);
    CHECK_EQ(s.answers[0].size, TIME0);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_READ_NUM);
    CHECK_EQ(s.answers[1].size, TIME0 + TIME_STEP);
    CHECK_EQ(s.answers[2].code, PORTAL_RESP_READ_NUM);
    CHECK_EQ(s.answers[2].size, sym_addr(g, 0));
    CHECK_EQ(s.answers[3].code, PORTAL_RESP_READ_FAIL);
    CHECK_HEADER(&tr[0], OP_READ_TIME, PORTAL_CURRENT_PID, 0, 0);
    CHECK_HEADER(&tr[2], OP_KALLSYMS_LOOKUP, PORTAL_CURRENT_PID, 0, sizeof sym);
    CHECK_BYTES(tr[2].payload, sym, sizeof sym);
}

static void resp_read_num_le64(T *t) { resp_read_num(t, 64, false); }
static void resp_read_num_be32(T *t) { resp_read_num(t, 32, true); }

/* READ_PTR_ARRAY: pointers of the guest's width, in its byte order. */
static void read_ptr_array(T *t, unsigned bits, bool be)
{
    REQUIRE_API();
    SETUP(bits, be, 1);
    int wb = (int)bits / 8;
    uint64_t arr = USER_BASE + 0x800;
    static const char *const strs[3] = {"sh", "-c", "echo hi"};
    uint64_t at = USER_BASE + 0x900;
    for (int i = 0; i < 3; i++) {
        uint8_t p[8];
        guest_poke(g, at, strs[i], strlen(strs[i]) + 1);
        guest_encode(g, p, at, wb);
        guest_poke(g, arr + (uint64_t)(i * wb), p, (uint64_t)wb);
        at += 16;
    }
    uint8_t zero[8] = {0};
    guest_poke(g, arr + (uint64_t)(3 * wb), zero, (uint64_t)wb);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ_PTR_ARRAY"), 0, arr, 0, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 14);
    CHECK_BYTES(s.answers[0].data, "sh\0-c\0echo hi\0", 14);
}

static void read_ptr_array_le64(T *t) { read_ptr_array(t, 64, false); }
static void read_ptr_array_be32(T *t) { read_ptr_array(t, 32, true); }

/* ------------------------------------------------------- write rules -- */

static void write_rules(T *t, unsigned bits, bool be)
{
    REQUIRE_API();
    SETUP(bits, be, 1);
    memset(&s, 0, sizeof s);
    static uint8_t big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 1);
    static const char digits[] = "0123456789";
    uint64_t wide = (0xdeadbeefull << 32) | (USER_BASE + 0x20);
    uint64_t masked = bits == 32 ? USER_BASE + 0x20 : wide;

    script_cmd(&s, api.op("READ"), 0, USER_BASE, 10000, NULL, 0);         /* size clamped */
    script_cmd(&s, api.op("READ"), 1234, USER_BASE + 0x10, -5, NULL, 0);   /* negative size, pid */
    script_cmd(&s, api.op("READ"), 0, wide, 4, NULL, 0);                   /* address masked */
    script_cmd(&s, api.op("WRITE"), 0, USER_BASE + 0x1000, 5000, big, sizeof big); /* payload cut */
    script_cmd(&s, api.op("WRITE"), 0, USER_BASE + 0x3000, 10, digits, 10);
    s.result = 0x42;
    uint64_t ret;
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, &ret, &n);
    CHECK_EQ(n, 6);
    CHECK_EQ(ret, 0x42);

    /* Exact header bytes, one write per command of header (+ payload). */
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, USER_BASE, 4072);
    CHECK_HEADER(&tr[1], OP_READ, 1234, USER_BASE + 0x10, 0);
    CHECK_HEADER(&tr[2], OP_READ, PORTAL_CURRENT_PID, masked, 4);
    CHECK_HEADER(&tr[3], OP_WRITE, PORTAL_CURRENT_PID, USER_BASE + 0x1000, 4072);
    CHECK_HEADER(&tr[4], OP_WRITE, PORTAL_CURRENT_PID, USER_BASE + 0x3000, 10);
    CHECK_EQ(tr[5].op, 0);
    static const int want_len[5] = {24, 24, 24, 24 + 4072, 24 + 10};
    for (int i = 0; i < 5; i++) {
        CHECK(tr[i].region_writes == 1, "command %d: %d writes into the region, expected 1 "
              "(header and payload in one write)", i, tr[i].region_writes);
        CHECK(tr[i].region_write_len == want_len[i] && tr[i].region_write_off == 0,
              "command %d: the region write was %d bytes at offset %d, expected %d at 0", i,
              tr[i].region_write_len, tr[i].region_write_off, want_len[i]);
        CHECK(tr[i].failed_ops == 0, "command %d: %d memory calls failed", i, tr[i].failed_ops);
    }
    CHECK_BYTES(tr[3].payload, big, TRAP_PAYLOAD_KEEP);
    CHECK_BYTES(tr[4].payload, digits, 10);

    /* What the guest did with them. */
    CHECK_EQ(s.nanswers, 5);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 4072);
    uint8_t want[4072];
    expect_pattern(want, USER_BASE, 4072);
    CHECK_BYTES(s.answers[0].data, want, 4072);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[1].size, 0);
    if (bits == 32) {
        CHECK_EQ(s.answers[2].code, PORTAL_RESP_READ_OK);
        CHECK_EQ(s.answers[2].size, 4);
        CHECK_EQ(s.answers[2].addr, masked);
        expect_pattern(want, masked, 4);
        CHECK_BYTES(s.answers[2].data, want, 4);
    } else {
        CHECK_EQ(s.answers[2].code, PORTAL_RESP_READ_PARTIAL);   /* nothing mapped there */
        CHECK_EQ(s.answers[2].size, 0);
    }
    CHECK_EQ(s.answers[3].code, PORTAL_RESP_WRITE_OK);
    CHECK_EQ(s.answers[4].code, PORTAL_RESP_WRITE_OK);
    uint8_t mem[4073];
    guest_peek(g, USER_BASE + 0x1000, mem, sizeof mem);
    CHECK_BYTES(mem, big, 4072);
    CHECK_EQ(mem[4072], pattern_byte(USER_BASE + 0x1000 + 4072));
    guest_peek(g, USER_BASE + 0x3000, mem, 11);
    CHECK_BYTES(mem, digits, 10);
    CHECK_EQ(mem[10], pattern_byte(USER_BASE + 0x300a));
}

static void write_rules_le64(T *t) { write_rules(t, 64, false); }
static void write_rules_be64(T *t) { write_rules(t, 64, true); }
static void write_rules_le32(T *t) { write_rules(t, 32, false); }
static void write_rules_be32(T *t) { write_rules(t, 32, true); }

/* The guest registers a 1000-byte region: sizes and payloads are cut at
 * 1000 and the rest of the page is left alone. */
static void region_size_registered(T *t)
{
    REQUIRE_API();
    guest_config c = {.word_bits = 64, .region_size = 1000};
    guest *g = setup_config(t, &c, NULL, 0, true);
    if (!g)
        return;
    memset(&s, 0, sizeof s);
    static uint8_t big[2000];
    memset(big, 0x11, sizeof big);
    script_cmd(&s, api.op("READ"), 0, kdata(g), 5000, NULL, 0);
    script_cmd(&s, api.op("WRITE"), 0, USER_BASE, 2000, big, sizeof big);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.first.region_size, 1000);
    CHECK_EQ(n, 3);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, kdata(g), 1000);
    CHECK_HEADER(&tr[1], OP_WRITE, PORTAL_CURRENT_PID, USER_BASE, 1000);
    CHECK_EQ(tr[1].region_write_len, 1024);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 1000);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_WRITE_OK);
    uint8_t rest[3072], junk[3072];
    memset(junk, GUEST_JUNK, sizeof junk);
    guest_peek(g, tr[0].region + 1024, rest, sizeof rest);
    CHECK_BYTES(rest, junk, sizeof rest);
}

/* Before the guest registers a region the engine uses region_size= (4072
 * by default), then the registered size. */
static void region_size_before_register(T *t)
{
    REQUIRE_API();
    /* The guest's own size differs from the default, so a registration
     * that outlived uninit_plugin would show in the third part. */
    guest_config c = {.word_bits = 64, .region_size = 1000};
    const char *args[] = {"region_size=512"};
    guest *g = setup_config(t, &c, args, 1, false);
    if (!g)
        return;
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, kdata(g), 5000, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.first.region_size, 512);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, kdata(g), 512);
    CHECK_EQ(s.answers[0].size, 512);

    guest_register_region(g, 0);     /* the guest's 1000 */
    script_reset(&s);
    tr = run_script(t, &s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    if (!tr)
        return;
    CHECK_EQ(s.first.region_size, 1000);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, kdata(g), 1000);

    /* a new load without the argument, before the guest registers: 4072 */
    t_uninit(t);
    CHECK(t_init(t, NULL), "init_plugin refused no arguments");
    script_reset(&s);
    s.cmds[0].op = api.op("READ");
    tr = run_script(t, &s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    if (!tr)
        return;
    CHECK_EQ(s.first.region_size, 4072);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, kdata(g), 4072);
}

/* A MIPS64-like guest sign-extends 32-bit numbers with bit 31 set: the
 * engine must match numbers on their low 32 bits. */
static void sign_extended_numbers(T *t)
{
    REQUIRE_API();
    guest_config c = {.word_bits = 64, .region_size = 1000};
    guest *g = t_guest_config(t, &c);
    guest_map(g, USER_BASE, GUEST_PAGE_SIZE);
    guest_set_sign_extend(g, true);
    CHECK(t_init(t, NULL), "init_plugin failed");
    guest_boot(g, 0);
    size_t n;
    trap_record *all = guest_traps(g, &n);
    uint64_t number = all[0].number;
    free(all);
    CHECK_EQ(number, 0xffffffffbebebebeull);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 5000, NULL, 0);
    s.result = 9;
    uint64_t ret;
    RUN_SCRIPT(&s, 0x80001338u, 0, 0, &ret, &n);
    CHECK_EQ(tr[0].number, 0xffffffff80001338ull);
    CHECK_EQ(s.first.call.number, 0x80001338u);
    CHECK_EQ(s.first.region_size, 1000);   /* the sign-extended REGISTER was understood */
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, USER_BASE, 1000);
    CHECK_EQ(ret, 9);
}

/* ------------------------------------------------ basic read/write -- */

static word_stats ws;

static void basic_rw(T *t, unsigned bits, bool be)
{
    REQUIRE_API();
    SETUP(bits, be, 1);
    memset(&ws, 0, sizeof ws);
    uint64_t in = kdata(g) + 0x40, out = USER_BASE + 0x80;
    const uint64_t value = 0x0102030405060708ull;
    guest_put_u64(g, in, value);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, word_step, &ws), 0);
    uint64_t id;
    uint64_t ret = converse(g, 0, HC_SYSCALL_ENTER, in, out, &id);
    CHECK_EQ(ws.failed, 0);
    CHECK_EQ(ws.finished, 1);
    CHECK_EQ(ret, (value + 1) & guest_mask(g));
    uint8_t mem[8], want[8];
    guest_encode(g, want, word_out(value), 8);
    guest_peek(g, out, mem, 8);
    CHECK_BYTES(mem, want, 8);
    size_t n;
    trap_record *tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 3);
    CHECK_EQ(tr[0].args[0], in & guest_mask(g));
    CHECK_EQ(tr[0].args[1], out);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, in & guest_mask(g), 8);
    CHECK_HEADER(&tr[1], OP_WRITE, PORTAL_CURRENT_PID, out, 8);
    CHECK_BYTES(tr[1].payload, want, 8);
    CHECK_EQ(tr[2].op, 0);
    CHECK_EQ(tr[2].ret_reg, (value + 1) & guest_mask(g));
}

static void basic_rw_le64(T *t) { basic_rw(t, 64, false); }
static void basic_rw_be64(T *t) { basic_rw(t, 64, true); }
static void basic_rw_le32(T *t) { basic_rw(t, 32, false); }
static void basic_rw_be32(T *t) { basic_rw(t, 32, true); }

const scenario scenarios_protocol[] = {
    {"resp_read_ok_kernel", resp_read_ok_kernel, false},
    {"resp_read_num_le64", resp_read_num_le64, false},
    {"resp_read_num_be32", resp_read_num_be32, false},
    {"read_ptr_array_le64", read_ptr_array_le64, false},
    {"read_ptr_array_be32", read_ptr_array_be32, false},
    {"write_rules_le64", write_rules_le64, false},
    {"write_rules_be64", write_rules_be64, false},
    {"write_rules_le32", write_rules_le32, false},
    {"write_rules_be32", write_rules_be32, false},
    {"region_size_registered", region_size_registered, false},
    {"region_size_before_register", region_size_before_register, false},
    {"sign_extended_numbers", sign_extended_numbers, false},
    {"basic_rw_le64", basic_rw_le64, false},
    {"basic_rw_be64", basic_rw_be64, false},
    {"basic_rw_le32", basic_rw_le32, false},
    {"basic_rw_be32", basic_rw_be32, false},
    {NULL, NULL, false},
};
