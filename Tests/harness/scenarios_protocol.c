/*
 * scenarios_protocol.c - each response code as the step function sees it,
 * invalid responses and commands, and the command-writing rules of
 * PROTOCOL.md §4 checked as exact header bytes in every byte order and width.
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

/* ------------------------------------------------------ response codes -- */

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

static void resp_read_ok_user(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    uint64_t a = USER_BASE + 8;
    script_cmd(&s, api.op("READ"), 0, a, 100, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 1);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 100);
    uint8_t want[100];
    expect_pattern(want, a, 100);
    CHECK_BYTES(s.answers[0].data, want, 100);
    CHECK_EQ(n, 2);
}

static void resp_read_partial(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    guest_unmap(g, USER_BASE + 0x2000, GUEST_PAGE_SIZE);   /* a hole */
    memset(&s, 0, sizeof s);
    uint64_t a = USER_BASE + 0x2000 - 40;
    script_cmd(&s, api.op("READ"), 0, a, 100, NULL, 0);                      /* 40 of 100 */
    script_cmd(&s, api.op("READ"), 0, USER_BASE + 0x2000 + 16, 8, NULL, 0);  /* 0 of 8 */
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 4, NULL, 0);                /* still alive */
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 3);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_PARTIAL);
    CHECK_EQ(s.answers[0].size, 40);
    uint8_t want[40];
    expect_pattern(want, a, 40);
    CHECK_BYTES(s.answers[0].data, want, 40);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_READ_PARTIAL);
    CHECK_EQ(s.answers[1].size, 0);
    CHECK_EQ(s.answers[2].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[2].size, 4);
    CHECK_EQ(n, 4);
}

static void resp_read_fail(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    /* kernel reads are all or nothing */
    script_cmd(&s, api.op("READ"), 0, kdata(g) + 0x2000 - 8, 16, NULL, 0);
    script_cmd(&s, api.op("READ"), 0, kdata(g) + 0x10000, 8, NULL, 0);
    script_cmd(&s, api.op("READ"), 0, kdata(g), 8, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 3);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_FAIL);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_READ_FAIL);
    CHECK_EQ(s.answers[2].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.bad_codes, 0);
    CHECK_EQ(n, 4);
}

static void resp_write_ok_fail(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    static const char abcde[] = "ABCDE";
    uint64_t k = kdata(g) + 0x2000 - 2;
    script_cmd(&s, api.op("WRITE"), 0, USER_BASE + 0x100, 5, abcde, 5);
    script_cmd(&s, api.op("WRITE"), 0, USER_BASE + 0x4000, 5, abcde, 5);   /* unmapped */
    script_cmd(&s, api.op("WRITE"), 0, k, 5, abcde, 5);                    /* crosses a hole */
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 3);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_WRITE_OK);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_WRITE_FAIL);
    CHECK_EQ(s.answers[2].code, PORTAL_RESP_WRITE_FAIL);
    CHECK_EQ(n, 4);
    CHECK_HEADER(&tr[0], OP_WRITE, PORTAL_CURRENT_PID, USER_BASE + 0x100, 5);
    CHECK_BYTES(tr[0].payload, abcde, 5);
    uint8_t mem[6], want[6] = {'A', 'B', 'C', 'D', 'E', pattern_byte(USER_BASE + 0x105)};
    guest_peek(g, USER_BASE + 0x100, mem, 6);
    CHECK_BYTES(mem, want, 6);
    uint8_t kmem[2], kwant[2];
    expect_pattern(kwant, k, 2);
    guest_peek(g, k, kmem, 2);
    CHECK_BYTES(kmem, kwant, 2);            /* all or nothing */
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

static void resp_unimplemented_op(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("DUMP"), 0, 0, 0, NULL, 0);
    script_cmd(&s, api.op("OSI_PROC_PTREGS"), 0, 0, 0, NULL, 0);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 1, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 3);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_WRITE_FAIL);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_WRITE_FAIL);
    CHECK_EQ(s.answers[2].code, PORTAL_RESP_READ_OK);
    CHECK_HEADER(&tr[0], OP_DUMP, PORTAL_CURRENT_PID, 0, 0);
    CHECK_HEADER(&tr[1], OP_OSI_PROC_PTREGS, PORTAL_CURRENT_PID, 0, 0);
}

/* ------------------------------------------------- invalid exchanges -- */

/* The guest answers a READ with a code that is not a response: the engine
 * must end the conversation (write NONE), never hand the code to the step,
 * and the next conversation on the same page must start from scratch. */
static void invalid_response_code(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    static const uint32_t codes[] = {0x1234, RESP_MAX, 0xefffffff, 0xffffffff, 1};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        memset(&s, 0, sizeof s);
        script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
        script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
        guest_inject(g, OP_READ, codes[i], 1);
        size_t n;
        RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
        CHECK(n == 2, "code %#x: the conversation made %zu traps, expected 2", codes[i], n);
        CHECK_EQ(tr[1].args[3], codes[i]);
        CHECK(tr[1].op == 0, "code %#x: the header after the answer has op %#x, expected 0 (NONE)",
              codes[i], tr[1].op);
        CHECK(s.bad_codes == 0, "code %#x reached the step function", codes[i]);
        CHECK(s.nanswers == 0, "code %#x: the step function ran again (answer code %#x)", codes[i],
              s.answers[0].code);
        expect_page_reused(t, tr[0].region, 8, 77);
        if (t->failed)
            return;
    }
}

/* A guest answering READ_OK with a size larger than the region: the
 * engine must not read past the region nor hand more than region_size bytes
 * to the step (it may instead end the conversation). */
static void oversized_answer(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, USER_BASE, 8, NULL, 0);
    guest_inject_answer(g, OP_READ, RESP_READ_OK, 0x10000, 1);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(n, 2);
    CHECK_EQ(tr[1].failed_ops, 0);           /* no read into the guard page */
    CHECK_EQ(tr[1].op, 0);
    if (s.nanswers == 1) {
        CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
        CHECK(s.answers[0].size <= 4072, "the step was handed %llu bytes from a 4072-byte region",
              (unsigned long long)s.answers[0].size);
        t_note(t, "the engine clamped the answer to %llu bytes", (unsigned long long)s.answers[0].size);
    } else {
        t_note(t, "the engine ended the conversation");
    }
}

/* A step returning an op outside the op table (NONE, MAX, 999): the guest
 * would answer WRITE_FAIL and leave its loop without a trap, so the engine
 * must not send it: it ends the conversation (header op 0) instead. */
static void command_op_out_of_table(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    static const uint32_t ops[] = {999, OP_MAX, 0};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        memset(&s, 0, sizeof s);
        script_cmd(&s, ops[i], 0, USER_BASE, 8, NULL, 0);
        size_t n;
        RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
        CHECK(n == 1, "op %u: %zu traps, expected 1", ops[i], n);
        CHECK(tr[0].op == 0, "op %u: the engine wrote op %#x, expected 0 (NONE)", ops[i], tr[0].op);
        expect_page_reused(t, tr[0].region, 8, 5);
        if (t->failed)
            return;
    }
}

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

/* 16 KiB guest pages: the region payload is 16360 bytes. */
static void region_16k(T *t)
{
    REQUIRE_API();
    guest_config c = {.word_bits = 64, .region_size = 16384 - 24};
    guest *g = setup_config(t, &c, NULL, 0, true);
    if (!g)
        return;
    guest_map(g, kdata(g), 0x8000);
    guest_fill_pattern(g, kdata(g), 0x8000);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ"), 0, kdata(g), 20000, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.first.region_size, 16360);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, kdata(g), 16360);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 16360);
    uint8_t want[ANSWER_KEEP];
    expect_pattern(want, kdata(g), ANSWER_KEEP);
    CHECK_BYTES(s.answers[0].data, want, ANSWER_KEEP);
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
    {"resp_read_ok_user", resp_read_ok_user, false},
    {"resp_read_partial", resp_read_partial, false},
    {"resp_read_fail", resp_read_fail, false},
    {"resp_write_ok_fail", resp_write_ok_fail, false},
    {"resp_read_num_le64", resp_read_num_le64, false},
    {"resp_read_num_be32", resp_read_num_be32, false},
    {"resp_unimplemented_op", resp_unimplemented_op, false},
    {"invalid_response_code", invalid_response_code, false},
    {"oversized_answer", oversized_answer, false},
    {"command_op_out_of_table", command_op_out_of_table, false},
    {"write_rules_le64", write_rules_le64, false},
    {"write_rules_be64", write_rules_be64, false},
    {"write_rules_le32", write_rules_le32, false},
    {"write_rules_be32", write_rules_be32, false},
    {"region_size_registered", region_size_registered, false},
    {"region_size_before_register", region_size_before_register, false},
    {"region_16k", region_16k, false},
    {"sign_extended_numbers", sign_extended_numbers, false},
    {"basic_rw_le64", basic_rw_le64, false},
    {"basic_rw_be64", basic_rw_be64, false},
    {"basic_rw_le32", basic_rw_le32, false},
    {"basic_rw_be32", basic_rw_be32, false},
    {NULL, NULL, false},
};
