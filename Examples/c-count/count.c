/*
 * count.c - an analysis module in C: counts the hypercalls it serves and
 * reads a string from the guest on each.
 *
 * Build it against the installed SDK (see Makefile), then load it into QEMU
 * through libportal.so:
 *
 *     qemu-system-x86_64 ... -plugin PREFIX/lib/libportal.so,load=./libcount.so,module_arg=0x1338
 *
 * Its argument is the hypercall number to serve (default 0x1338, Penguin's
 * syscall-enter event). On each such hypercall it asks the guest for the
 * NUL-terminated string at arg2 (READ_STR), prints one line, and returns the
 * string's length to the guest (0 when the guest could not read it).
 */
#include <portal/portal.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PORTAL_ANALYSIS_MODULE;

static uint32_t served_number = 0x1338;
static uint32_t op_read_str;             /* portal_op("READ_STR"), resolved once */
static atomic_uint_fast64_t served;      /* vCPUs may serve hypercalls at once */
static atomic_uint_fast64_t strings_read;

/* Prints the string as text when it is short and printable, else its size. */
static void print_string(uint64_t count, const portal_call *call, const portal_response *response)
{
    size_t length = (size_t)response->size;
    bool printable = length <= 64;
    for (size_t i = 0; printable && i < length; i++)
        printable = response->data[i] >= 0x20 && response->data[i] < 0x7f;
    if (printable)
        fprintf(stderr, "count: #%llu: hypercall %#x, arg1 %#llx: \"%.*s\"\n", (unsigned long long)count,
                call->number, (unsigned long long)call->args[0], (int)length, (const char *)response->data);
    else
        fprintf(stderr, "count: #%llu: hypercall %#x, arg1 %#llx: %zu bytes that are not short text\n",
                (unsigned long long)count, call->number, (unsigned long long)call->args[0], length);
}

/* One conversation: READ_STR at arg2, then finish with its length. */
static portal_step read_string(void *userdata, portal_conversation *conv, const portal_response *response,
                               portal_command *command, uint64_t *result)
{
    (void)userdata;
    if (response == NULL) {
        command->op = op_read_str;
        command->addr = conv->call.args[1];
        command->size = 0;              /* as much as one region holds */
        return PORTAL_STEP_COMMAND;
    }
    uint64_t count = atomic_fetch_add(&served, 1) + 1;
    if (response->code != PORTAL_RESP_READ_OK) {
        fprintf(stderr, "count: #%llu: hypercall %#x, arg1 %#llx: no string at arg2 (the guest answered %#x)\n",
                (unsigned long long)count, conv->call.number, (unsigned long long)conv->call.args[0],
                response->code);
        *result = 0;
        return PORTAL_STEP_FINISH;
    }
    atomic_fetch_add(&strings_read, 1);
    print_string(count, &conv->call, response);
    *result = response->size;
    return PORTAL_STEP_FINISH;
}

int portal_analysis_init(const char *args)
{
    if (args[0] != '\0') {
        char *end;
        unsigned long number = strtoul(args, &end, 0);
        if (*end != '\0' || number > UINT32_MAX) {
            fprintf(stderr, "count: expected a hypercall number as the argument, got \"%s\"\n", args);
            return 1;
        }
        served_number = (uint32_t)number;
    }
    op_read_str = portal_op("READ_STR");
    if (op_read_str == 0) {
        fprintf(stderr, "count: the op table has no READ_STR\n");
        return 1;
    }
    if (portal_attach(served_number, read_string, NULL) != 0)
        return 1;
    fprintf(stderr, "count: serving hypercall %#x\n", served_number);
    return 0;
}

void portal_analysis_exit(void)
{
    fprintf(stderr, "count: served %llu hypercalls, read %llu strings\n",
            (unsigned long long)atomic_load(&served), (unsigned long long)atomic_load(&strings_read));
}
