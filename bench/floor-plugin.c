/*
 * floor-plugin.c - the cheapest possible host for the portal's BENCH event,
 * as a hand-written QEMU plugin (API version 7). It is the floor that the
 * real plugin (libportal.so) is measured against: the same hypercalls and
 * the same guest memory traffic per round trip, with everything hard-coded.
 *
 * What it answers (Tests/guests/contract.h, PROTOCOL.md):
 *   REGISTER_MEM_REGION (0xbebebebe)   accepted (region size remembered)
 *   ENABLE_PORTAL_INTERRUPT (0x7901)   flag address remembered, nothing queued
 *   PORTAL_INTERRUPT (0x7902)          no work: op stays 0, the guest leaves
 *   0x1338 with arg1 = CONTRACT_EV_BENCH, arg2 = N: N READ {contract page, 8}
 *                                      round trips in one conversation, then
 *                                      NONE and the last value as the result
 *   anything else                      ignored
 * Guests: i386, x86_64, riscv64 (instruction runs after the callback and is
 * harmless), aarch64 and arm (skipped with qemu_plugin_set_pc).
 *
 * The hot path allocates nothing: every GByteArray is created at install
 * time with enough room, and the command header is built once.
 *
 * Build: bench/build-floor.sh. Use: -plugin bench/build/libfloor.so
 */
#include <portal/qemu-plugin-api.h>
#include <string.h>

#include "../Tests/guests/contract.h"

QEMU_PLUGIN_API_EXPORT int qemu_plugin_version = QEMU_PLUGIN_API_VERSION;

#define RESP_READ_OK 0xf0000001u
#define OP_READ 1u

enum { R_NUM, R_A1, R_A2, R_A3, R_RET, R_COUNT };

static struct {
    const char *regs[R_COUNT];
    unsigned char insn[4];
    size_t insn_len;
    bool skip;                 /* arm/aarch64: the instruction would fault */
    uint64_t bench_addr;
} arch;

static struct qemu_plugin_register *reg[R_COUNT];
static GByteArray *regbuf;     /* register reads and the result */
static GByteArray *cmd;        /* the READ command header, built once */
static GByteArray *none;       /* op = NONE */
static GByteArray *resp;       /* header + 8 payload bytes */
static unsigned int ret_width;

/* The one BENCH conversation. */
static bool live;
static uint64_t live_region, remaining, last_value, round_trips;

static uint64_t read_reg(int r)
{
    g_byte_array_set_size(regbuf, 0);
    if (!qemu_plugin_read_register(reg[r], regbuf)) {
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, regbuf->data, regbuf->len < 8 ? regbuf->len : 8);   /* little-endian guests */
    return v;
}

static void set_result(uint64_t v)
{
    g_byte_array_set_size(regbuf, ret_width);
    memset(regbuf->data, 0, ret_width);
    memcpy(regbuf->data, &v, ret_width < 8 ? ret_width : 8);
    qemu_plugin_write_register(reg[R_RET], regbuf);
}

static void finish(uint64_t region, uint64_t value)
{
    qemu_plugin_write_memory_vaddr(region, none);
    set_result(value);
    live = false;
}

static void bench_trap(uint64_t region)
{
    if (!live) {
        remaining = read_reg(R_A2);
        if (remaining == 0) {
            set_result(0);
            return;
        }
        live = true;
        live_region = region;
        qemu_plugin_write_memory_vaddr(region, cmd);
        return;
    }
    if (region != live_region) {
        return;   /* another conversation: the bench guest has none */
    }
    uint32_t code;
    uint64_t size;
    if (!qemu_plugin_read_memory_vaddr(region, resp, CONTRACT_HEADER_SIZE + 8)) {
        finish(region, CONTRACT_RET_PROTOCOL_ERROR);
        return;
    }
    memcpy(&code, resp->data, 4);
    memcpy(&size, resp->data + 16, 8);
    if (code != RESP_READ_OK || size != 8) {
        finish(region, CONTRACT_RET_PROTOCOL_ERROR);
        return;
    }
    memcpy(&last_value, resp->data + CONTRACT_HEADER_SIZE, 8);
    round_trips++;
    if (--remaining > 0) {
        qemu_plugin_write_memory_vaddr(region, cmd);
    } else {
        finish(region, last_value);
    }
}

static void trap(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    uint32_t num = (uint32_t)read_reg(R_NUM);
    switch (num) {
    case CONTRACT_HC_REGISTER_REGION:
    case CONTRACT_HC_ENABLE_INTERRUPT:
        break;   /* hard-coded: the contract's region size, no interrupts */
    case CONTRACT_HC_PORTAL_INTERRUPT:
        break;   /* nothing pending: the guest's op stays 0 */
    case CONTRACT_HC_EVENT:
        if (live || read_reg(R_A1) == CONTRACT_EV_BENCH) {
            bench_trap(read_reg(R_A3));
        }
        break;
    default:
        break;
    }
    if (arch.skip) {
        qemu_plugin_set_pc((uint64_t)(uintptr_t)userdata + arch.insn_len);
    }
}

static void tb_trans(struct qemu_plugin_tb *tb, void *userdata)
{
    (void)userdata;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        unsigned char bytes[4];
        if (qemu_plugin_insn_size(insn) != arch.insn_len ||
            qemu_plugin_insn_data(insn, bytes, arch.insn_len) != arch.insn_len ||
            memcmp(bytes, arch.insn, arch.insn_len) != 0) {
            continue;
        }
        qemu_plugin_register_vcpu_insn_exec_cb(
            insn, trap, arch.skip ? QEMU_PLUGIN_CB_RW_REGS_PC : QEMU_PLUGIN_CB_RW_REGS,
            (void *)(uintptr_t)qemu_plugin_insn_vaddr(insn));
    }
}

static void vcpu_init(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    (void)userdata;
    GArray *list = qemu_plugin_get_registers();
    guint size = g_array_get_element_size(list);
    for (guint i = 0; i < list->len; i++) {
        const qemu_plugin_reg_descriptor *d =
            (const qemu_plugin_reg_descriptor *)(list->data + (gsize)i * size);
        for (int r = 0; r < R_COUNT; r++) {
            if (reg[r] == NULL && strcmp(d->name, arch.regs[r]) == 0) {
                reg[r] = d->handle;
            }
        }
    }
    g_array_free(list, TRUE);
    g_byte_array_set_size(regbuf, 0);
    if (reg[R_RET] != NULL && qemu_plugin_read_register(reg[R_RET], regbuf)) {
        ret_width = regbuf->len;
    }
}

static void at_exit(void *userdata)
{
    (void)userdata;
    char line[96];
    g_snprintf(line, sizeof line, "floor: %" G_GUINT64_FORMAT " BENCH round trips\n", round_trips);
    qemu_plugin_outs(line);
}

QEMU_PLUGIN_API_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                               int argc, char **argv)
{
    (void)argc;
    (void)argv;
    static const struct {
        const char *target;
        const char *regs[R_COUNT];
        const char *insn;
        size_t insn_len;
        bool skip;
        uint64_t page;
    } table[] = {
        {"i386", {"eax", "ebx", "ecx", "edx", "eax"}, "\xe7\x88", 2, false, CONTRACT_PAGE_ADDR_I386},
        {"x86_64", {"rax", "rdi", "rsi", "rdx", "rax"}, "\xe7\x88", 2, false, CONTRACT_PAGE_ADDR_X86_64},
        {"riscv64", {"a7", "a0", "a1", "a2", "a0"}, "\x13\x40\x00\x00", 4, false, CONTRACT_PAGE_ADDR_RISCV64},
        {"aarch64", {"x8", "x0", "x1", "x2", "x0"}, "\x1f\x50\x00\xd5", 4, true, CONTRACT_PAGE_ADDR_AARCH64},
        {"arm", {"r7", "r0", "r1", "r2", "r0"}, "\x10\x07\x00\xee", 4, true, CONTRACT_PAGE_ADDR_ARM},
    };
    size_t i;
    for (i = 0; i < G_N_ELEMENTS(table); i++) {
        if (strcmp(info->target_name, table[i].target) == 0) {
            break;
        }
    }
    if (i == G_N_ELEMENTS(table)) {
        qemu_plugin_outs("floor: unsupported target\n");
        return 1;
    }
    memcpy(arch.regs, table[i].regs, sizeof arch.regs);
    memcpy(arch.insn, table[i].insn, table[i].insn_len);
    arch.insn_len = table[i].insn_len;
    arch.skip = table[i].skip;
    arch.bench_addr = CONTRACT_BENCH_ADDR(table[i].page);

    regbuf = g_byte_array_sized_new(64);
    resp = g_byte_array_sized_new(64);
    none = g_byte_array_sized_new(4);
    cmd = g_byte_array_sized_new(CONTRACT_HEADER_SIZE);
    static const uint32_t zero = 0;
    g_byte_array_append(none, (const guint8 *)&zero, 4);
    uint8_t header[CONTRACT_HEADER_SIZE];
    uint32_t op = OP_READ, pid = 0xffffffffu;
    uint64_t addr = arch.bench_addr, size = 8;
    memcpy(header, &op, 4);
    memcpy(header + 4, &pid, 4);
    memcpy(header + 8, &addr, 8);
    memcpy(header + 16, &size, 8);
    g_byte_array_append(cmd, header, sizeof header);

    qemu_plugin_register_vcpu_init_cb(id, vcpu_init, NULL);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans, NULL);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
