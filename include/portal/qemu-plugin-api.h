/*
 * portal/qemu-plugin-api.h - the part of QEMU's TCG plugin API that the
 * portal uses, declared by this project.
 *
 * Written from the API documentation of QEMU 11.1 (plugin API version 7,
 * the only version QEMU 11.1.3 loads). QEMU ships no header in Debian, so
 * these are our own declarations of the documented signatures, enum values
 * and structure layouts. Everything marked "checked" was also compared with
 * the exported functions of the QEMU 11.1.3 binaries in .cache/qemu (their
 * machine code shows which arguments they use and which fields they fill),
 * because a wrong value here corrupts the guest instead of failing loudly:
 *
 *  - qemu_info_t: target_name at 0, version.min at 8, version.cur at 12,
 *    system_emulation at 16, system.smp_vcpus at 20, system.max_vcpus at 24
 *    (32 bytes on an LP64 host). Checked.
 *  - enum qemu_plugin_cb_flags: NO_REGS 0, R_REGS 1, RW_REGS 2, RW_REGS_PC 3.
 *    Checked: qemu_plugin_write_register accepts only 2 and 3,
 *    qemu_plugin_set_pc only 3, qemu_plugin_read_register anything but 0.
 *  - qemu_plugin_reg_descriptor: handle, name, feature, is_readonly; 32
 *    bytes on an LP64 host. Checked: qemu_plugin_get_registers builds a GArray
 *    of 32-byte elements and sets the flag for the program counter only
 *    ("pc", "eip", "rip", ...). Step through the array with
 *    g_array_get_element_size() all the same. Writing a register whose
 *    descriptor says is_readonly aborts QEMU (an assertion): use
 *    qemu_plugin_set_pc for the PC.
 *  - Version 7: every callback type ends with `void *userdata` and every
 *    registration function takes that pointer as its last argument. The
 *    vCPU init/exit and instruction callbacks are
 *    `void (*)(unsigned int vcpu_index, void *userdata)`, the translation
 *    callback `void (*)(struct qemu_plugin_tb *, void *userdata)`, the
 *    at-exit callback `void (*)(void *userdata)`. Checked for
 *    register_vcpu_init_cb, _exit_cb, _tb_trans_cb and register_atexit_cb.
 *  - Register buffers: read_register fills a GByteArray with the register in
 *    target byte order at its full width; write_register needs a buffer of
 *    (at least) the register's full width, e.g. 8 bytes for rax even in a
 *    32-bit guest. Both return true on success (bool since version 6).
 *
 * The functions are plain declarations. A shim that must also load outside
 * QEMU can redeclare them with __attribute__((weak)) after including this
 * header; nothing here prevents that.
 */
#ifndef PORTAL_QEMU_PLUGIN_API_H
#define PORTAL_QEMU_PLUGIN_API_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API version this declaration describes; export
 * `int qemu_plugin_version = QEMU_PLUGIN_API_VERSION;` from the plugin. */
#define QEMU_PLUGIN_API_VERSION 7

#define QEMU_PLUGIN_API_EXPORT __attribute__((visibility("default")))

/* The plugin's handle, passed to qemu_plugin_install. */
typedef uint64_t qemu_plugin_id_t;

/* What QEMU tells the plugin at install time (valid only during the call). */
typedef struct qemu_info_t {
    const char *target_name;      /* "i386", "x86_64", "riscv64", "aarch64", "arm", ... */
    struct {
        int min;                  /* oldest API version QEMU accepts */
        int cur;                  /* newest API version QEMU accepts */
    } version;
    bool system_emulation;        /* true for qemu-system-* */
    union {
        struct {
            int smp_vcpus;        /* vCPUs at start */
            int max_vcpus;        /* vCPUs possible */
        } system;
    };
} qemu_info_t;

/* Opaque handles; valid only inside the callback that received them. */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_register;

/* What a callback may do with the vCPU's registers. */
enum qemu_plugin_cb_flags {
    QEMU_PLUGIN_CB_NO_REGS = 0,     /* no register access */
    QEMU_PLUGIN_CB_R_REGS = 1,      /* may read registers */
    QEMU_PLUGIN_CB_RW_REGS = 2,     /* may read and write registers */
    QEMU_PLUGIN_CB_RW_REGS_PC = 3,  /* may also call qemu_plugin_set_pc */
};

/* One entry of the GArray that qemu_plugin_get_registers returns. */
typedef struct {
    struct qemu_plugin_register *handle;  /* for read/write_register */
    const char *name;                     /* gdb register name: "eax", "x8", "a7" ... */
    const char *feature;                  /* gdb feature, e.g. "org.gnu.gdb.i386.core"; may be NULL */
    bool is_readonly;                     /* set for the program counter */
} qemu_plugin_reg_descriptor;

/* Callback types (version 7: trailing userdata everywhere). */
typedef void (*qemu_plugin_simple_cb_t)(qemu_plugin_id_t id);
typedef void (*qemu_plugin_udata_cb_t)(void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(struct qemu_plugin_tb *tb, void *userdata);

/* Exported by the plugin: the API version it was written for, and its entry
 * point (0 = loaded, anything else refuses the load). */
extern QEMU_PLUGIN_API_EXPORT int qemu_plugin_version;
QEMU_PLUGIN_API_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
                                               const qemu_info_t *info,
                                               int argc, char **argv);

/* --- lifecycle ------------------------------------------------------------ */

/* Remove the plugin asynchronously; cb runs once it is gone. Not from
 * qemu_plugin_install. */
void qemu_plugin_uninstall(qemu_plugin_id_t id, qemu_plugin_simple_cb_t cb);

/* cb(vcpu_index, userdata) when a vCPU is initialised / exits. */
void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t id,
                                       qemu_plugin_vcpu_udata_cb_t cb,
                                       void *userdata);
void qemu_plugin_register_vcpu_exit_cb(qemu_plugin_id_t id,
                                       qemu_plugin_vcpu_udata_cb_t cb,
                                       void *userdata);

/*
 * cb(vcpu_index, userdata) on the vCPU's own thread when it stops to wait
 * (a halted guest CPU: idle) and when it runs again (resume). Guest memory
 * may be read and written from the resume callback (checked with
 * qemu_plugin_write_memory_vaddr against the Linux guest). Same shape as the
 * init callback (checked in QEMU 11.1's registration code).
 */
void qemu_plugin_register_vcpu_idle_cb(qemu_plugin_id_t id,
                                       qemu_plugin_vcpu_udata_cb_t cb,
                                       void *userdata);
void qemu_plugin_register_vcpu_resume_cb(qemu_plugin_id_t id,
                                         qemu_plugin_vcpu_udata_cb_t cb,
                                         void *userdata);

/* cb(userdata) once when emulation ends. */
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
                                    qemu_plugin_udata_cb_t cb,
                                    void *userdata);

/* --- translation ---------------------------------------------------------- */

/* cb(tb, userdata) each time a block is translated. */
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                           qemu_plugin_vcpu_tb_trans_cb_t cb,
                                           void *userdata);

size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb,
                                                 size_t idx);

/* Copies min(len, instruction size) bytes of the instruction into dest and
 * returns that count (0 on failure). */
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *insn,
                             void *dest, size_t len);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

/**
 * qemu_plugin_insn_disas() - QEMU's own disassembly of an instruction
 * @insn: an instruction of the block being translated
 *
 * QEMU decodes in the mode the vCPU translates the block in (on arm: A32 or
 * Thumb), which the bytes alone do not say.
 *
 * Return: "mnemonic operands", allocated with GLib (free with g_free), or
 * NULL.
 */
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);

/* cb(vcpu_index, userdata) each time the instruction is about to execute
 * (the callback runs before it). flags says what the callback may do. */
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags,
                                            void *userdata);

/* --- registers ------------------------------------------------------------ */

/* The current vCPU's registers: a GArray of qemu_plugin_reg_descriptor that
 * the caller frees with g_array_free(array, TRUE) (not the strings). Call it
 * from a vCPU context, e.g. the vCPU init callback. */
GArray *qemu_plugin_get_registers(void);

/* Reads the register into buf (resized to the register's width, target
 * byte order). Needs a callback registered with at least R_REGS. */
bool qemu_plugin_read_register(struct qemu_plugin_register *handle,
                               GByteArray *buf);

/* Writes the register from buf, which must hold its full width. Needs a
 * callback registered with RW_REGS or RW_REGS_PC; never a read-only one. */
bool qemu_plugin_write_register(struct qemu_plugin_register *handle,
                                GByteArray *buf);

/* Resumes the current vCPU at vaddr. Only from a callback registered with
 * RW_REGS_PC. It does not return: it unwinds with longjmp. */
void qemu_plugin_set_pc(uint64_t vaddr);

/* --- guest memory --------------------------------------------------------- */

/* Reads len (> 0) bytes at guest virtual address addr into data, resizing
 * data to len. From a vCPU callback. */
bool qemu_plugin_read_memory_vaddr(uint64_t addr, GByteArray *data, size_t len);

/* Writes all of data at guest virtual address addr. From a vCPU callback. */
bool qemu_plugin_write_memory_vaddr(uint64_t addr, GByteArray *data);

/* --- output --------------------------------------------------------------- */

/* A line to QEMU's log; shown only with `-d plugin` (or -D FILE -d plugin). */
void qemu_plugin_outs(const char *string);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PORTAL_QEMU_PLUGIN_API_H */
