/* A module that says it was built for API version 0. */
#include <portal/portal.h>

__attribute__((visibility("default"))) const uint32_t portal_analysis_api_version = 0;

int portal_analysis_init(const char *args)
{
    (void)args;
    return 0;
}
