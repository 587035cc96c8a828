// SPDX-License-Identifier: GPL-2.0
/*
 * portal-mapper - a user process of the Linux test guest with memory the
 * host's checks need (built static by scripts/fetch-linux.sh):
 *
 *   - COUNT small mappings with alternating protections, so that they do not
 *     merge (the process has more than 28 mappings: OSI_MAPPINGS pages);
 *   - three pages P, P+4096, P+8192 of which the last is unmapped again,
 *     with the probe path placed at P+4096-8 so that it crosses from the
 *     first page into the second (READ_STR across a page; READ of an
 *     unmapped user address at P+8192).
 *
 * Once /tmp/portal-ready exists (the guest has printed its own view), it
 * calls openat() on the probe path every 200 ms until /tmp/portal-done
 * exists: each call is a syscall-enter event (0x1338) in this process's
 * context, where the host runs its user-memory checks.
 *
 *   portal-mapper COUNT [ARGS...]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROBE_PATH "/tmp/portal-probe-path-across-a-page"

static int exists(const char *path)
{
	struct stat info;

	return stat(path, &info) == 0;
}

static void nap(long milliseconds)
{
	struct timespec pause = { milliseconds / 1000, (milliseconds % 1000) * 1000000L };

	nanosleep(&pause, NULL);
}

int main(int argc, char **argv)
{
	long count = argc > 1 ? atol(argv[1]) : 0;
	char *pages, *probe;
	long i;

	for (i = 0; i < count; i++) {
		int protection = i % 2 ? PROT_READ : PROT_READ | PROT_WRITE;

		if (mmap(NULL, 4096, protection, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
			return 1;
	}
	pages = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pages == MAP_FAILED || munmap(pages + 2 * 4096, 4096) != 0)
		return 1;
	memset(pages, 'p', 2 * 4096);
	probe = pages + 4096 - 8;
	memcpy(probe, PROBE_PATH, sizeof(PROBE_PATH));
	printf("guest: mapper pid=%d probe=0x%lx unmapped=0x%lx\n", getpid(),
	       (unsigned long)probe, (unsigned long)(pages + 2 * 4096));
	fflush(stdout);
	while (!exists("/tmp/portal-ready"))
		nap(100);
	while (!exists("/tmp/portal-done")) {
		int fd = open(probe, O_RDONLY);

		if (fd >= 0)
			close(fd);
		nap(200);
	}
	return 0;
}
