/* Fork detection: a child forked from a process that loaded the library
 * has one thread and a broken Go runtime, so every call there must return
 * GWIPC_E_FORKED before touching the runtime (guard.c). */
#include <pthread.h>

#include "capi.h"

int capi_forked_flag;

static void capi_in_child(void) { capi_forked_flag = 1; }

__attribute__((constructor)) static void capi_watch_fork(void) {
	pthread_atfork(NULL, NULL, capi_in_child);
}
