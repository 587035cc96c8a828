/*
 * harness.h - the scenario framework: one context per scenario, CHECK macros
 * that record the first failure and return, and helpers shared by scenarios.
 */
#ifndef HARNESS_HARNESS_H
#define HARNESS_HARNESS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emulator.h"
#include "expect.h"
#include "guest.h"

typedef struct T {
    const char *name;
    bool failed;
    char detail[1024];
    guest *g;                 /* the scenario's guest (freed by the runner) */
    char log_path[1024];      /* the plugin's log_file for this scenario */
    trap_record *traps_buf;   /* last t_traps_of_conv answer (freed by the runner) */
} T;

typedef struct scenario {
    const char *name;
    void (*run)(T *t);
    bool only_by_name;        /* not run unless named on the command line */
} scenario;

/* Scenario tables, one per file, ended by {NULL, NULL}. */
extern const scenario scenarios_protocol[];
extern const scenario scenarios_interrupts[];
extern const scenario scenarios_conversations[];
extern const scenario scenarios_plugin[];
extern const scenario scenarios_operations[];

/* Records the first failure of the scenario. */
void t_fail(T *t, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Informational line printed under the scenario's result. */
void t_note(T *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            t_fail(t, __LINE__, __VA_ARGS__);                                \
            return;                                                          \
        }                                                                    \
    } while (0)

#define CHECK_EQ(actual, expected)                                           \
    do {                                                                     \
        uint64_t a_ = (uint64_t)(actual), e_ = (uint64_t)(expected);         \
        if (a_ != e_) {                                                      \
            t_fail(t, __LINE__, "%s = %#" PRIx64 " (%" PRIu64 "), expected %#" PRIx64 " (%" PRIu64 ")", \
                   #actual, a_, a_, e_, e_);                                 \
            return;                                                          \
        }                                                                    \
    } while (0)

#define CHECK_BYTES(actual, expected, len)                                   \
    do {                                                                     \
        if (!t_bytes_equal(t, __LINE__, #actual, (const uint8_t *)(actual),  \
                           (const uint8_t *)(expected), (size_t)(len)))      \
            return;                                                          \
    } while (0)

bool t_bytes_equal(T *t, int line, const char *what, const uint8_t *actual,
                   const uint8_t *expected, size_t len);

/* Needs the C API of portal.h in the loaded library. */
#define REQUIRE_API()                                                        \
    CHECK(api.attach && api.detach && api.observe && api.stop_observing &&   \
              api.register_interrupt && api.queue_interrupt &&               \
              api.take_install_budget && api.op,                             \
          "the library does not export the whole C API of portal.h")

/* A guest for this scenario (the runner frees it). */
guest *t_guest(T *t, unsigned word_bits, bool big_endian, unsigned vcpus);
guest *t_guest_config(T *t, const guest_config *config);

/* init_plugin with the given arguments (NULL-terminated) plus a
 * log_file=<build/logs/NAME.log> unless one is given. The runner calls
 * uninit_plugin after the scenario if it is still initialised. */
bool t_init(T *t, ...);
bool t_init_argv(T *t, const char *const *args, int count);
void t_uninit(T *t);

/* The plugin log of this scenario. */
char *t_read_log(T *t);                        /* caller frees; "" if none */
int t_log_count(T *t, const char *level, const char *needle);  /* lines */

/* Trap records. */
const trap_record *t_last_trap(T *t);                 /* of the scenario guest */
/* The traps of one guest conversation, in order; valid until the next call. */
trap_record *t_traps_of_conv(T *t, uint64_t conv_id, size_t *n);
/* The raw 24 header bytes a command must have produced. */
void t_expect_header(const guest *g, uint8_t out[REGION_HEADER], uint32_t op, uint32_t pid,
                     uint64_t addr, uint64_t size);

/* The standard op numbers (PROTOCOL.md §2). */
#define OP_READ 1u
#define OP_WRITE 2u
#define OP_READ_STR 3u
#define OP_DUMP 5u
#define OP_OSI_PROC_PTREGS 13u
#define OP_READ_TIME 17u
#define OP_KALLSYMS_LOOKUP 33u
#define OP_MAX 56u

/* Handy guest addresses (user space is below the kernel boundary). */
#define USER_BASE 0x10000ull

#endif /* HARNESS_HARNESS_H */
