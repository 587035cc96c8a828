/* start-aarch64.S - entry for qemu-system-aarch64 -M virt -kernel ELF: the
 * CPU starts here at EL1. Every exception vector reports and exits. */
    .section .text.boot, "ax"
    .globl _start
_start:
    ldr x0, =__stack_top
    mov sp, x0
    ldr x0, =vectors
    msr vbar_el1, x0
    isb
    bl guest_main
1:  wfi
    b 1b

    .text
    .balign 2048
vectors:
    .rept 16
    .balign 128
    ldr x0, =__exc_stack_top
    mov sp, x0
    mov x0, #0
    mov x1, #0
    bl guest_exception
    .endr
