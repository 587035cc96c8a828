/*
 * portal/portal.h - the C API of libportal.so for analysis plugins.
 *
 * Analysis code attaches *work* to a hypercall number or to a named
 * interrupt. Every time the guest makes that hypercall, the engine runs the
 * work as a *conversation* with the guest: the work sends commands (READ this
 * address, WRITE these bytes, ...), the guest module executes each one in its
 * own context and answers, and when the work finishes its value becomes the
 * hypercall's return value.
 *
 * In C, work is a step function. The engine calls it with the guest's answer
 * to the previous command (NULL on the first step); it either fills *command
 * and returns PORTAL_STEP_COMMAND, or stores the conversation's value in
 * *result and returns PORTAL_STEP_FINISH, or returns PORTAL_STEP_FAIL (after
 * setting conversation->error to a static message). The step function runs
 * on the thread of the vCPU that trapped; it must not block.
 *
 * Each conversation has PORTAL_STATE_SIZE bytes of private state, zeroed
 * when it starts and aligned to 16 bytes, so a step function can remember
 * where it is without allocating. A minimal example, reading one 8-byte value:
 *
 *     static uint32_t op_read;                    // portal_op("READ"), once
 *
 *     static portal_step read_word(void *userdata, portal_conversation *conv,
 *                                  const portal_response *response,
 *                                  portal_command *command, uint64_t *result)
 *     {
 *         if (response == NULL) {                 // first step: ask
 *             command->op = op_read;
 *             command->addr = conv->call.args[0];
 *             command->size = 8;
 *             return PORTAL_STEP_COMMAND;
 *         }
 *         if (response->code != PORTAL_RESP_READ_OK || response->size != 8) {
 *             conv->error = "the guest could not read the word";
 *             return PORTAL_STEP_FAIL;
 *         }
 *         memcpy(result, response->data, 8);      // little-endian guest
 *         return PORTAL_STEP_FINISH;
 *     }
 *
 *     op_read = portal_op("READ");
 *     portal_attach(0x1338, read_word, NULL);
 *
 * These functions may be called from any thread once libportal.so is
 * initialised (after init_plugin or qemu_plugin_install) and until
 * uninit_plugin, which must not run while one of them is in flight. Those
 * returning int
 * return 0 on success and -1 on failure, with a log line saying why.
 */
#ifndef PORTAL_PORTAL_H
#define PORTAL_PORTAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Hypercall numbers of the protocol (compared on their low 32 bits). */
#define PORTAL_HC_REGISTER_MEM_REGION        0xbebebebeu
#define PORTAL_HC_ENABLE_PORTAL_INTERRUPT    0x7901u
#define PORTAL_HC_PORTAL_INTERRUPT           0x7902u

/* The guest's answers (header op after the guest has run a command). */
#define PORTAL_RESP_NONE          0xf0000000u
#define PORTAL_RESP_READ_OK       0xf0000001u
#define PORTAL_RESP_READ_FAIL     0xf0000002u
#define PORTAL_RESP_READ_PARTIAL  0xf0000003u
#define PORTAL_RESP_WRITE_OK      0xf0000004u
#define PORTAL_RESP_WRITE_FAIL    0xf0000005u
#define PORTAL_RESP_READ_NUM      0xf0000006u

/* pid of a command meaning "the task that made the hypercall". */
#define PORTAL_CURRENT_PID 0xffffffffu

#define PORTAL_STATE_SIZE 64

/* The hypercall that started a conversation. */
typedef struct portal_call {
    uint32_t number;   /* low 32 bits of the number register */
    uint32_t vcpu;     /* the vCPU it trapped on */
    uint64_t args[4];  /* arg1 .. arg4; arg3 is the region address */
} portal_call;

typedef struct portal_conversation {
    portal_call call;
    uint64_t region_address;  /* the guest page this conversation uses */
    uint32_t region_size;     /* payload bytes one command or answer can carry */
    uint32_t word_bits;       /* 32 or 64 */
    uint32_t big_endian;      /* 1 for a big-endian guest */
    uint32_t install_budget;  /* interrupt work only: installs left in this window */
    const char *error;        /* set by a step that returns PORTAL_STEP_FAIL */
    void *state;              /* PORTAL_STATE_SIZE bytes, zeroed at the start */
} portal_conversation;

/* The guest's answer to the previous command. */
typedef struct portal_response {
    uint32_t code;        /* PORTAL_RESP_* */
    uint64_t addr;        /* READ_OK/READ_PARTIAL/READ_NUM: the header's addr field as
                           * the guest left it; 0 for the other codes */
    uint64_t size;        /* READ_OK/READ_PARTIAL: bytes in data; READ_NUM: the value; else 0 */
    const uint8_t *data;  /* READ_OK/READ_PARTIAL payload; valid during this step only */
} portal_response;

/* The next command. Rules applied when it is written: size is clamped to
 * the region size (negative becomes 0), addr is masked to the guest width,
 * pid 0 means PORTAL_CURRENT_PID, data longer than the region is cut. */
typedef struct portal_command {
    uint32_t op;          /* from portal_op(); must be 1 ..< MAX of the op table */
    uint32_t pid;
    uint64_t addr;
    int64_t size;
    const void *data;     /* optional payload; read before the step returns to the guest */
    size_t data_length;
} portal_command;

typedef enum portal_step {
    PORTAL_STEP_COMMAND = 0,
    PORTAL_STEP_FINISH = 1,
    PORTAL_STEP_FAIL = 2,
} portal_step;

typedef portal_step (*portal_step_fn)(void *userdata, portal_conversation *conversation,
                                      const portal_response *response,
                                      portal_command *command, uint64_t *result);

/* When a conversation ends without PORTAL_STEP_FINISH (the step failed, the
 * guest answered nonsense, max_conversations refused it, ...) the hypercall
 * is still claimed but its return register is left as it was.
 *
 * Runs `step` for every conversation started by hypercall `number`. A later
 * attach to the same number replaces the earlier one. The protocol's own
 * numbers (REGISTER_MEM_REGION, ENABLE_PORTAL_INTERRUPT, PORTAL_INTERRUPT)
 * cannot be attached to. */
int portal_attach(uint32_t number, portal_step_fn step, void *userdata);
int portal_detach(uint32_t number);

/* Interrupt work: `name` runs in the next PORTAL_INTERRUPT conversation
 * after portal_queue_interrupt(name). A later registration of the same name
 * wins. Its result value is ignored. */
int portal_register_interrupt(const char *name, portal_step_fn step, void *userdata);

/* Queues the interrupt `name`; false when no handler has that name or the
 * pending queue is full. Queueing a name that is already pending does nothing
 * more and returns true; queueing it while it runs queues it for the next
 * window. The flag is written at the end of the next trap of any vCPU: guest
 * memory is only touched from inside a trap, with that trap's vCPU. */
bool portal_queue_interrupt(const char *name);

/* Interrupt work only: takes up to `wanted` units of the window's install
 * budget and returns how many it got. Work that gets fewer than it needs
 * should do what it can and queue itself again. Other work has a budget of 0
 * and always gets 0. */
uint32_t portal_take_install_budget(portal_conversation *conversation, uint32_t wanted);

/* The number of operation `name` (e.g. "READ", "READ_TIME") in the op table
 * in use, or 0 when the table has no such operation. A name lookup: resolve
 * the ops a step needs once, after init, not in the step. */
uint32_t portal_op(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* PORTAL_PORTAL_H */
