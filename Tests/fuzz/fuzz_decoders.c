/*
 * fuzz_decoders.c - libFuzzer on the reply decoders of portal/operations.h
 * (the same Swift decoders PortalOperations uses), through the real library.
 * VFS_READ is decoded with `wanted` = the cursor's next_addr bytes.
 *
 * An input is one reply and the state it arrives in:
 *
 *   byte 0      bits 0-2 the decoder (processes, mappings, fds, process,
 *               heap, vfs_open, vfs_read; 7 is vfs_read too), bit 3 a 32-bit
 *               guest, bit 4 big-endian, bit 5 a cursor with a known total,
 *               bit 6 a READ_FAIL answer instead of READ_OK
 *   bytes 1-8   the reply's header addr (READ_FDS: the resume fd), LE
 *   bytes 9-16  cursor.collected, LE
 *   bytes 17-24 cursor.total, LE
 *   bytes 25-28 cursor.next_addr (the fd or skip the page was asked at), LE
 *   the rest    the payload, at most 4072 bytes (the region)
 *
 * The payload is copied into a buffer of exactly its size, so AddressSanitizer
 * reports any read past the reply. Each decoder must return -1 with a
 * NUL-terminated message in conversation->error, or records whose strings
 * end inside the payload, whose count fits the array, and a cursor that
 * moved forward or finished.
 *
 *   PORTAL_FUZZ_LIB   path of libportal.so (default: the .build-fuzz build
 *                     beside the repository's Tests/fuzz/build)
 */
#define _GNU_SOURCE
#include "portal/operations.h"

#include <dlfcn.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADER_BYTES 29
#define REGION_SIZE 4072u

static int (*decode_processes)(portal_conversation *, const portal_response *, portal_list_cursor *,
                               portal_process_record *, size_t);
static int (*decode_mappings)(portal_conversation *, const portal_response *, portal_list_cursor *,
                              portal_mapping_record *, size_t);
static int (*decode_fds)(portal_conversation *, const portal_response *, portal_list_cursor *,
                         portal_fd_record *, size_t);
static int (*decode_process)(portal_conversation *, const portal_response *, portal_process_details *);
static int (*decode_heap)(portal_conversation *, const portal_response *, uint64_t *, uint64_t *);
static int (*decode_vfs_open)(portal_conversation *, const portal_response *, portal_vfs_open *);
static int (*decode_vfs_read)(portal_conversation *, const portal_response *, uint32_t, portal_vfs_chunk *);

static portal_process_record processes[PORTAL_MAX_PROCESS_RECORDS];
static portal_mapping_record mappings[PORTAL_MAX_MAPPING_RECORDS];
static portal_fd_record fds[PORTAL_MAX_FD_RECORDS];

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "portal-fuzz: FAILURE: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static uint64_t le(const uint8_t *bytes, int count)
{
    uint64_t value = 0;
    for (int i = count - 1; i >= 0; i--)
        value = value << 8 | bytes[i];
    return value;
}

/* A string the decoder handed out must end inside the payload. */
static void check_inside(const char *text, const uint8_t *payload, size_t length, const char *what)
{
    const uint8_t *at = (const uint8_t *)text;
    if (at < payload || at >= payload + length || !memchr(at, 0, (size_t)(payload + length - at)))
        die("%s points outside the %zu-byte payload or has no NUL in it", what, length);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER_BYTES)
        return 0;
    size_t length = size - HEADER_BYTES;
    if (length > REGION_SIZE)
        length = REGION_SIZE;
    uint8_t *payload = malloc(length ? length : 1);
    memcpy(payload, data + HEADER_BYTES, length);

    uint8_t state[PORTAL_STATE_SIZE] = {0};
    portal_conversation conv = {0};
    conv.region_size = REGION_SIZE;
    conv.word_bits = data[0] & 8 ? 32 : 64;
    conv.big_endian = (data[0] >> 4) & 1;
    conv.state = state;
    portal_response response = {
        .code = data[0] & 0x40 ? 0xf0000002u : 0xf0000001u,
        .addr = le(data + 1, 8),
        .size = length,
        .data = payload,
    };
    portal_list_cursor cursor = {0};
    cursor.collected = le(data + 9, 8);
    cursor.total = le(data + 17, 8);
    cursor.has_total = (data[0] >> 5) & 1;
    cursor.next_addr = le(data + 25, 4);
    portal_list_cursor before = cursor;

    int n;
    unsigned decoder = data[0] & 7;
    switch (decoder) {
    case 0:
        n = decode_processes(&conv, &response, &cursor, processes, PORTAL_MAX_PROCESS_RECORDS);
        for (int i = 0; i < n; i++)
            if (!memchr(processes[i].name, 0, sizeof processes[i].name))
                die("process %d's name is not NUL-terminated", i);
        break;
    case 1:
        n = decode_mappings(&conv, &response, &cursor, mappings, PORTAL_MAX_MAPPING_RECORDS);
        for (int i = 0; i < n; i++)
            check_inside(mappings[i].name, payload, length, "a mapping name");
        break;
    case 2:
        n = decode_fds(&conv, &response, &cursor, fds, PORTAL_MAX_FD_RECORDS);
        for (int i = 0; i < n; i++)
            check_inside(fds[i].path, payload, length, "an fd path");
        break;
    case 3: {
        portal_process_details details;
        n = decode_process(&conv, &response, &details);
        if (n == 0 && !memchr(details.name, 0, sizeof details.name))
            die("the process name is not NUL-terminated");
        break;
    }
    case 4: {
        uint64_t start, end;
        n = decode_heap(&conv, &response, &start, &end);
        break;
    }
    case 5: {
        portal_vfs_open opened;
        n = decode_vfs_open(&conv, &response, &opened);
        break;
    }
    default: {
        portal_vfs_chunk chunk;
        uint32_t wanted = (uint32_t)before.next_addr;
        n = decode_vfs_read(&conv, &response, wanted, &chunk);
        if (n == 0 && (chunk.length > wanted || chunk.bytes < payload ||
                       chunk.bytes + chunk.length > payload + length))
            die("a VFS_READ chunk of %u bytes lies outside the %zu-byte reply", chunk.length, length);
        break;
    }
    }
    if (n < 0) {
        if (!conv.error || strlen(conv.error) == 0)
            die("a decoder failed without a message");
    } else if (decoder <= 2 && !cursor.done && cursor.collected <= before.collected &&
               cursor.next_addr == before.next_addr) {
        die("a page that did not end the list left the cursor where it was");
    }
    free(payload);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        die("readlink /proc/self/exe failed");
    exe[n] = 0;
    char lib[8192];
    const char *env = getenv("PORTAL_FUZZ_LIB");
    if (env && *env)
        snprintf(lib, sizeof lib, "%s", env);
    else
        snprintf(lib, sizeof lib, "%s/../../../.build-fuzz/debug/libportal.so", dirname(exe));
    void *handle = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
    if (!handle)
        die("dlopen %s: %s", lib, dlerror());
    *(void **)&decode_processes = dlsym(handle, "portal_decode_processes");
    *(void **)&decode_mappings = dlsym(handle, "portal_decode_mappings");
    *(void **)&decode_fds = dlsym(handle, "portal_decode_fds");
    *(void **)&decode_process = dlsym(handle, "portal_decode_process");
    *(void **)&decode_heap = dlsym(handle, "portal_decode_heap");
    *(void **)&decode_vfs_open = dlsym(handle, "portal_decode_vfs_open");
    *(void **)&decode_vfs_read = dlsym(handle, "portal_decode_vfs_read");
    if (!decode_processes || !decode_mappings || !decode_fds || !decode_process || !decode_heap ||
        !decode_vfs_open || !decode_vfs_read)
        die("%s does not export the decoders of operations.h", lib);
    fprintf(stderr, "portal-fuzz: decoding with %s\n", lib);
    return 0;
}
