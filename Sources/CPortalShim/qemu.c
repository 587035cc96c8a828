/*
 * The QEMU TCG plugin side that has to be C (include/portal/qemu-plugin-api.h):
 *
 *  - the exported data symbol `qemu_plugin_version`;
 *  - the instruction callback, because qemu_plugin_set_pc unwinds with
 *    longjmp and must never cross Swift frames: Swift serves the hypercall
 *    and returns, then this file moves the PC past the trapping instruction;
 *  - finding the hypercall instruction at translation time (exact bytes,
 *    confirmed by Capstone for the architectures Capstone 4 decodes);
 *    Capstone is opened with dlopen by the soname of the headers we were
 *    built with, because QEMU itself links another Capstone major version
 *    whose symbols would otherwise capture our calls;
 *  - the GLib buffers QEMU's accessors take, one per thread, allocated once,
 *    so no round trip allocates.
 *
 * qemu_plugin_install itself is Swift (Sources/Portal/QemuFrontend.swift).
 */
#include "CPortalShim.h"

#include "../../../include/portal/qemu-plugin-api.h"

#include <capstone/capstone.h>
#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

QEMU_PLUGIN_API_EXPORT int qemu_plugin_version = QEMU_PLUGIN_API_VERSION;

/* Present only inside QEMU: weak, so the library loads under any emulator. */
#pragma weak qemu_plugin_register_vcpu_init_cb
#pragma weak qemu_plugin_register_vcpu_tb_trans_cb
#pragma weak qemu_plugin_register_atexit_cb
#pragma weak qemu_plugin_tb_n_insns
#pragma weak qemu_plugin_tb_get_insn
#pragma weak qemu_plugin_insn_data
#pragma weak qemu_plugin_insn_size
#pragma weak qemu_plugin_insn_vaddr
#pragma weak qemu_plugin_insn_disas
#pragma weak qemu_plugin_register_vcpu_insn_exec_cb
#pragma weak qemu_plugin_get_registers
#pragma weak qemu_plugin_read_register
#pragma weak qemu_plugin_write_register
#pragma weak qemu_plugin_set_pc
#pragma weak qemu_plugin_read_memory_vaddr
#pragma weak qemu_plugin_write_memory_vaddr
#pragma weak qemu_plugin_register_vcpu_resume_cb

/*
 * What decides that an instruction is the hypercall: all of its bytes, as
 * QEMU fetched them (qemu_plugin_insn_data), equal to one encoding below,
 * and its size (qemu_plugin_insn_size) equal to that encoding's. Leading
 * bytes are not enough: x86 "out 0x89, eax" (e7 89) or an aarch64 msr of
 * another register (00 50 00 d5) differ in a later byte and are not taken.
 * Then, where Capstone 4 decodes the architecture, it must agree on the
 * mnemonic and the size in the encoding's mode.
 *
 * On arm the bytes do not say the mode. The A32 word (10 07 00 ee) cannot
 * be a 4-byte Thumb instruction (0x0710 is a 16-bit one, so QEMU reports
 * size 2), but the Thumb-2 pair (00 ee 10 07) is also a valid A32 word,
 * "ldreq lr, [r0, -r0, lsl #28]". So on arm QEMU's own disassembly, made in
 * the mode the vCPU translates in, must name "mcr" as well; the arm test
 * guest runs that A32 load and checks it loads. A QEMU that gives no
 * disassembly (NULL or empty) leaves the bytes and Capstone to decide, and
 * then the limit stands: that A32 load would be taken for the hypercall.
 */
struct hypercall_encoding {
    unsigned char bytes[4];
    size_t size;
    cs_arch capstone_arch;  /* CS_ARCH_ALL: Capstone 4 cannot decode it */
    cs_mode capstone_mode;
    const char *mnemonic;
};

/* PROTOCOL.md §1; a target has at most two encodings (arm: A32 and Thumb-2). */
static const struct hypercall_encoding encodings[][2] = {
    /* out 0x88, eax */
    [PORTAL_ARCH_X86] = {{{0xe7, 0x88}, 2, CS_ARCH_X86, CS_MODE_32, "out"}},
    /* msr S0_0_c5_c0_0, xzr (0xd500501f) */
    [PORTAL_ARCH_AARCH64] = {{{0x1f, 0x50, 0x00, 0xd5}, 4, CS_ARCH_ARM64, CS_MODE_ARM, "msr"}},
    /* mcr p7, 0, r0, c0, c0, 0: A32 word 0xee000710; Thumb-2 halfwords 0xee00 0x0710 */
    [PORTAL_ARCH_ARM] = {{{0x10, 0x07, 0x00, 0xee}, 4, CS_ARCH_ARM, CS_MODE_ARM, "mcr"},
                         {{0x00, 0xee, 0x10, 0x07}, 4, CS_ARCH_ARM, CS_MODE_THUMB, "mcr"}},
    /* xori x0, x0, 0 (0x00004013) */
    [PORTAL_ARCH_RISCV] = {{{0x13, 0x40, 0x00, 0x00}, 4, CS_ARCH_ALL, 0, NULL}},
    /* xori r10, r10, 0 (0x694a0000, big-endian) */
    [PORTAL_ARCH_PPC_BE] = {{{0x69, 0x4a, 0x00, 0x00}, 4, CS_ARCH_PPC, CS_MODE_BIG_ENDIAN, "xori"}},
    /* cpucfg $r0, $r0 (0x00006c00) */
    [PORTAL_ARCH_LOONGARCH] = {{{0x00, 0x6c, 0x00, 0x00}, 4, CS_ARCH_ALL, 0, NULL}},
};

static portal_qemu_arch target_arch;
static portal_qemu_callbacks callbacks;

#define STRINGIFY(x) #x
#define SONAME(major) "libcapstone.so." STRINGIFY(major)

static struct {
    cs_err (*open)(cs_arch arch, cs_mode mode, csh *handle);
    size_t (*disasm)(csh handle, const uint8_t *code, size_t size, uint64_t address, size_t count,
                     cs_insn **insn);
    void (*free)(cs_insn *insn, size_t count);
} capstone_api;
static pthread_once_t capstone_loaded = PTHREAD_ONCE_INIT;

static void load_capstone(void)
{
    void *library = dlopen(SONAME(CS_API_MAJOR), RTLD_NOW | RTLD_LOCAL);
    if (!library)
        return;
    capstone_api.disasm = (size_t (*)(csh, const uint8_t *, size_t, uint64_t, size_t, cs_insn **))dlsym(library, "cs_disasm");
    capstone_api.free = (void (*)(cs_insn *, size_t))dlsym(library, "cs_free");
    if (capstone_api.disasm && capstone_api.free)
        capstone_api.open = (cs_err (*)(cs_arch, cs_mode, csh *))dlsym(library, "cs_open");
}

bool portal_qemu_capstone_available(void)
{
    pthread_once(&capstone_loaded, load_capstone);
    return capstone_api.open != NULL;
}

/* Capstone handles are not thread-safe, and blocks are translated on every
 * vCPU thread: one handle per thread and encoding. */
static __thread csh capstone[2];

static bool capstone_confirms(const struct hypercall_encoding *encoding, int slot,
                              const unsigned char *bytes)
{
    /* Without Capstone (or for riscv and loongarch, which Capstone 4 does
     * not know) the exact bytes decide. */
    if (encoding->capstone_arch == CS_ARCH_ALL || !portal_qemu_capstone_available())
        return true;
    if (!capstone[slot] &&
        capstone_api.open(encoding->capstone_arch, encoding->capstone_mode, &capstone[slot]) != CS_ERR_OK)
        return true;
    cs_insn *insn;
    size_t count = capstone_api.disasm(capstone[slot], bytes, encoding->size, 0, 1, &insn);
    bool confirmed = count == 1 && insn[0].size == encoding->size &&
                     strcmp(insn[0].mnemonic, encoding->mnemonic) == 0;
    if (count)
        capstone_api.free(insn, count);
    return confirmed;
}

static void hypercall_executed(unsigned int vcpu_index, void *userdata)
{
    callbacks.hypercall(vcpu_index);
    /* arm and aarch64: the instruction is UNDEFINED on the CPU; resume after
     * it. Every hypercall instruction is skipped, served or not. */
    if (target_arch == PORTAL_ARCH_ARM || target_arch == PORTAL_ARCH_AARCH64)
        qemu_plugin_set_pc((uint64_t)(uintptr_t)userdata + 4);
}

/* Whether QEMU's disassembly of insn, when it gives one, names mnemonic:
 * its first word, compared without case. */
static bool qemu_agrees(const struct qemu_plugin_insn *insn, const char *mnemonic)
{
    if (!qemu_plugin_insn_disas)
        return true;
    char *text = qemu_plugin_insn_disas(insn);
    if (!text)
        return true;
    const char *start = text;
    while (isspace((unsigned char)*start))
        start++;
    size_t length = strlen(mnemonic);
    bool agrees = *start == '\0' ||
                  (strncasecmp(start, mnemonic, length) == 0 &&
                   (start[length] == '\0' || isspace((unsigned char)start[length])));
    g_free(text);
    return agrees;
}

static void block_translated(struct qemu_plugin_tb *tb, void *userdata)
{
    (void)userdata;
    bool skips = target_arch == PORTAL_ARCH_ARM || target_arch == PORTAL_ARCH_AARCH64;
    size_t count = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < count; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        unsigned char bytes[4];
        size_t size = qemu_plugin_insn_size(insn);
        if (size > sizeof bytes || qemu_plugin_insn_data(insn, bytes, size) != size)
            continue;
        for (int slot = 0; slot < 2; slot++) {
            const struct hypercall_encoding *encoding = &encodings[target_arch][slot];
            if (encoding->size == 0 || encoding->size != size || memcmp(bytes, encoding->bytes, size) != 0 ||
                !capstone_confirms(encoding, slot, bytes))
                continue;
            /* arm: A32 or Thumb, as QEMU decodes this block (see encodings) */
            if (target_arch == PORTAL_ARCH_ARM && !qemu_agrees(insn, encoding->mnemonic))
                continue;
            qemu_plugin_register_vcpu_insn_exec_cb(
                insn, hypercall_executed, skips ? QEMU_PLUGIN_CB_RW_REGS_PC : QEMU_PLUGIN_CB_RW_REGS,
                (void *)(uintptr_t)qemu_plugin_insn_vaddr(insn));
            break;
        }
    }
}

static void vcpu_initialised(unsigned int vcpu_index, void *userdata)
{
    (void)userdata;
    callbacks.vcpu_init(vcpu_index);
}

static void vcpu_resumed(unsigned int vcpu_index, void *userdata)
{
    (void)userdata;
    callbacks.vcpu_resumed(vcpu_index);
}

static void emulation_ended(void *userdata)
{
    (void)userdata;
    callbacks.at_exit();
}

bool portal_shim_has_qemu_host(void)
{
    return qemu_plugin_register_vcpu_init_cb && qemu_plugin_register_vcpu_tb_trans_cb &&
           qemu_plugin_register_atexit_cb && qemu_plugin_register_vcpu_insn_exec_cb &&
           qemu_plugin_get_registers && qemu_plugin_read_register && qemu_plugin_write_register &&
           qemu_plugin_set_pc && qemu_plugin_read_memory_vaddr && qemu_plugin_write_memory_vaddr;
}

portal_qemu_info portal_qemu_read_info(const void *qemu_info)
{
    const qemu_info_t *info = qemu_info;
    return (portal_qemu_info){info->target_name, info->system_emulation, info->system.smp_vcpus,
                              info->system.max_vcpus};
}

void portal_qemu_start(uint64_t plugin_id, portal_qemu_arch arch, portal_qemu_callbacks registered)
{
    target_arch = arch;
    callbacks = registered;
    qemu_plugin_register_vcpu_init_cb(plugin_id, vcpu_initialised, NULL);
    qemu_plugin_register_vcpu_tb_trans_cb(plugin_id, block_translated, NULL);
    qemu_plugin_register_atexit_cb(plugin_id, emulation_ended, NULL);
    /* Optional: without it, interrupt work waits for the guest's next trap. */
    if (qemu_plugin_register_vcpu_resume_cb)
        qemu_plugin_register_vcpu_resume_cb(plugin_id, vcpu_resumed, NULL);
}

void *portal_qemu_find_register(const char *name)
{
    GArray *registers = qemu_plugin_get_registers();
    if (!registers)
        return NULL;
    void *found = NULL;
    guint element = g_array_get_element_size(registers);
    for (guint i = 0; i < registers->len && !found; i++) {
        const qemu_plugin_reg_descriptor *descriptor =
            (const qemu_plugin_reg_descriptor *)(registers->data + (size_t)i * element);
        if (descriptor->name && strcmp(descriptor->name, name) == 0)
            found = descriptor->handle;
    }
    g_array_free(registers, TRUE);
    return found;
}

/* Each vCPU has its own GLib buffer for QEMU's accessors (they take and
 * fill a GByteArray): created at vCPU init, grown at most once or twice, so
 * no round trip allocates. It is passed in rather than kept in a thread
 * local, which costs a __tls_get_addr call per access in a dlopen'ed library. */
void *portal_qemu_new_buffer(void)
{
    return g_byte_array_sized_new(4096);
}

static GByteArray *sized(void *buffer, size_t size)
{
    GByteArray *bytes = buffer;
    if (size <= 4096)
        bytes->len = (guint)size;  /* within what was allocated: no call */
    else
        g_byte_array_set_size(bytes, (guint)size);
    return bytes;
}

bool portal_qemu_read_register(void *buffer, void *reg, bool big_endian, uint64_t *value, size_t *width)
{
    GByteArray *bytes = sized(buffer, 0);
    if (!qemu_plugin_read_register(reg, bytes) || bytes->len == 0 || bytes->len > 8)
        return false;
    uint64_t number = 0;
    if (!big_endian && bytes->len == 8) {
        memcpy(&number, bytes->data, 8);  /* the common case, one load: the host is little-endian */
    } else {
        for (guint i = 0; i < bytes->len; i++)
            number |= (uint64_t)bytes->data[i] << 8 * (big_endian ? bytes->len - 1 - i : i);
    }
    *value = number;
    *width = bytes->len;
    return true;
}

bool portal_qemu_write_register(void *buffer, void *reg, bool big_endian, uint64_t value, size_t width)
{
    GByteArray *bytes = sized(buffer, width);
    for (size_t i = 0; i < width; i++)
        bytes->data[big_endian ? width - 1 - i : i] = (uint8_t)(value >> (8 * i));
    return qemu_plugin_write_register(reg, bytes);
}

bool portal_qemu_read_memory(void *buffer, uint64_t address, void *destination, size_t length)
{
    GByteArray *bytes = sized(buffer, length);
    if (!qemu_plugin_read_memory_vaddr(address, bytes, length) || bytes->len != length)
        return false;
    memcpy(destination, bytes->data, length);
    return true;
}

bool portal_qemu_write_memory(void *buffer, uint64_t address, const void *source, size_t length)
{
    GByteArray *bytes = sized(buffer, length);
    memcpy(bytes->data, source, length);
    return qemu_plugin_write_memory_vaddr(address, bytes);
}
