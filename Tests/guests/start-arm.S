/* start-arm.S - entry for qemu-system-arm -M virt -cpu cortex-a15 -kernel
 * ELF: the CPU starts here in SVC mode, A32 state. Every exception vector
 * (VBAR) reports and exits. */
    .syntax unified
    .arm
    .section .text.boot, "ax"
    .globl _start
_start:
    ldr sp, =__stack_top
    ldr r0, =vectors
    mcr p15, 0, r0, c12, c0, 0        /* VBAR */
    isb
    bl guest_main
1:  wfi
    b 1b

    .text
    .balign 32
vectors:
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    b vector\n
    .endr
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
vector\n:
    mov r1, #\n
    b exception
    .endr
exception:
    mov r0, lr                        /* the exception's return address */
    ldr sp, =__exc_stack_top
    bl guest_exception
2:  b 2b
