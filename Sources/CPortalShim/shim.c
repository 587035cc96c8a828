/*
 * Weak references to the emulator side of each ABI: libportal.so is loaded
 * by different emulators, and each exports only its own functions. With weak
 * references the library loads everywhere (even with RTLD_NOW), and each
 * front end checks that its emulator is really there before using it.
 */
#include "CPortalShim.h"

#pragma weak panda_get_plugin_args
#pragma weak panda_get_guest_info
#pragma weak panda_register_hypercall_callback
#pragma weak panda_unregister_hypercall_callback
#pragma weak panda_cpu_index
#pragma weak panda_virtual_memory_read
#pragma weak panda_virtual_memory_write

bool portal_shim_has_panda_host(void)
{
    return panda_get_plugin_args && panda_get_guest_info && panda_register_hypercall_callback &&
           panda_unregister_hypercall_callback && panda_cpu_index && panda_virtual_memory_read &&
           panda_virtual_memory_write;
}

int portal_panda_plugin_args(void *self, const char *const **argv)
{
    return panda_get_plugin_args(self, argv);
}

panda_guest_info portal_panda_guest_info(void)
{
    panda_guest_info info = {0};
    panda_get_guest_info(&info);
    return info;
}

void portal_panda_register(void *self, panda_hypercall_cb callback)
{
    panda_register_hypercall_callback(self, callback);
}

void portal_panda_unregister(void *self)
{
    panda_unregister_hypercall_callback(self);
}

int portal_panda_cpu_index(void *cpu)
{
    return panda_cpu_index(cpu);
}

/* Region-sized transfers only (at most a megabyte), so `int` lengths hold. */
bool portal_panda_read(void *cpu, uint64_t address, void *buffer, size_t length)
{
    return panda_virtual_memory_read(cpu, address, buffer, (int)length) == 0;
}

bool portal_panda_write(void *cpu, uint64_t address, const void *buffer, size_t length)
{
    return panda_virtual_memory_write(cpu, address, buffer, (int)length) == 0;
}

char *portal_shim_error_buffer(void)
{
    static _Thread_local char buffer[PORTAL_SHIM_ERROR_SIZE];
    return buffer;
}
