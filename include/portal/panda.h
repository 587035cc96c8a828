/*
 * portal/panda.h - the PANDA-style emulator ABI of libportal.so.
 *
 * This is the contract between an emulator (in this repository: the C test
 * harness under Tests/harness) and libportal.so when the emulator hosts the
 * plugin the way PANDA hosts its plugins:
 *
 *   1. The emulator exports the functions of the "emulator side" below from
 *      its executable (link it with -rdynamic), then loads libportal.so with
 *      dlopen(RTLD_NOW | RTLD_GLOBAL).
 *   2. It calls init_plugin(self), where `self` is any non-NULL handle the
 *      emulator uses to find the plugin's arguments again. init_plugin reads
 *      its arguments with panda_get_plugin_args(self, ...), validates them and
 *      registers its hypercall callback. It returns false (and logs why) when
 *      an argument is unknown or malformed; the emulator then unloads it.
 *   3. For every hypercall instruction the guest executes, the emulator reads
 *      the number and argument registers into a panda_hypercall and calls the
 *      callback on the thread of the vCPU that trapped. The callback may read
 *      and write guest memory of that vCPU. When it returns true with
 *      set_return true, the emulator writes return_value into the return
 *      register (full register width); when it returns false the hypercall was
 *      not the plugin's and the emulator treats it as it otherwise would.
 *   4. uninit_plugin(self) ends every live conversation (each one is logged)
 *      and releases everything; init_plugin may be called again afterwards.
 *      The emulator calls it with no hypercall callback in flight (vCPUs
 *      stopped), as PANDA does when it unloads a plugin. uninit_plugin with
 *      a `self` other than the one the current load was made with (or NULL)
 *      changes nothing and logs an error; so does init_plugin while a load
 *      is current (it returns false and keeps nothing of the refused load).
 *
 * Unlike PANDA, addresses are always 64-bit here (PANDA uses target_ulong),
 * and the guest's word width, byte order and vCPU count are asked for once,
 * at init, with panda_get_guest_info.
 *
 * Callbacks may run on several vCPU threads at once; every emulator-side
 * function must be callable from any vCPU thread for that vCPU's CPUState.
 * The plugin touches guest memory only from inside the hypercall callback,
 * with that callback's CPUState (work queued from another thread waits for
 * the next trap).
 *
 * A refused argument is reported in the log_file= the arguments name when
 * that file can be opened, else on standard error. log_file= must be a
 * regular file (created if missing) or a character device, and ops= a
 * regular file of at most 1 MiB; both are opened without blocking, so a
 * FIFO is refused with a line saying it is one instead of stopping
 * init_plugin. When writing to the log file fails (log_file=/dev/full),
 * standard error says so once and later lines are lost.
 */
#ifndef PORTAL_PANDA_H
#define PORTAL_PANDA_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The emulator's vCPU. Opaque to the plugin. */
typedef struct CPUState CPUState;

/* What the plugin must know about the guest before it can speak to it. */
typedef struct panda_guest_info {
    uint32_t word_bits;   /* 32 or 64: register and pointer width */
    uint32_t big_endian;  /* 1 for a big-endian guest, 0 for little-endian */
    uint32_t vcpu_count;  /* vCPUs are numbered 0 ..< vcpu_count */
} panda_guest_info;

/* One trapped hypercall. The emulator fills the inputs; the plugin the outputs. */
typedef struct panda_hypercall {
    uint64_t number;        /* in: number register (full width) */
    uint64_t args[4];       /* in: arg1 .. arg4 registers (full width) */
    uint64_t return_value;  /* out: the value for the return register */
    bool set_return;        /* out: write return_value into the return register */
} panda_hypercall;

typedef bool (*panda_hypercall_cb)(CPUState *cpu, panda_hypercall *call);

/* ---- Plugin side: exported by libportal.so ---- */

bool init_plugin(void *self);
void uninit_plugin(void *self);

/* ---- Emulator side: exported by the emulator executable ---- */

/* The `key=value` arguments given to the plugin `self`; returns their count
 * and points *argv at them. The strings stay valid until uninit_plugin. */
int panda_get_plugin_args(void *self, const char *const **argv);

void panda_get_guest_info(panda_guest_info *info);

/* Every hypercall of every vCPU goes to `callback` until it is unregistered. */
void panda_register_hypercall_callback(void *self, panda_hypercall_cb callback);
void panda_unregister_hypercall_callback(void *self);

/* The index of `cpu`, in 0 ..< vcpu_count. */
int panda_cpu_index(CPUState *cpu);

/* Guest virtual memory as `cpu` sees it. Both return 0 when all `len` bytes
 * were transferred and -1 when any byte is not mapped (the bytes before the
 * fault may or may not have been transferred). */
int panda_virtual_memory_read(CPUState *cpu, uint64_t addr, uint8_t *buf, int len);
int panda_virtual_memory_write(CPUState *cpu, uint64_t addr, const uint8_t *buf, int len);

#ifdef __cplusplus
}
#endif

#endif /* PORTAL_PANDA_H */
