/*
 * main.c - the scenario runner.
 *
 *   harness --lib PATH [--list] [--verbose] [NAME ...]
 *
 * Loads the plugin at PATH (the built libportal.so) once, then runs every
 * scenario (or only those named; a NAME ending in '*' is a prefix), each with
 * its own guest and its own init_plugin/uninit_plugin. Prints "PASS name" or
 * "FAIL name: detail" per scenario, then "N passed, M failed"; exits 1 if any
 * failed, 2 on a usage or load error.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char logs_dir[512];
static bool verbose;
static char notes[8192];

/* ----------------------------------------------------------- framework -- */

void t_fail(T *t, int line, const char *fmt, ...)
{
    if (t->failed)
        return;
    t->failed = true;
    int n = snprintf(t->detail, sizeof t->detail, "line %d: ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->detail + n, sizeof t->detail - (size_t)n, fmt, ap);
    va_end(ap);
}

void t_note(T *t, const char *fmt, ...)
{
    (void)t;
    size_t used = strlen(notes);
    if (used + 8 >= sizeof notes)
        return;
    int n = snprintf(notes + used, sizeof notes - used, "    note: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes + used + n, sizeof notes - used - (size_t)n, fmt, ap);
    va_end(ap);
    used = strlen(notes);
    if (used + 1 < sizeof notes) {
        notes[used] = '\n';
        notes[used + 1] = 0;
    }
}

bool t_bytes_equal(T *t, int line, const char *what, const uint8_t *actual,
                   const uint8_t *expected, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (actual[i] != expected[i]) {
            char got[64] = "", want[64] = "";
            size_t from = i >= 4 ? i - 4 : 0;
            for (size_t j = from; j < len && j < from + 12; j++) {
                snprintf(got + strlen(got), sizeof got - strlen(got), "%02x", actual[j]);
                snprintf(want + strlen(want), sizeof want - strlen(want), "%02x", expected[j]);
            }
            t_fail(t, line, "%s differs at byte %zu of %zu: got %s, expected %s (from byte %zu)",
                   what, i, len, got, want, from);
            return false;
        }
    }
    return true;
}

guest *t_guest_config(T *t, const guest_config *config)
{
    if (t->g)
        guest_free(t->g);
    t->g = guest_new(config);
    return t->g;
}

guest *t_guest(T *t, unsigned word_bits, bool big_endian, unsigned vcpus)
{
    guest_config c = {0};
    c.word_bits = word_bits;
    c.big_endian = big_endian;
    c.vcpus = vcpus;
    return t_guest_config(t, &c);
}

bool t_init_argv(T *t, const char *const *args, int count)
{
    const char *all[40];
    int n = 0;
    bool has_log_file = false;
    for (int i = 0; i < count; i++)
        if (strncmp(args[i], "log_file=", 9) == 0)
            has_log_file = true;
    /* log_file goes first, so that even a refusal of a later argument is
     * logged there (if the plugin applies arguments in order). */
    char log_arg[1100];
    if (!has_log_file) {
        snprintf(log_arg, sizeof log_arg, "log_file=%s", t->log_path);
        all[n++] = log_arg;
    }
    for (int i = 0; i < count && n < 38; i++)
        all[n++] = args[i];
    return emu_init(t->g, all, n);
}

bool t_init(T *t, ...)
{
    const char *args[40];
    int n = 0;
    va_list ap;
    va_start(ap, t);
    for (const char *a; n < 38 && (a = va_arg(ap, const char *)) != NULL;)
        args[n++] = a;
    va_end(ap);
    return t_init_argv(t, args, n);
}

void t_uninit(T *t)
{
    (void)t;
    emu_uninit();
}

char *t_read_log(T *t)
{
    FILE *f = fopen(t->log_path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t n = fread(text, 1, (size_t)size, f);
    text[n] = 0;
    fclose(f);
    return text;
}

int t_log_count(T *t, const char *level, const char *needle)
{
    char *text = t_read_log(t);
    char prefix[64];
    snprintf(prefix, sizeof prefix, LOG_PREFIX "%s: ", level ? level : "");
    int count = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (level && strncmp(line, prefix, strlen(prefix)) != 0)
            continue;
        if (needle && !strstr(line, needle))
            continue;
        count++;
    }
    free(text);
    return count;
}

const trap_record *t_last_trap(T *t)
{
    static trap_record last;
    size_t n;
    trap_record *all = guest_traps(t->g, &n);
    memset(&last, 0, sizeof last);
    if (n)
        last = all[n - 1];
    free(all);
    return &last;
}

trap_record *t_traps_of_conv(T *t, uint64_t conv_id, size_t *count)
{
    size_t n;
    trap_record *all = guest_traps(t->g, &n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (all[i].conv_id == conv_id)
            all[k++] = all[i];
    *count = k;
    free(t->traps_buf);
    t->traps_buf = all;
    return all;
}

void t_expect_header(const guest *g, uint8_t out[REGION_HEADER], uint32_t op, uint32_t pid,
                     uint64_t addr, uint64_t size)
{
    guest_encode(g, out, op, 4);
    guest_encode(g, out + 4, pid, 4);
    guest_encode(g, out + 8, addr, 8);
    guest_encode(g, out + 16, size, 8);
}

/* -------------------------------------------------------------- runner -- */

static const scenario *const tables[] = {
    scenarios_protocol, scenarios_interrupts,
    scenarios_conversations, scenarios_plugin, scenarios_operations,
};

static bool selected(const scenario *s, int argc, char **names)
{
    if (argc == 0)
        return !s->only_by_name;
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(names[i]);
        if (len && names[i][len - 1] == '*') {
            if (strncmp(s->name, names[i], len - 1) == 0 && !s->only_by_name)
                return true;
        } else if (strcmp(s->name, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void run_one(const scenario *s, int *passed, int *failed)
{
    T t;
    memset(&t, 0, sizeof t);
    t.name = s->name;
    snprintf(t.log_path, sizeof t.log_path, "%s/%s.log", logs_dir, s->name);
    unlink(t.log_path);
    notes[0] = 0;

    s->run(&t);

    if (!t.failed && t.g) {
        char first[256];
        int v = guest_violations(t.g, first, sizeof first);
        if (v)
            t_fail(&t, 0, "%d protocol violation(s) seen by the guest; first: %s", v, first);
    }
    if (emu_initialized())
        emu_uninit();
    if (t.g) {
        int off = guest_offtrap_accesses(t.g);
        if (off && !t.failed)
            t_fail(&t, 0, "%d guest memory call(s) outside a trap (the emulator refused them)", off);
        guest_free(t.g);
    }
    free(t.traps_buf);
    if (t.failed) {
        printf("FAIL %s: %s\n", s->name, t.detail);
        (*failed)++;
    } else {
        printf("PASS %s\n", s->name);
        (*passed)++;
    }
    if (notes[0] && (verbose || t.failed))
        fputs(notes, stdout);
    if (verbose && t.failed) {
        char *log = t_read_log(&t);
        if (*log)
            printf("    --- plugin log %s ---\n%s", t.log_path, log);
        free(log);
    }
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: harness --lib PATH [--list] [--verbose] [NAME|PREFIX* ...]\n");
}

int main(int argc, char **argv)
{
    const char *lib = NULL;
    bool list = false;
    char *names[256];
    int nnames = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc)
            lib = argv[++i];
        else if (strcmp(argv[i], "--list") == 0)
            list = true;
        else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0)
            verbose = true;
        else if (argv[i][0] == '-') {
            usage();
            return 2;
        } else if (nnames < 256)
            names[nnames++] = argv[i];
    }
    if (list) {
        for (size_t k = 0; k < sizeof tables / sizeof tables[0]; k++)
            for (const scenario *s = tables[k]; s->name; s++)
                printf("%s%s\n", s->name, s->only_by_name ? " (only when named)" : "");
        return 0;
    }
    if (!lib) {
        usage();
        return 2;
    }

    /* Plugin logs go beside the executable: build/logs/NAME.log */
    char exe[512];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        strcpy(exe, ".");
        len = 1;
    }
    exe[len] = 0;
    snprintf(logs_dir, sizeof logs_dir, "%s/logs", dirname(exe));
    if (mkdir(logs_dir, 0755) != 0 && errno != EEXIST) {
        perror(logs_dir);
        return 2;
    }

    char error[1024];
    if (!emu_open(lib, error, sizeof error)) {
        fprintf(stderr, "harness: %s\n", error);
        return 2;
    }

    int passed = 0, failed = 0;
    for (size_t k = 0; k < sizeof tables / sizeof tables[0]; k++)
        for (const scenario *s = tables[k]; s->name; s++)
            if (selected(s, nnames, names))
                run_one(s, &passed, &failed);

    if (passed + failed == 0)
        fprintf(stderr, "harness: no scenario matched\n");
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    /* No dlclose: see emulator.h. */
    return failed ? 1 : (passed ? 0 : 2);
}
