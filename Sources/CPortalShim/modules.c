/*
 * Opening analysis modules (load=PATH): dlopen, the entry points, the API
 * version and the check that the module reaches this copy of libportal.
 *
 * Modules are never dlclosed: a Swift module registers type metadata with
 * the Swift runtime that cannot be taken back, and the engine may hold
 * closures and step functions of the module until the process exits.
 * dlopen counts references, so loading the same module again in a later life
 * of the plugin (uninit_plugin, then init_plugin) maps nothing new.
 */
#define _GNU_SOURCE
#include "CPortalShim.h"

#include <dlfcn.h>
#include <stdio.h>

/* The shared object that holds `address`, or NULL. */
static const char *object_of(const void *address, const void **base)
{
    Dl_info info;
    if (!address || !dladdr(address, &info))
        return NULL;
    *base = info.dli_fbase;
    return info.dli_fname;
}

bool portal_module_open(const char *path, portal_module *module, char *reason, size_t reason_size)
{
    *module = (portal_module){0};
    dlerror();
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        const char *error = dlerror();
        snprintf(reason, reason_size, "cannot open the module: %s", error ? error : "dlopen failed");
        return false;
    }
    dlerror();
    void *init = dlsym(library, "portal_analysis_init");
    if (!init) {
        const char *error = dlerror();
        snprintf(reason, reason_size, "not an analysis module: it defines no portal_analysis_init (%s)",
                 error ? error : "the symbol is NULL");
        return false;
    }
    const uint32_t *version = dlsym(library, "portal_analysis_api_version");
    if (!version) {
        snprintf(reason, reason_size,
                 "the module declares no API version (write PORTAL_ANALYSIS_MODULE; in one of its files)");
        return false;
    }
    if (*version != PORTAL_API_VERSION) {
        snprintf(reason, reason_size,
                 "the module is built for portal API version %u, this libportal.so implements version %u; "
                 "rebuild it against this SDK", (unsigned)*version, (unsigned)PORTAL_API_VERSION);
        return false;
    }
    /* dlsym on the module's handle searches the module and then its
     * dependencies: the portal_attach its calls bind to. */
    const void *ours_base = NULL, *theirs_base = NULL;
    const char *ours = object_of((const void *)portal_module_open, &ours_base);
    const char *theirs = object_of(dlsym(library, "portal_attach"), &theirs_base);
    if (theirs && ours && theirs_base != ours_base) {
        snprintf(reason, reason_size,
                 "the module is bound to another copy of libportal (%s), not the loaded %s, whose engine "
                 "it could not reach; link it with -lportal (pkg-config portal) so that it binds to the "
                 "loaded library by its SONAME", theirs, ours);
        return false;
    }
    module->library = library;
    module->analysis_init = (int (*)(const char *))init;
    module->analysis_exit = (void (*)(void))dlsym(library, "portal_analysis_exit");
    return true;
}
