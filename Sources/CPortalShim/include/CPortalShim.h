/*
 * The C side of libportal.so, as Swift sees it: the emulator ABIs and the
 * C API (declared under include/portal/ at the top of the repository), and
 * the few things that have to be written in C.
 */
#ifndef CPORTALSHIM_H
#define CPORTALSHIM_H

#include "../../../include/portal/panda.h"
#include "../../../include/portal/portal.h"
#include "../../../include/portal/operations.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PORTAL_SHIM __attribute__((visibility("hidden")))

/* ---- PANDA-style emulators (Sources/CPortalShim/shim.c) ----
 * Swift calls the emulator through these, never directly: the emulator's
 * functions are weak references here, absent (NULL) under any other emulator. */

/* Whether the process that loaded us exports the emulator side of panda.h. */
PORTAL_SHIM bool portal_shim_has_panda_host(void);
PORTAL_SHIM int portal_panda_plugin_args(void *self, const char *const **argv);
PORTAL_SHIM panda_guest_info portal_panda_guest_info(void);
PORTAL_SHIM void portal_panda_register(void *self, panda_hypercall_cb callback);
PORTAL_SHIM void portal_panda_unregister(void *self);
PORTAL_SHIM int portal_panda_cpu_index(void *cpu);
/* Guest memory of `cpu` (a CPUState *), shaped as the engine's GuestMemory functions. */
PORTAL_SHIM bool portal_panda_read(void *cpu, uint64_t address, void *buffer, size_t length);
PORTAL_SHIM bool portal_panda_write(void *cpu, uint64_t address, const void *buffer, size_t length);

/* ---- operations.h ---- */

#define PORTAL_SHIM_ERROR_SIZE 512
/* This thread's buffer for a decoder's error message (PORTAL_SHIM_ERROR_SIZE
 * bytes): conversation->error points here until the next decoder call on
 * the thread, long enough for the engine to copy it when the step returns. */
PORTAL_SHIM char *portal_shim_error_buffer(void);

/* ---- QEMU (Sources/CPortalShim/qemu.c) ---- */


/* Whether the process is a QEMU that exports the plugin API (weak references). */
PORTAL_SHIM bool portal_shim_has_qemu_host(void);

/* The encodings of the hypercall instruction (PROTOCOL.md §1). */
typedef enum portal_qemu_arch {
    PORTAL_ARCH_X86 = 0,
    PORTAL_ARCH_AARCH64,
    PORTAL_ARCH_ARM,
    PORTAL_ARCH_RISCV,
    PORTAL_ARCH_PPC_BE,
    PORTAL_ARCH_LOONGARCH,
} portal_qemu_arch;

/* Swift's side of the QEMU callbacks. */
typedef struct portal_qemu_callbacks {
    void (*vcpu_init)(unsigned int vcpu_index);
    /* Serves the hypercall instruction the vCPU is about to execute. */
    void (*hypercall)(unsigned int vcpu_index);
    void (*at_exit)(void);
    /* The vCPU runs again after waiting idle (a halted guest CPU woke up):
     * the one moment an idle guest gives the plugin its memory. */
    void (*vcpu_resumed)(unsigned int vcpu_index);
} portal_qemu_callbacks;

/* The fields of the qemu_info_t QEMU passes to qemu_plugin_install. */
typedef struct portal_qemu_info {
    const char *target_name;
    bool system_emulation;
    int smp_vcpus;
    int max_vcpus;
} portal_qemu_info;

PORTAL_SHIM portal_qemu_info portal_qemu_read_info(const void *qemu_info);

/* Whether Capstone could be loaded to confirm the hypercall instructions. */
PORTAL_SHIM bool portal_qemu_capstone_available(void);

/* Registers the translation, vCPU-init, vCPU-resume and exit callbacks with QEMU. */
PORTAL_SHIM void portal_qemu_start(uint64_t plugin_id, portal_qemu_arch arch, portal_qemu_callbacks callbacks);

/* From a vCPU callback: the register called `name` (gdb name), or NULL. */
PORTAL_SHIM void *portal_qemu_find_register(const char *name);

/* A vCPU's buffer for QEMU's accessors (a GByteArray, never freed: QEMU
 * has no vCPU teardown a plugin could rely on, and there is one per vCPU). */
PORTAL_SHIM void *portal_qemu_new_buffer(void);

/* Register and guest memory access from a vCPU callback, through that vCPU's
 * buffer. A register is read as a number (at most 8 bytes, in the target's
 * byte order) with its full width; it is written back with exactly that
 * width, which QEMU requires. The memory functions have the shape of the
 * engine's GuestMemory functions, with the buffer as their context. */
PORTAL_SHIM bool portal_qemu_read_register(void *buffer, void *reg, bool big_endian, uint64_t *value, size_t *width);
PORTAL_SHIM bool portal_qemu_write_register(void *buffer, void *reg, bool big_endian, uint64_t value, size_t width);
PORTAL_SHIM bool portal_qemu_read_memory(void *buffer, uint64_t address, void *destination, size_t length);
PORTAL_SHIM bool portal_qemu_write_memory(void *buffer, uint64_t address, const void *source, size_t length);

/* ---- Analysis modules (Sources/CPortalShim/modules.c) ---- */

/**
 * struct portal_module - an analysis module opened by portal_module_open()
 * @library: the dlopen handle (never closed: see modules.c)
 * @analysis_init: the module's portal_analysis_init
 * @analysis_exit: the module's portal_analysis_exit, or NULL when it has none
 */
typedef struct portal_module {
    void *library;
    int (*analysis_init)(const char *args);
    void (*analysis_exit)(void);
} portal_module;

/**
 * portal_module_open() - open an analysis module and check it may be called
 * @path: the module's file, as given to load=
 * @module: filled in on success
 * @reason: on failure, why the module is refused (one line, NUL-terminated)
 * @reason_size: bytes at @reason
 *
 * Opens @path with dlopen(RTLD_NOW | RTLD_LOCAL), then checks that it exports
 * portal_analysis_init, that its portal_analysis_api_version equals
 * PORTAL_API_VERSION, and that the portal_attach it reaches (itself or
 * through its dependencies) is this library's own: a module bound to another
 * copy of libportal would talk to an engine that was never initialised.
 * Called from the thread loading the plugin; dlerror's state is per thread.
 *
 * Return: true when @module may be initialised; false with @reason set.
 */
PORTAL_SHIM bool portal_module_open(const char *path, portal_module *module, char *reason, size_t reason_size);

#endif
