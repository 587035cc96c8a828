/* start-i386.S - multiboot (v1) entry for qemu-system-i386 -kernel.
 * QEMU's multiboot loader enters in 32-bit protected mode, flat segments,
 * paging off, interrupts off. */
    .section .multiboot, "a"
    .balign 4
    .long 0x1badb002                  /* magic */
    .long 0                           /* flags: plain ELF load */
    .long -0x1badb002                 /* checksum */

    .section .text.boot, "ax"
    .code32
    .globl _start
_start:
    mov $__stack_top, %esp
    call guest_main
1:  cli
    hlt
    jmp 1b
