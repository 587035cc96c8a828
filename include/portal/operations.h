/*
 * portal/operations.h - decoders for the guest module's reply formats, for
 * C step functions (libportal.so).
 *
 * A step function sends the op's command itself and hands each answer to
 * the op's decoder, which checks every count, offset and string of the reply
 * against its size (a hostile guest cannot make it over-read, trap or loop),
 * fills records in host order and, for lists, applies the paging rule and
 * says what to ask for next. These are the same decoders and paging rules
 * the Swift operations of PortalOperations use.
 *
 * Paging rules (PROTOCOL.md §6), carried by a portal_list_cursor that
 * starts zeroed (the conversation's state is zeroed, so a cursor kept there
 * needs no set-up):
 *  - OSI_PROC_ALL (pid ignored) and OSI_MAPPINGS (pid = the task): send
 *    addr = cursor->next_addr, the records collected so far. The list ends
 *    when the records reach the page's total_count or a page is empty. A
 *    total that grows, or one beyond what Linux allows, is an error.
 *  - READ_FDS (pid = the task): send addr = cursor->next_addr, the fd to
 *    start from; the next one is the resume fd the reply carries in its
 *    header addr (not fd + count: fd numbers have gaps). 0 ends the list. A
 *    resume fd that does not move forward, or a page without fds that does
 *    not end the list, is an error.
 * With 4 KiB pages a page holds at most 72 processes, 28 mappings or 127
 * fds; size record arrays for the region's page (region_size / 56, / 144,
 * / 32 always suffice).
 *
 * A list step, in full (error handling included):
 *
 *     typedef struct { portal_list_cursor cursor; uint64_t pids; } walk;
 *
 *     static portal_step sum_pids(void *userdata, portal_conversation *conv,
 *                                 const portal_response *response,
 *                                 portal_command *command, uint64_t *result)
 *     {
 *         walk *w = conv->state;
 *         if (response != NULL) {
 *             portal_process_record page[PORTAL_MAX_PROCESS_RECORDS];
 *             int n = portal_decode_processes(conv, response, &w->cursor,
 *                                             page, PORTAL_MAX_PROCESS_RECORDS);
 *             if (n < 0)
 *                 return PORTAL_STEP_FAIL;     // conv->error says why
 *             for (int i = 0; i < n; i++)
 *                 w->pids += page[i].pid;
 *             if (w->cursor.done) {
 *                 *result = w->pids;
 *                 return PORTAL_STEP_FINISH;
 *             }
 *         }
 *         command->op = op_osi_proc_all;       // portal_op("OSI_PROC_ALL")
 *         command->addr = w->cursor.next_addr;
 *         return PORTAL_STEP_COMMAND;
 *     }
 *
 * Every decoder returns the number of records (0 for single-value
 * decoders) or -1 on failure: then conversation->error points at a message
 * naming the op and what the guest answered ("OSI_PROC_ALL: malformed
 * reply: result_count 80 is more than the 72 process records ..."), valid
 * until the next decoder call on this thread: return PORTAL_STEP_FAIL at
 * once. A response other than READ_OK fails too ("OSI_PROC: the guest
 * answered READ_FAIL"). The layout (word size, byte order) is the
 * conversation's. Strings (names, paths) point into response->data and are
 * valid during this step only: copy what you keep.
 */
#ifndef PORTAL_OPERATIONS_H
#define PORTAL_OPERATIONS_H

#include "portal.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Record arrays this long hold any page of a 16 KiB-page guest. */
#define PORTAL_MAX_PROCESS_RECORDS  292
#define PORTAL_MAX_MAPPING_RECORDS  113
#define PORTAL_MAX_FD_RECORDS       511

/**
 * struct portal_list_cursor - where a paged list stands.
 * @next_addr: the addr of the next command (skip count or resume fd).
 * @collected: records decoded so far.
 * @total: the last page's total_count (skip-count lists).
 * @has_total: whether @total is known yet.
 * @done: nonzero once the list is complete; send no further command.
 *
 * Start from all zeroes. Only the decoders change it.
 */
typedef struct portal_list_cursor {
    uint64_t next_addr;
    uint64_t collected;
    uint64_t total;
    uint32_t has_total;
    uint32_t done;
} portal_list_cursor;

/**
 * struct portal_process_record - one user process of OSI_PROC_ALL.
 * @name: the task's comm, NUL-terminated (at most 15 bytes).
 */
typedef struct portal_process_record {
    uint64_t pid;
    uint64_t parent_pid;
    uint64_t create_time;
    uint32_t uid;
    uint32_t gid;
    uint32_t effective_uid;
    uint32_t effective_gid;
    char name[16];
} portal_process_record;

/**
 * struct portal_mapping_record - one memory mapping (VMA) of OSI_MAPPINGS.
 * @start: first address.
 * @end: one past the last address.
 * @file_offset: offset in the mapped file (vm_pgoff << PAGE_SHIFT).
 * @flags: raw vm_flags (R 1, W 2, X 4, SHARED 8).
 * @inode: the file's inode, 0 for anonymous memory.
 * @device_major: the file's device, major number.
 * @device_minor: minor number.
 * @permissions: "r-xp" as /proc/PID/maps prints it, NUL-terminated.
 * @name: path, "[heap]", "[stack]", ... or ""; points into response->data.
 */
typedef struct portal_mapping_record {
    uint64_t start;
    uint64_t end;
    uint64_t file_offset;
    uint64_t flags;
    uint64_t inode;
    uint32_t device_major;
    uint32_t device_minor;
    char permissions[8];
    const char *name;
} portal_mapping_record;

/**
 * struct portal_fd_record - one open file descriptor of READ_FDS.
 * @fd: the fd number (-100 for the working-directory record).
 * @path: its path (d_path); points into response->data.
 */
typedef struct portal_fd_record {
    int32_t fd;
    const char *path;
} portal_fd_record;

/**
 * struct portal_process_details - one task as OSI_PROC reports it.
 * @fields: the 26 u64 fields in the reply's order: taskd, pgd, pid, ppid,
 *          name_offset, create_time, map_count, start_brk, brk,
 *          start_stack, start_code, end_code, start_data, end_data,
 *          arg_start, arg_end, env_start, env_end, saved_auxv, mmap_base,
 *          task_size, uid, gid, euid, egid, start_time.
 * @name: the task's comm, NUL-terminated.
 */
typedef struct portal_process_details {
    uint64_t fields[26];
    char name[16];
} portal_process_details;

/**
 * portal_decode_processes() - decode one OSI_PROC_ALL page and advance @cursor.
 * @conversation: the step's conversation (its layout; its error on failure).
 * @response: the answer to OSI_PROC_ALL with addr = @cursor->next_addr.
 * @cursor: the list's cursor.
 * @records: where to put the page's records.
 * @capacity: how many @records hold; a longer page is an error.
 *
 * Return: the records on the page, or -1 with conversation->error set.
 */
int portal_decode_processes(portal_conversation *conversation, const portal_response *response,
                            portal_list_cursor *cursor, portal_process_record *records,
                            size_t capacity);

/**
 * portal_decode_mappings() - decode one OSI_MAPPINGS page and advance @cursor.
 * @conversation: the step's conversation.
 * @response: the answer to OSI_MAPPINGS with addr = @cursor->next_addr.
 * @cursor: the list's cursor.
 * @records: where to put the page's records.
 * @capacity: how many @records hold.
 *
 * Return: the records on the page, or -1 with conversation->error set.
 */
int portal_decode_mappings(portal_conversation *conversation, const portal_response *response,
                           portal_list_cursor *cursor, portal_mapping_record *records,
                           size_t capacity);

/**
 * portal_decode_fds() - decode one READ_FDS page and advance @cursor.
 * @conversation: the step's conversation.
 * @response: the answer to READ_FDS with addr = @cursor->next_addr.
 * @cursor: the list's cursor (@cursor->next_addr becomes the resume fd).
 * @records: where to put the page's records.
 * @capacity: how many @records hold.
 *
 * For the working directory alone, send READ_FDS with addr = -100 and
 * decode with a fresh cursor: the one record has fd -100.
 *
 * Return: the records on the page, or -1 with conversation->error set.
 */
int portal_decode_fds(portal_conversation *conversation, const portal_response *response,
                      portal_list_cursor *cursor, portal_fd_record *records, size_t capacity);

/**
 * portal_decode_process() - decode an OSI_PROC reply.
 * @conversation: the step's conversation.
 * @response: the answer to OSI_PROC.
 * @details: filled on success.
 *
 * Return: 0, or -1 with conversation->error set (READ_FAIL: no such task).
 */
int portal_decode_process(portal_conversation *conversation, const portal_response *response,
                          portal_process_details *details);

/**
 * portal_decode_heap() - decode an OSI_PROC_MEM reply: {u64 start_brk, u64 brk}.
 * @conversation: the step's conversation.
 * @response: the answer to OSI_PROC_MEM.
 * @start: set to start_brk.
 * @end: set to brk.
 *
 * Return: 0, or -1 with conversation->error set (READ_FAIL: no such task or no mm).
 */
int portal_decode_heap(portal_conversation *conversation, const portal_response *response,
                       uint64_t *start, uint64_t *end);

/**
 * struct portal_vfs_open - a VFS_OPEN reply.
 * @error: 0, or the positive errno of the failed open (2 = ENOENT: no such file).
 * @handle: the handle for VFS_READ and VFS_CLOSE (addr = handle).
 * @fs_magic: the file system's magic number.
 */
typedef struct portal_vfs_open {
    int32_t error;
    uint32_t handle;
    uint64_t fs_magic;
} portal_vfs_open;

/**
 * struct portal_vfs_chunk - a VFS_READ reply.
 * @error: 0, or the positive errno (22 = EINVAL: some /proc and /sys files;
 *         read those with READ_FILE instead).
 * @length: bytes in @bytes.
 * @end_of_file: nonzero once the file has ended; a chunk of 0 bytes ends it too.
 * @bytes: the bytes; point into response->data.
 */
typedef struct portal_vfs_chunk {
    int32_t error;
    uint32_t length;
    uint32_t end_of_file;
    const uint8_t *bytes;
} portal_vfs_chunk;

/**
 * portal_decode_vfs_open() - decode a VFS_OPEN reply.
 * @conversation: the step's conversation.
 * @response: the answer to VFS_OPEN (payload: the NUL-terminated path).
 * @opened: filled on success; check @opened->error before using the handle.
 *
 * A file read: VFS_OPEN, then VFS_READ with addr = handle and size <=
 * region_size - 16 until end_of_file or a 0-byte chunk, then VFS_CLOSE.
 * READ_FILE (addr = offset, size = at most region_size - 1, payload = path)
 * answers READ_FAIL both for a missing file and at the end of one.
 *
 * Return: 0, or -1 with conversation->error set.
 */
int portal_decode_vfs_open(portal_conversation *conversation, const portal_response *response,
                           portal_vfs_open *opened);

/**
 * portal_decode_vfs_read() - decode a VFS_READ reply.
 * @conversation: the step's conversation.
 * @response: the answer to VFS_READ.
 * @wanted: the size the command asked for; a longer chunk is an error.
 * @chunk: filled on success.
 *
 * Return: 0, or -1 with conversation->error set.
 */
int portal_decode_vfs_read(portal_conversation *conversation, const portal_response *response,
                           uint32_t wanted, portal_vfs_chunk *chunk);

/*
 * The other ops need no decoder: READ_PROCARGS, READ_PROCENV, OSI_PROC_EXE
 * and READ_PTR_ARRAY answer NUL-terminated text in response->data
 * (READ_PROCARGS has turned the NULs between arguments into spaces;
 * READ_PROCENV keeps them: split each entry at its FIRST '='), and
 * KALLSYMS_LOOKUP (0 = unknown), EXEC (wait status or -errno), WRITE_FILE
 * (bytes written) and COPY_BUF_GUEST (the buffer's address) answer READ_NUM
 * with the value in response->size.
 *
 * COPY_BUF_GUEST of more than one region: send size = the total length with
 * command->flags = PORTAL_COMMAND_TOTAL_SIZE (without it the size is clamped
 * to the region and the guest allocates only that) and data = the first
 * conversation->region_size bytes; then WRITE the rest at the answered
 * address plus the offset, one region a command. The guest never frees the
 * buffer.
 */

#ifdef __cplusplus
}
#endif

#endif /* PORTAL_OPERATIONS_H */
