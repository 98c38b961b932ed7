/* being written (issue 4) */
#include <criterion/criterion.h>
