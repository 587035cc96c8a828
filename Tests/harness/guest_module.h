/*
 * guest_module.h - the guest module's side of a round trip (PROTOCOL.md §4),
 * once, for the C mocks of this project: the harness guest (guest.c) and the
 * engine benchmark's guest (bench/engine-bench.c).
 *
 * Header-only and static inline, with no locking and no allocation, so the
 * benchmark's "mock guest alone" figure stays the cost of the module's own
 * work: the harness guest, with its sparse memory, locks and trap records,
 * costs about ten times as much per round trip.
 *
 *  - module_after_trap: what the module's loop does with the op the host
 *    left in the region header: leave, leave refusing it, or serve it.
 *  - module_serve_flat: READ and WRITE over guest memory a host pointer can
 *    reach (a little-endian 64-bit guest), as the module serves kernel
 *    addresses: READ cut to the region and all or nothing, WRITE all or
 *    nothing. The harness guest serves the same answers over sparse memory
 *    in either byte order, and user addresses with copy_from_user's partial
 *    reads.
 */
#ifndef HARNESS_GUEST_MODULE_H
#define HARNESS_GUEST_MODULE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "portal/portal.h"

#define MODULE_HEADER 24u        /* op u32, pid u32, addr u64, size u64 */

typedef enum module_next {
    MODULE_LEAVE,                /* op 0 (NONE): the conversation is over */
    MODULE_REFUSE,               /* outside the op table: answer WRITE_FAIL and leave */
    MODULE_SERVE,
} module_next;

/* After a trap: the op the host wrote, against the guest's op table (ops
 * 1 .. op_max - 1). */
static inline module_next module_after_trap(int32_t op, uint32_t op_max)
{
    if (op == 0)
        return MODULE_LEAVE;
    if (op < 0 || (uint32_t)op >= op_max)
        return MODULE_REFUSE;
    return MODULE_SERVE;
}

/* A host pointer to the `len` guest bytes at `addr`, or NULL where any of
 * them is not guest memory. */
typedef uint8_t *(*module_span_fn)(uint64_t addr, uint64_t len);

/* Serves the READ (op_read) or WRITE (op_write) in `region` (a host pointer
 * to the whole region page) and writes the answer code over the header's op;
 * any other op is answered WRITE_FAIL. Returns the answer, the guest's next
 * arg4. */
static inline uint32_t module_serve_flat(uint8_t *region, uint32_t op, uint32_t op_read,
                                         uint32_t op_write, uint32_t region_size, module_span_fn span)
{
    uint8_t *payload = region + MODULE_HEADER;
    uint64_t addr, size;
    memcpy(&addr, region + 8, 8);
    memcpy(&size, region + 16, 8);
    uint32_t answer = PORTAL_RESP_WRITE_FAIL;
    if (op == op_read) {
        if (size > region_size)
            size = region_size;
        uint8_t *from = span(addr, size);
        if (from) {
            /* The 8-byte READ of the benchmarks: a fixed-size copy. */
            if (size == 8)
                memcpy(payload, from, 8);
            else
                memcpy(payload, from, size);
            memcpy(region + 16, &size, 8);
            answer = PORTAL_RESP_READ_OK;
        } else {
            answer = PORTAL_RESP_READ_FAIL;
        }
    } else if (op == op_write) {
        uint8_t *to = size <= region_size ? span(addr, size) : NULL;
        if (to) {
            memcpy(to, payload, size);
            answer = PORTAL_RESP_WRITE_OK;
        }
    }
    memcpy(region, &answer, 4);
    return answer;
}

#endif /* HARNESS_GUEST_MODULE_H */
