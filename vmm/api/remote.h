/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * remote.h - `vmm remote`: one control-API request from the command line
 * (remote.c).
 */
#ifndef VMM_REMOTE_H
#define VMM_REMOTE_H

/* argv[0] is "remote".  Exit status: 0 answered 2xx, 1 failed, 2 usage. */
int remote_main(int argc, char **argv);

#endif
