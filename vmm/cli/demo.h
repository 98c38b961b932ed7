/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef VMM_DEMO_H
#define VMM_DEMO_H
int demo_main(int argc, char **argv);
#endif
