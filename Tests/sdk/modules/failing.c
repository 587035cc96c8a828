/* A module whose entry point refuses its argument. */
#include <portal/portal.h>

#include <stdio.h>

PORTAL_ANALYSIS_MODULE;

int portal_analysis_init(const char *args)
{
    fprintf(stderr, "failing: refusing \"%s\"\n", args);
    return 3;
}
