/*
 * The C side of libportal.so, as Swift sees it: the emulator ABIs and the
 * C API (declared under include/portal/ at the top of the repository), and
 * the few things that have to be written in C.
 */
#ifndef CPORTALSHIM_H
#define CPORTALSHIM_H

#include "../../../include/portal/panda.h"
#include "../../../include/portal/portal.h"

#include <stdbool.h>

/* Whether the process that loaded us exports the PANDA-style emulator side
 * (its functions are weak references, NULL under any other emulator). */
__attribute__((visibility("hidden"))) bool portal_shim_has_panda_host(void);

#endif
