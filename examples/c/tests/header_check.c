/*
 * header_check.c - include/gwipc.h compiles on its own as strict C99 and as
 * C++17 (make c-header-check compiles this file both ways, -fsyntax-only).
 * Every initialiser macro must fill every field (-Wextra's
 * -Wmissing-field-initializers), and the enums and macros must be usable
 * from C++.
 */
#include <gwipc.h>

#if !GWIPC_AT_LEAST_VERSION(0, 2, 0)
#error "GWIPC_AT_LEAST_VERSION"
#endif

#ifdef __cplusplus
static_assert(GWIPC_VERSION_NUMBER == GWIPC_VERSION_MAJOR * 10000 + GWIPC_VERSION_MINOR * 100 + GWIPC_VERSION_PATCH,
              "version number");
static_assert(GWIPC_E_SIPC_CONNECT == -42, "codes are never renumbered");
#endif

int header_check(void);
int header_check(void)
{
    gwipc_error e = GWIPC_ERROR_INIT;
    gwipc_offer_params o = GWIPC_OFFER_PARAMS_INIT;
    gwipc_proxy_params p = GWIPC_PROXY_PARAMS_INIT;
    gwipc_limits l = GWIPC_LIMITS_INIT;
    gwipc_rule r = GWIPC_RULE_INIT;
    enum gwipc_errcode c = GWIPC_E_TIMEOUT;
    int64_t forever = GWIPC_FOREVER;
    int more = GWIPC_DISPATCH_MORE;
    (void)o, (void)p, (void)l, (void)r;
    return (int)e.struct_size + (int)c + (int)forever + more + GWIPC_LOG_ERROR + GWIPC_ACTION_ALL + GWIPC_CALL_POOL +
           GWIPC_INITIAL_VALUE + GWIPC_SUBSCRIPTION_REFUSED;
}
