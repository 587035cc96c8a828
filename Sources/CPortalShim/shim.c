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
