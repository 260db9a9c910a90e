/* The C-only part of the API: error texts and names, generated from the
 * header's GWIPC_ERRORS list, versions, and gwipc_free. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "capi.h"

#define CAPI_TEXT_(name, value, text) \
	case value:                   \
		return text;
const char *gwipc_strerror(int code) {
	switch (code) { GWIPC_ERRORS(CAPI_TEXT_) }
	return "unknown error";
}

#define CAPI_NAME_(name, value, text) \
	case value:                   \
		return #name;
const char *gwipc_error_name(int code) {
	switch (code) { GWIPC_ERRORS(CAPI_NAME_) }
	return "GWIPC_E_UNKNOWN";
}

unsigned gwipc_version_number(void) { return GWIPC_VERSION_NUMBER; }

const char *gwipc_version(void) { return GWIPC_VERSION_STRING; }

void gwipc_free(void *p) { free(p); }

void capi_set_error(gwipc_error *e, int code, int32_t app_code, uint16_t status, int32_t sys_errno,
		    const char *msg, size_t len) {
	/* Only the part struct_size covers is written: an older, smaller
	 * gwipc_error keeps its size, and nothing past it is touched. */
	size_t n = e->struct_size < sizeof *e ? e->struct_size : sizeof *e;
	size_t off = offsetof(gwipc_error, message);
	size_t cap = n > off ? n - off : 0;
	gwipc_error v;
	memset(&v, 0, sizeof v);
	v.code = code;
	v.app_code = app_code;
	v.status = status;
	v.sys_errno = sys_errno;
	if (cap > 0) {
		if (len >= cap) {
			len = cap - 1;
			while (len > 0 && ((unsigned char)msg[len] & 0xC0) == 0x80)
				len--; /* never cut a UTF-8 sequence */
		}
		if (len > 0)
			memcpy(v.message, msg, len);
	}
	if (n > sizeof v.struct_size)
		memcpy((char *)e + sizeof v.struct_size, (char *)&v + sizeof v.struct_size, n - sizeof v.struct_size);
}

void capi_forked_error(gwipc_error *e) {
	static const char msg[] = "called in a forked child";
	if (e)
		capi_set_error(e, GWIPC_E_FORKED, 0, 0, 0, msg, sizeof msg - 1);
}
