/* A module linked with other-portal.c's library instead of libportal.so. */
#include <portal/portal.h>

PORTAL_ANALYSIS_MODULE;

static portal_step finish(void *userdata, portal_conversation *conversation, const portal_response *response,
                          portal_command *command, uint64_t *result)
{
    (void)userdata;
    (void)conversation;
    (void)response;
    (void)command;
    *result = 0;
    return PORTAL_STEP_FINISH;
}

int portal_analysis_init(const char *args)
{
    (void)args;
    return portal_attach(0x1338, finish, 0) == 0 ? 0 : 1;
}
