/*
 * emulator.c - the mock emulator: the emulator side of include/portal/panda.h.
 *
 * The functions under "exported" are what libportal.so calls back into; the
 * harness executable is linked with -rdynamic so the dynamic loader resolves
 * them when the library is opened. Everything else is how the harness drives
 * the plugin: open it, init it with arguments, deliver hypercalls, uninit it.
 */
#define _GNU_SOURCE
#include "emulator.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

portal_api api;

#define MAX_ARGS 32

/* The `self` handle given to init_plugin: the emulator finds the plugin's
 * arguments and its callback through it. */
typedef struct plugin_self {
    char *argv[MAX_ARGS];
    int argc;
    panda_hypercall_cb callback;   /* accessed atomically: vCPU threads read it */
} plugin_self;

static void *lib;
static char lib_path[4096];
static bool (*lib_init)(void *self);
static void (*lib_uninit)(void *self);
static plugin_self self;
static bool initialized;
static guest *current_guest;
static int stale_callbacks;
static int guest_info_calls;

/* -------------------------------------------------------------- exported -- */

int panda_get_plugin_args(void *s, const char *const **argv)
{
    plugin_self *p = s;
    if (p != &self) {
        fprintf(stderr, "harness: panda_get_plugin_args: unknown self %p\n", s);
        *argv = NULL;
        return 0;
    }
    *argv = (const char *const *)p->argv;
    return p->argc;
}

void panda_get_guest_info(panda_guest_info *info)
{
    const guest_config *c = guest_get_config(current_guest);
    info->word_bits = c->word_bits;
    info->big_endian = c->big_endian ? 1 : 0;
    info->vcpu_count = c->vcpus;
    __atomic_add_fetch(&guest_info_calls, 1, __ATOMIC_RELAXED);
}

void panda_register_hypercall_callback(void *s, panda_hypercall_cb callback)
{
    plugin_self *p = s;
    if (p != &self) {
        fprintf(stderr, "harness: panda_register_hypercall_callback: unknown self %p\n", s);
        return;
    }
    __atomic_store_n(&p->callback, callback, __ATOMIC_RELEASE);
}

void panda_unregister_hypercall_callback(void *s)
{
    plugin_self *p = s;
    if (p != &self)
        return;
    __atomic_store_n(&p->callback, NULL, __ATOMIC_RELEASE);
}

int panda_cpu_index(CPUState *cpu)
{
    return cpu->index;
}

int panda_virtual_memory_read(CPUState *cpu, uint64_t addr, uint8_t *buf, int len)
{
    return guest_cpu_read(cpu, addr, buf, len);
}

int panda_virtual_memory_write(CPUState *cpu, uint64_t addr, const uint8_t *buf, int len)
{
    return guest_cpu_write(cpu, addr, buf, len);
}

/* ------------------------------------------------------------- the driver -- */

bool emu_open(const char *path, char *error, size_t error_len)
{
    if (lib)
        return true;
    if (path != lib_path)
        snprintf(lib_path, sizeof lib_path, "%s", path);
    lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(error, error_len, "dlopen %s: %s", path, dlerror());
        return false;
    }
    lib_init = (bool (*)(void *))dlsym(lib, "init_plugin");
    lib_uninit = (void (*)(void *))dlsym(lib, "uninit_plugin");
    if (!lib_init || !lib_uninit) {
        snprintf(error, error_len, "%s does not export init_plugin and uninit_plugin", path);
        dlclose(lib);
        lib = NULL;
        return false;
    }
    /* The C API (portal.h). A missing symbol stays NULL; scenarios that need
     * it fail saying so. */
    api.attach = (int (*)(uint32_t, portal_step_fn, void *))dlsym(lib, "portal_attach");
    api.detach = (int (*)(uint32_t))dlsym(lib, "portal_detach");
    api.observe = (int (*)(uint32_t, const char *, portal_step_fn, void *))dlsym(lib, "portal_observe");
    api.stop_observing = (int (*)(uint32_t, const char *))dlsym(lib, "portal_stop_observing");
    api.register_interrupt =
        (int (*)(const char *, portal_step_fn, void *))dlsym(lib, "portal_register_interrupt");
    api.queue_interrupt = (bool (*)(const char *))dlsym(lib, "portal_queue_interrupt");
    api.take_install_budget =
        (uint32_t (*)(portal_conversation *, uint32_t))dlsym(lib, "portal_take_install_budget");
    api.op = (uint32_t (*)(const char *))dlsym(lib, "portal_op");
    *(void **)&api.decode_processes = dlsym(lib, "portal_decode_processes");
    *(void **)&api.decode_mappings = dlsym(lib, "portal_decode_mappings");
    *(void **)&api.decode_fds = dlsym(lib, "portal_decode_fds");
    *(void **)&api.decode_process = dlsym(lib, "portal_decode_process");
    *(void **)&api.decode_heap = dlsym(lib, "portal_decode_heap");
    *(void **)&api.decode_vfs_open = dlsym(lib, "portal_decode_vfs_open");
    *(void **)&api.decode_vfs_read = dlsym(lib, "portal_decode_vfs_read");
    return true;
}

void emu_close(void)
{
    if (initialized)
        emu_uninit();
    if (lib)
        dlclose(lib);
    lib = NULL;
    memset(&api, 0, sizeof api);
}

bool emu_reopen(char *error, size_t error_len)
{
    emu_close();
    return emu_open(lib_path, error, error_len);
}

static void free_args(void)
{
    for (int i = 0; i < self.argc; i++)
        free(self.argv[i]);
    memset(self.argv, 0, sizeof self.argv);
    self.argc = 0;
}

bool emu_init(guest *g, const char *const *args, int count)
{
    if (!lib || initialized)
        return false;
    current_guest = g;
    free_args();
    for (int i = 0; i < count && i < MAX_ARGS - 1; i++) {
        self.argv[i] = strdup(args[i]);
        self.argc++;
    }
    __atomic_store_n(&self.callback, NULL, __ATOMIC_RELEASE);
    if (!lib_init(&self)) {
        /* PANDA unloads a plugin whose init failed, without uninit_plugin:
         * forget whatever it registered. */
        __atomic_store_n(&self.callback, NULL, __ATOMIC_RELEASE);
        free_args();
        return false;
    }
    initialized = true;
    return true;
}

bool emu_init_again(void)
{
    if (!lib || !initialized)
        return false;
    return lib_init(&self);
}

void emu_uninit_foreign(void *other)
{
    if (lib)
        lib_uninit(other);
}

bool emu_initialized(void)
{
    return initialized;
}

void emu_uninit(void)
{
    if (!initialized)
        return;
    lib_uninit(&self);
    if (__atomic_load_n(&self.callback, __ATOMIC_ACQUIRE)) {
        stale_callbacks++;
        __atomic_store_n(&self.callback, NULL, __ATOMIC_RELEASE);
    }
    free_args();
    initialized = false;
}

bool emu_hypercall(CPUState *cpu, panda_hypercall *call)
{
    panda_hypercall_cb cb = __atomic_load_n(&self.callback, __ATOMIC_ACQUIRE);
    if (!cb)
        return false;
    return cb(cpu, call);
}

int emu_stale_callbacks(void)
{
    return stale_callbacks;
}

int emu_guest_info_calls(void)
{
    return __atomic_load_n(&guest_info_calls, __ATOMIC_RELAXED);
}
