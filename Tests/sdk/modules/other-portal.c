/* Stands for another copy of libportal (one a module could be bound to by
 * a different name): it exports portal_attach, which reaches no engine. */
#include <portal/portal.h>

int portal_attach(uint32_t number, portal_step_fn step, void *userdata)
{
    (void)number;
    (void)step;
    (void)userdata;
    return -1;
}
