/*
 * emulator.h - the mock emulator of the portal test harness.
 *
 * It is the host side of include/portal/panda.h: the executable exports the
 * emulator-side functions (it is linked with -rdynamic), loads the BUILT
 * libportal.so with dlopen, hands it its `key=value` arguments through
 * init_plugin(self), and delivers the guest's hypercalls to the callback the
 * plugin registered. The C API of include/portal/portal.h is resolved with
 * dlsym into `api`, so scenarios drive the real library.
 */
#ifndef HARNESS_EMULATOR_H
#define HARNESS_EMULATOR_H

#include <stdbool.h>
#include <stddef.h>

#include "portal/panda.h"
#include "portal/operations.h"
#include "portal/portal.h"
#include "guest.h"

/* The C API of portal.h, as found in the loaded library (NULL if absent). */
typedef struct portal_api {
    int (*attach)(uint32_t number, portal_step_fn step, void *userdata);
    int (*detach)(uint32_t number);
    int (*observe)(uint32_t number, const char *name, portal_step_fn step, void *userdata);
    int (*stop_observing)(uint32_t number, const char *name);
    int (*register_interrupt)(const char *name, portal_step_fn step, void *userdata);
    bool (*queue_interrupt)(const char *name);
    uint32_t (*take_install_budget)(portal_conversation *conversation, uint32_t wanted);
    uint32_t (*op)(const char *name);
    /* operations.h */
    int (*decode_processes)(portal_conversation *, const portal_response *, portal_list_cursor *,
                            portal_process_record *, size_t);
    int (*decode_mappings)(portal_conversation *, const portal_response *, portal_list_cursor *,
                           portal_mapping_record *, size_t);
    int (*decode_fds)(portal_conversation *, const portal_response *, portal_list_cursor *,
                      portal_fd_record *, size_t);
    int (*decode_process)(portal_conversation *, const portal_response *, portal_process_details *);
    int (*decode_heap)(portal_conversation *, const portal_response *, uint64_t *, uint64_t *);
    int (*decode_vfs_open)(portal_conversation *, const portal_response *, portal_vfs_open *);
    int (*decode_vfs_read)(portal_conversation *, const portal_response *, uint32_t, portal_vfs_chunk *);
} portal_api;

extern portal_api api;

/* dlopen(path, RTLD_NOW | RTLD_GLOBAL) and dlsym of init_plugin,
 * uninit_plugin and the C API. Returns false with a message on failure. */
bool emu_open(const char *path, char *error, size_t error_len);
/* dlclose. The harness does not do it between scenarios: a Swift library
 * generally cannot be unloaded safely, and PANDA only unloads at exit. */
void emu_close(void);
/* emu_close, then emu_open of the same path again. */
bool emu_reopen(char *error, size_t error_len);

/* init_plugin(self) for guest `g` with these arguments (copied; they stay
 * valid until emu_uninit). Returns what init_plugin returned. When it
 * returns false the plugin counts as not loaded (as PANDA unloads it) and
 * any callback it registered is dropped. */
bool emu_init(guest *g, const char *const *args, int count);
bool emu_initialized(void);
/* init_plugin(self) once more while loaded, with the same arguments: what
 * an emulator that loads the plugin twice does. Returns what it returned. */
bool emu_init_again(void);
/* uninit_plugin(other) for a handle the emulator never loaded. */
void emu_uninit_foreign(void *other);
/* uninit_plugin(self), then forget the callback and the arguments. */
void emu_uninit(void);

/* Delivers one hypercall; false if no callback or the callback declined. */
bool emu_hypercall(CPUState *cpu, panda_hypercall *call);
/* Times a plugin left its callback registered after uninit_plugin. */
int emu_stale_callbacks(void);
/* panda_get_guest_info calls made (the header says: once, at init). */
int emu_guest_info_calls(void);

#endif /* HARNESS_EMULATOR_H */
