/*
 * scenarios_memory.c - reads larger than a region (chunked, across holes),
 * strings crossing guest pages and holes, READ_STR limits, READ_PTR_ARRAY.
 */
#include "steps.h"

#include <stdlib.h>
#include <string.h>

static script s;
static chunked ck;
static strread sr;
static uint8_t buf[8 * 4096];

/* Reads four regions' worth from user memory with a one-page hole:
 *   0x10000-0x11fff mapped, 0x12000-0x12fff hole, 0x13000-0x14fff mapped.
 * From 0x10100 in 4072-byte chunks:
 *   0x10100 +4072 -> READ_OK 4072
 *   0x110e8 +4072 -> READ_PARTIAL 3864 (stops at the hole at 0x12000)
 *   0x120d0 +4072 -> READ_PARTIAL 0 (starts in the hole)
 *   0x130b8 +4072 -> READ_OK 4072 */
static void chunked_read_user_hole(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    guest_map(g, USER_BASE + 0x3000, 2 * GUEST_PAGE_SIZE);
    guest_fill_pattern(g, USER_BASE + 0x3000, 2 * GUEST_PAGE_SIZE);
    guest_unmap(g, USER_BASE + 0x2000, GUEST_PAGE_SIZE);
    memset(&ck, 0, sizeof ck);
    memset(buf, 0, sizeof buf);
    ck.addr = USER_BASE + 0x100;
    ck.total = 4 * 4072;
    ck.buf = buf;
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, chunked_step, &ck), 0);
    uint64_t id;
    uint64_t ret = converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    CHECK_EQ(ck.nrec, 4);
    static const uint32_t codes[4] = {PORTAL_RESP_READ_OK, PORTAL_RESP_READ_PARTIAL,
                                      PORTAL_RESP_READ_PARTIAL, PORTAL_RESP_READ_OK};
    static const uint64_t sizes[4] = {4072, 3864, 0, 4072};
    for (int i = 0; i < 4; i++) {
        CHECK(ck.rec[i].code == codes[i] && ck.rec[i].size == sizes[i],
              "chunk %d at %#llx: code %#x size %llu, expected %#x size %llu", i,
              (unsigned long long)ck.rec[i].addr, ck.rec[i].code,
              (unsigned long long)ck.rec[i].size, codes[i], (unsigned long long)sizes[i]);
    }
    CHECK_EQ(ret, 4072 + 3864 + 4072);
    for (uint64_t i = 0; i < ck.total; i++) {
        uint64_t a = ck.addr + i;
        bool got = i < 4072 + 3864 || i >= 3 * 4072;
        uint8_t want = got ? pattern_byte(a) : 0;
        CHECK(buf[i] == want, "byte %llu (%#llx) is %#x, expected %#x", (unsigned long long)i,
              (unsigned long long)a, buf[i], want);
    }
    size_t n;
    trap_record *tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 5);
    CHECK_HEADER(&tr[0], OP_READ, PORTAL_CURRENT_PID, USER_BASE + 0x100, 4072);
    CHECK_HEADER(&tr[1], OP_READ, PORTAL_CURRENT_PID, USER_BASE + 0x100 + 4072, 4072);
    CHECK_HEADER(&tr[2], OP_READ, PORTAL_CURRENT_PID, USER_BASE + 0x100 + 2 * 4072, 4072);
    CHECK_HEADER(&tr[3], OP_READ, PORTAL_CURRENT_PID, USER_BASE + 0x100 + 3 * 4072, 4072);
    CHECK_EQ(tr[4].op, 0);
}

/* The same in kernel memory: a chunk touching the hole fails whole. */
static void chunked_read_kernel_hole(T *t)
{
    REQUIRE_API();
    SETUP(32, true, 1);
    uint64_t k = kdata(g);                      /* k .. k+0x1fff mapped */
    guest_map(g, k + 0x3000, 2 * GUEST_PAGE_SIZE);   /* k+0x2000 is a hole */
    guest_fill_pattern(g, k + 0x3000, 2 * GUEST_PAGE_SIZE);
    memset(&ck, 0, sizeof ck);
    memset(buf, 0, sizeof buf);
    ck.addr = k + 0x100;
    ck.total = 3 * 4072 + 100;                  /* a short last chunk */
    ck.buf = buf;
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, chunked_step, &ck), 0);
    uint64_t id;
    uint64_t ret = converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    CHECK_EQ(ck.nrec, 4);
    static const uint32_t codes[4] = {PORTAL_RESP_READ_OK, PORTAL_RESP_READ_FAIL,
                                      PORTAL_RESP_READ_FAIL, PORTAL_RESP_READ_OK};
    for (int i = 0; i < 4; i++)
        CHECK(ck.rec[i].code == codes[i], "chunk %d: code %#x, expected %#x", i, ck.rec[i].code,
              codes[i]);
    CHECK_EQ(ck.rec[3].size, 100);
    CHECK_EQ(ret, 4072 + 100);
    uint8_t want[100];
    for (int i = 0; i < 100; i++)
        want[i] = pattern_byte(k + 0x100 + 3 * 4072 + (uint64_t)i);
    CHECK_BYTES(buf + 3 * 4072, want, 100);
    size_t n;
    trap_record *tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 5);
    CHECK_HEADER(&tr[3], OP_READ, PORTAL_CURRENT_PID, k + 0x100 + 3 * 4072, 100);
}

/* A string crossing from one mapped page into the next. */
static void read_str_cross_page(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    static const char text[] = "hello, portal world";   /* 19 characters */
    uint64_t a = USER_BASE + 0x1000 - 8;
    guest_poke(g, a, text, sizeof text);
    /* one READ_STR: the guest copies across the page */
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ_STR"), 0, a, 0, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 19);
    CHECK_BYTES(s.answers[0].data, text, 19);
    CHECK_BYTES(tr[1].payload, text, 20);               /* NUL-terminated in the page */
    /* the Python way: chunks that never cross a page */
    memset(&sr, 0, sizeof sr);
    sr.addr = a;
    CHECK_EQ(api.attach(HC_SYSCALL_RETURN, strread_step, &sr), 0);
    uint64_t ret = converse(g, 0, HC_SYSCALL_RETURN, 0, 0, NULL);
    CHECK_EQ(ret, 19);
    CHECK_EQ(sr.nrec, 2);
    CHECK_EQ(sr.rec[0].addr, a);
    CHECK_EQ(sr.rec[0].asked, 8);
    CHECK_EQ(sr.rec[0].size, 8);
    CHECK_EQ(sr.rec[1].addr, USER_BASE + 0x1000);
    CHECK_EQ(sr.rec[1].asked, 4071 - 8);
    CHECK_EQ(sr.rec[1].size, 11);
    CHECK(strcmp(sr.buf, text) == 0, "read \"%s\", expected \"%s\"", sr.buf, text);
}

/* A string running into a hole: READ_FAIL with size 0. */
static void read_str_into_hole(T *t)
{
    REQUIRE_API();
    SETUP(64, true, 1);
    guest_unmap(g, USER_BASE + 0x2000, GUEST_PAGE_SIZE);
    guest_poke(g, USER_BASE + 0x2000 - 5, "abcde", 5);   /* no NUL before the hole */
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ_STR"), 0, USER_BASE + 0x2000 - 5, 0, NULL, 0);
    script_cmd(&s, api.op("READ_STR"), 0, USER_BASE + 0x2000 - 5, 5, NULL, 0);  /* stops in time */
    script_cmd(&s, api.op("READ_STR"), 0, USER_BASE + 0x2000 + 8, 0, NULL, 0);  /* in the hole */
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 3);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_FAIL);
    CHECK_EQ(s.answers[1].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[1].size, 5);
    CHECK_BYTES(s.answers[1].data, "abcde", 5);
    CHECK_EQ(s.answers[2].code, PORTAL_RESP_READ_FAIL);
}

/* READ_STR size: a limit, 0 or more than region-1 meaning region-1. */
static void read_str_limits(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    uint64_t k = kdata(g);
    guest_poke(g, k, "init_task", 10);
    /* 5000 non-NUL bytes from USER_BASE + 0x100 */
    static uint8_t run[5000];
    memset(run, 'x', sizeof run);
    guest_poke(g, USER_BASE + 0x100, run, sizeof run);
    memset(&s, 0, sizeof s);
    script_cmd(&s, api.op("READ_STR"), 0, k, 0, NULL, 0);
    script_cmd(&s, api.op("READ_STR"), 0, k, 4, NULL, 0);
    script_cmd(&s, api.op("READ_STR"), 0, USER_BASE + 0x100, 0, NULL, 0);
    script_cmd(&s, api.op("READ_STR"), 0, USER_BASE + 0x100, 5000, NULL, 0);
    size_t n;
    RUN_SCRIPT(&s, HC_SYSCALL_ENTER, 0, 0, NULL, &n);
    CHECK_EQ(s.nanswers, 4);
    CHECK_EQ(s.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(s.answers[0].size, 9);
    CHECK_BYTES(s.answers[0].data, "init_task", 9);
    CHECK_EQ(s.answers[1].size, 4);
    CHECK_BYTES(s.answers[1].data, "init", 4);
    CHECK_BYTES(tr[2].payload, "init", 5);
    CHECK_EQ(s.answers[2].size, 4071);
    CHECK_BYTES(s.answers[2].data, run, 4071);
    CHECK_HEADER(&tr[3], OP_READ_STR, PORTAL_CURRENT_PID, USER_BASE + 0x100, 4072);
    CHECK_EQ(s.answers[3].size, 4071);
}

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

const scenario scenarios_memory[] = {
    {"chunked_read_user_hole", chunked_read_user_hole, false},
    {"chunked_read_kernel_hole", chunked_read_kernel_hole, false},
    {"read_str_cross_page", read_str_cross_page, false},
    {"read_str_into_hole", read_str_into_hole, false},
    {"read_str_limits", read_str_limits, false},
    {"read_ptr_array_le64", read_ptr_array_le64, false},
    {"read_ptr_array_be32", read_ptr_array_be32, false},
    {NULL, NULL, false},
};
