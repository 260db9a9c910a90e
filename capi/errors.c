/* The C-only part of the API: error texts and names, generated from the
 * header's GWIPC_ERRORS list, versions, and gwipc_free. */
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
	e->code = code;
	e->app_code = app_code;
	e->status = status;
	e->reserved_ = 0;
	e->sys_errno = sys_errno;
	if (len >= sizeof e->message) {
		len = sizeof e->message - 1;
		while (len > 0 && ((unsigned char)msg[len] & 0xC0) == 0x80)
			len--; /* never cut a UTF-8 sequence */
	}
	if (len > 0)
		memcpy(e->message, msg, len);
	e->message[len] = 0;
}
