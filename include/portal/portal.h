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
 * returning int return 0 on success and -1 on failure, with a log line
 * saying why.
 *
 * Analysis modules. Analysis code is a shared library that libportal.so
 * loads itself, named by the plugin argument load=PATH (repeatable; modules
 * are loaded in the order given, after every other argument is accepted):
 *
 *     qemu-system-x86_64 ... -plugin /usr/lib/libportal.so,load=/x/libcount.so,module_arg=verbose
 *
 * QEMU splits plugin arguments at commas (and takes a key named "arg" for
 * itself), so a module's own arguments are given as module_arg=TEXT items
 * after its load=: every module_arg= belongs to the load= before it, and
 * several are joined with commas, in order. Above, libcount.so gets
 * "verbose"; with module_arg=a,module_arg=b=2 it would get "a,b=2"; with
 * none, "".
 *
 * A module is built against this SDK (cc -shared -fPIC ... $(pkg-config
 * --cflags --libs portal)), writes PORTAL_ANALYSIS_MODULE; in one of its
 * files and defines portal_analysis_init(), and optionally
 * portal_analysis_exit(). Linked with -lportal, its dependency on
 * libportal.so binds by SONAME to the copy the emulator already loaded,
 * whatever path the module is loaded from. Every refusal ends the plugin's
 * load with one log line naming the module and the reason: the module cannot
 * be opened (dlerror's text), it has no portal_analysis_init, it declares no
 * API version or another one than PORTAL_API_VERSION, it reaches another copy
 * of libportal than the loaded one, or its portal_analysis_init returns
 * non-zero. Modules stay mapped until the process exits.
 */
#ifndef PORTAL_PORTAL_H
#define PORTAL_PORTAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * PORTAL_API_VERSION - the version of this API: of portal.h's types and
 * functions and of the analysis-module entry points. libportal.so loads only
 * modules built for the version it implements; it changes whenever a change
 * would break a module built before it.
 */
#define PORTAL_API_VERSION 1u

/*
 * PORTAL_ANALYSIS_MODULE - declares, in exactly one file of an analysis
 * module, the API version the module is built for, as the exported constant
 * portal_analysis_api_version that libportal.so checks before calling the
 * module's entry point. Write it at file scope, followed by a semicolon.
 */
#ifdef __cplusplus
/* extern "C": a const at namespace scope would otherwise not be exported. */
#define PORTAL_ANALYSIS_MODULE extern "C" \
    __attribute__((visibility("default"))) const uint32_t portal_analysis_api_version = PORTAL_API_VERSION
#else
#define PORTAL_ANALYSIS_MODULE \
    __attribute__((visibility("default"))) const uint32_t portal_analysis_api_version = PORTAL_API_VERSION
#endif

/**
 * portal_analysis_init() - the entry point of an analysis module
 * @args: the module's arguments, the module_arg=TEXT items that followed its load=
 *        joined with commas ("" when there are none); valid during the call
 *        only
 *
 * Defined by the module, called by libportal.so once per load of the plugin,
 * after the engine is initialised and the modules named before it have been
 * initialised, on the emulator's thread that loads the plugin (no vCPU runs
 * yet). The module attaches its work here (portal_attach(),
 * portal_register_interrupt()) and resolves the op numbers it needs
 * (portal_op()).
 *
 * Return: 0 on success; anything else makes the plugin refuse to load (the
 * value is logged with the module's path; print the reason first).
 */
int portal_analysis_init(const char *args);

/**
 * portal_analysis_exit() - optional exit hook of an analysis module
 *
 * Defined by the module if it needs it, called by libportal.so when the
 * plugin is unloaded (uninit_plugin, or QEMU's exit), in the reverse order of
 * loading, before the conversations still waiting are ended; also when a
 * later module refuses to load. The plugin is no longer current then: the
 * portal_*() functions refuse (with a log line). Under QEMU it runs from the
 * exit of the process, and vCPU threads may still be inside a step
 * function: it may print a report but must not free what steps use.
 */
void portal_analysis_exit(void);

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

/*
 * PORTAL_COMMAND_TOTAL_SIZE - portal_command.flags bit: size is a total
 * length, written as is (negative still becomes 0) instead of clamped to
 * the region. Only for an op whose size means the length of something
 * larger than one command, COPY_BUF_GUEST: it allocates size bytes, takes
 * the first region of them from data and leaves the rest to WRITEs.
 */
#define PORTAL_COMMAND_TOTAL_SIZE 0x1u

/**
 * struct portal_command - the next command
 * @op: from portal_op(); must be 1 ..< MAX of the op table
 * @pid: the task it is about; 0 means PORTAL_CURRENT_PID
 * @addr: the header's addr field; masked to the guest width when written
 * @size: the header's size field; clamped to the region size when written
 *        (negative becomes 0), unless @flags has PORTAL_COMMAND_TOTAL_SIZE
 * @data: optional payload; read before the step returns to the guest
 * @data_length: bytes at @data; more than the region are cut
 * @flags: PORTAL_COMMAND_* bits, 0 for none; another bit fails the
 *         conversation
 *
 * The library zeroes the command before each step, and @flags comes last:
 * a module built before @flags existed leaves it 0 and keeps the clamping
 * rule, so it runs unchanged (PORTAL_API_VERSION stays 1).
 */
typedef struct portal_command {
    uint32_t op;
    uint32_t pid;
    uint64_t addr;
    int64_t size;
    const void *data;
    size_t data_length;
    uint32_t flags;
} portal_command;

typedef enum portal_step {
    PORTAL_STEP_COMMAND = 0,
    PORTAL_STEP_FINISH = 1,
    PORTAL_STEP_FAIL = 2,
} portal_step;

/**
 * typedef portal_step_fn - one step of a conversation
 * @userdata: the pointer given to portal_attach() or portal_register_interrupt()
 * @conversation: this conversation: its hypercall, region, guest layout,
 *                private state and error message
 * @response: the guest's answer to the previous command; NULL on the first step
 * @command: where the next command goes (zeroed before each step)
 * @result: where the conversation's value goes when it finishes
 *
 * Context: runs on the thread of the vCPU that trapped, between two of its
 * traps; it must not block and should not allocate.
 *
 * Return: PORTAL_STEP_COMMAND after filling *@command, PORTAL_STEP_FINISH
 * after storing *@result, or PORTAL_STEP_FAIL after pointing
 * @conversation->error at a static message.
 */
typedef portal_step (*portal_step_fn)(void *userdata, portal_conversation *conversation,
                                      const portal_response *response,
                                      portal_command *command, uint64_t *result);

/**
 * portal_attach() - run a step function for every conversation of a hypercall
 * @number: the hypercall number (compared on its low 32 bits); not one of the
 *          protocol's own (REGISTER_MEM_REGION, ENABLE_PORTAL_INTERRUPT,
 *          PORTAL_INTERRUPT)
 * @step: the step function every conversation started by @number runs
 * @userdata: passed to @step untouched
 *
 * A later attach to the same number replaces the earlier one; conversations
 * already running finish with the work they started with. When a
 * conversation ends without PORTAL_STEP_FINISH (the step failed, the guest
 * answered nonsense, max_conversations refused it, ...) the hypercall is
 * still claimed but its return register is left as it was.
 *
 * Thread-safe: callable from any thread, including from a step function.
 *
 * Return: 0 on success, -1 (logged) if @step is NULL, @number is one of the
 * protocol's or the plugin is not initialised.
 */
int portal_attach(uint32_t number, portal_step_fn step, void *userdata);

/**
 * portal_detach() - stop serving a hypercall
 * @number: a number given to portal_attach() before
 *
 * Conversations already running finish; a conversation of @number that is
 * still waiting for the guest is not served again and is reclaimed as stale.
 *
 * Thread-safe: callable from any thread.
 *
 * Return: 0 on success, -1 (logged) if no work is attached to @number or the
 * plugin is not initialised.
 */
int portal_detach(uint32_t number);

/**
 * portal_observe() - run a step function first in every conversation of a hypercall
 * @number: the hypercall number (compared on its low 32 bits); not one of the
 *          protocol's own
 * @name: names the observer (copied): observing @number again under the same
 *        name replaces it
 * @step: the step function that runs first in each conversation @number starts
 * @userdata: passed to @step untouched
 *
 * Watches a hypercall without taking it from the work attached to it: in each
 * conversation @number starts, its observers run first, in the order they
 * were added, then the work portal_attach() gave the number, in the same
 * conversation. An observer's result is dropped; one that fails is logged
 * (warn) and the conversation goes on with what comes next. portal_attach()
 * and portal_detach() leave observers in place; with observers but no work
 * attached, the hypercall returns 0.
 *
 * Thread-safe: callable from any thread, including from a step function.
 *
 * Return: 0 on success, -1 (logged) if @name or @step is NULL, @number is one
 * of the protocol's or the plugin is not initialised.
 */
int portal_observe(uint32_t number, const char *name, portal_step_fn step, void *userdata);

/**
 * portal_stop_observing() - remove an observer of a hypercall
 * @number: the hypercall observed
 * @name: the observer's name, as given to portal_observe()
 *
 * Conversations the observer is in already run on.
 *
 * Thread-safe: callable from any thread.
 *
 * Return: 0 on success, -1 (logged) if @name is NULL, @number has no observer
 * of that name or the plugin is not initialised.
 */
int portal_stop_observing(uint32_t number, const char *name);

/**
 * portal_register_interrupt() - name work that runs in interrupt windows
 * @name: the interrupt's name (copied)
 * @step: the step function that runs in the next PORTAL_INTERRUPT
 *        conversation after portal_queue_interrupt(@name); its result value
 *        is ignored
 * @userdata: passed to @step untouched
 *
 * A later registration of the same name wins.
 *
 * Thread-safe: callable from any thread.
 *
 * Return: 0 on success, -1 (logged) if @name or @step is NULL or the plugin
 * is not initialised.
 */
int portal_register_interrupt(const char *name, portal_step_fn step, void *userdata);

/**
 * portal_queue_interrupt() - ask for an interrupt window for registered work
 * @name: the name given to portal_register_interrupt()
 *
 * Queueing a name that is already pending does nothing more; queueing it
 * while it runs queues it for the next window. The guest's flag is written
 * at the end of the next trap of any vCPU: guest memory is only touched from
 * inside a trap, with that trap's vCPU.
 *
 * Thread-safe: callable from any thread, including from a step function.
 *
 * Return: true when @name is pending, false when no handler has
 * that name, max_interrupts names are already pending, or the plugin is not
 * initialised.
 */
bool portal_queue_interrupt(const char *name);

/**
 * portal_take_install_budget() - spend the interrupt window's install budget
 * @conversation: the conversation of the step function calling it
 * @wanted: how many installs the step wants to make
 *
 * Work that gets fewer than it needs should do what it can and queue itself
 * again. Work that is not interrupt work has a budget of 0.
 *
 * Context: only from inside a step function, with its own @conversation.
 *
 * Return: how many units were granted, from 0 to @wanted (0 for a NULL
 * @conversation).
 */
uint32_t portal_take_install_budget(portal_conversation *conversation, uint32_t wanted);

/**
 * portal_op() - the number of a guest operation in the op table in use
 * @name: an operation's name, e.g. "READ" or "READ_TIME" (without HYPER_OP_)
 *
 * A name lookup: resolve the ops a step needs once, in
 * portal_analysis_init(), not in the step.
 *
 * Thread-safe: callable from any thread.
 *
 * Return: the operation's number, or 0 when the table has no such operation,
 * @name is NULL or the plugin is not initialised.
 */
uint32_t portal_op(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* PORTAL_PORTAL_H */
