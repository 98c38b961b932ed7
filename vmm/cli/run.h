#ifndef VMM_RUN_H
#define VMM_RUN_H
/* `vmm run`; argv[0] is "run". */
int run_main(int argc, char **argv);
/* The whole command line, for --on-reboot restart (set by main). */
extern char **vmm_argv;
#endif
