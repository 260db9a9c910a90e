/* abi_all.h - the table gen_abi.sh generates: every function of gwipc.h. */
#ifndef GWT_ABI_ALL_H
#define GWT_ABI_ALL_H
#include <stddef.h>
typedef void (*gwt_any_fn)(void);
struct gwt_abi_fn {
    const char *name;
    gwt_any_fn fn;
};
extern const struct gwt_abi_fn gwt_abi_functions[];
extern const size_t gwt_abi_count;
#endif
