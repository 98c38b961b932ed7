/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * start.S - the entry every vCPU of a test image starts at.
 *
 * The VMM enters here on every vCPU at once, already in 64-bit long mode
 * with an identity map, interrupts off, RDI = boot info, RSI = vCPU index
 * and RSP = the top of this vCPU's 16-aligned stack (testimg.h), so there
 * is nothing to set up: call testimg_start(bi, cpu) in lib.c with the
 * registers as they came.  (The image's ELF note is in lib.c: testimg.h is
 * C, and its constants carry C suffixes.)
 */
	.section .text.start, "ax", @progbits
	.globl _start
	.type _start, @function
_start:
	cld
	xorl	%ebp, %ebp		/* end of the frame-pointer chain */
	andq	$-16, %rsp		/* 16-aligned already; cheap insurance */
	call	testimg_start		/* (RDI = bi, ESI = cpu); never returns */
1:	cli
	hlt
	jmp	1b
	.size _start, . - _start

	.section .note.GNU-stack, "", @progbits
