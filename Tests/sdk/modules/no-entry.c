/* A module that declares its API version but has no portal_analysis_init. */
#include <portal/portal.h>

PORTAL_ANALYSIS_MODULE;

int portal_analysis_start(const char *args)
{
    return args == 0;
}
