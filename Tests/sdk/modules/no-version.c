/* A module that forgot PORTAL_ANALYSIS_MODULE. */
#include <portal/portal.h>

int portal_analysis_init(const char *args)
{
    (void)args;
    return 0;
}
