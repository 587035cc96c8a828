/*
 * module.c - an analysis module for the harness's load= scenarios
 * (scenarios_plugin.c): loaded by libportal.so under the PANDA-style front
 * end, as under QEMU.
 *
 * Its argument is a number N: it attaches MODULE_HYPERCALL, whose
 * conversations finish at once with N + the number of earlier
 * conversations. "fail" makes portal_analysis_init return 5. Every init and
 * exit is counted in exported variables the harness reads with dlsym.
 */
#include <portal/portal.h>

#include <stdlib.h>
#include <string.h>

PORTAL_ANALYSIS_MODULE;

#define MODULE_HYPERCALL 0x4242u

__attribute__((visibility("default"))) int harness_module_inits;
__attribute__((visibility("default"))) int harness_module_exits;

static uint64_t base_value;
static uint64_t served;

static portal_step finish_at_once(void *userdata, portal_conversation *conversation,
                                  const portal_response *response, portal_command *command,
                                  uint64_t *result)
{
    (void)userdata;
    (void)conversation;
    (void)response;
    (void)command;
    *result = base_value + __atomic_fetch_add(&served, 1, __ATOMIC_RELAXED);
    return PORTAL_STEP_FINISH;
}

int portal_analysis_init(const char *args)
{
    harness_module_inits++;
    if (strcmp(args, "fail") == 0)
        return 5;
    base_value = strtoull(args, NULL, 0);
    served = 0;
    return portal_attach(MODULE_HYPERCALL, finish_at_once, NULL) == 0 ? 0 : 1;
}

void portal_analysis_exit(void)
{
    harness_module_exits++;
}
