/*
 * test_abi - the header and the library agree.
 *
 * abi_all.c (generated from include/gwipc.h) takes the address of every
 * declared function, so this binary does not link if one is missing. The
 * tests then check the other direction (nothing else exported), the version
 * and error tables, and which library file was loaded.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi_all.h"
#include "util.h"

#ifndef GWT_SRC_DIR
#define GWT_SRC_DIR "."
#endif

/* The path of the libgwipc this process mapped (from /proc/self/maps). */
static void loaded_library(char *buf, size_t cap)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    buf[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (p && strstr(p, "/libgwipc.so")) {
            p[strcspn(p, "\n")] = '\0';
            snprintf(buf, cap, "%s", p);
            break;
        }
    }
    if (f)
        fclose(f);
}

/* Every declared function is linked (else no binary), non-NULL, and found
 * by dlsym; the generator saw every GWIPC_API declaration. */
static void test_every_declared_function_is_exported(void)
{
    FILE *h = fopen(GWT_SRC_DIR "/include/gwipc.h", "r");
    GWT_CHECK(h != NULL, "cannot open %s/include/gwipc.h", GWT_SRC_DIR);
    char line[1024];
    size_t declared = 0;
    while (fgets(line, sizeof line, h))
        declared += strncmp(line, "GWIPC_API ", 10) == 0;
    fclose(h);
    GWT_CHECK(declared == gwt_abi_count, "the header declares %zu functions, abi_all.c has %zu", declared,
              gwt_abi_count);
    for (size_t i = 0; i < gwt_abi_count; i++) {
        GWT_CHECK(gwt_abi_functions[i].fn != NULL, "%s is NULL", gwt_abi_functions[i].name);
        GWT_CHECK(dlsym(RTLD_DEFAULT, gwt_abi_functions[i].name) != NULL, "dlsym(%s) failed",
                  gwt_abi_functions[i].name);
    }
}

/* "This header is the whole API: anything not declared here is not part of
 * it." The library should not export Go's internals (crosscall2, _cgo_*...):
 * a version script keeps the dynamic symbol table to the header's names. */
static void test_nothing_else_is_exported(void)
{
    char lib[4096], cmd[4200], sym[512];
    loaded_library(lib, sizeof lib);
    GWT_CHECK(lib[0], "libgwipc is not in /proc/self/maps");
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", lib);
    FILE *p = popen(cmd, "r");
    GWT_CHECK(p != NULL, "popen nm");
    char extra[2048] = "";
    size_t n_extra = 0, n_seen = 0;
    char type;
    while (fscanf(p, "%*s %c %511s", &type, sym) == 2) {
        if (type != 'T' && type != 'D' && type != 'B' && type != 'W' && type != 'R')
            continue; /* only global definitions */
        char *at = strchr(sym, '@');
        if (at)
            *at = '\0'; /* gwipc_free@@GWIPC_1.0 */
        int known = 0;
        for (size_t i = 0; i < gwt_abi_count && !known; i++)
            known = strcmp(sym, gwt_abi_functions[i].name) == 0;
        n_seen += known;
        if (!known && strncmp(sym, "GWIPC_", 6) != 0) { /* version nodes are absolute symbols */
            if (n_extra++ < 12 && strlen(extra) + strlen(sym) + 2 < sizeof extra) {
                strcat(extra, " ");
                strcat(extra, sym);
            }
        }
    }
    pclose(p);
    GWT_CHECK(n_seen >= gwt_abi_count, "nm saw only %zu of the %zu functions in %s", n_seen, gwt_abi_count, lib);
    GWT_CHECK(n_extra == 0, "%s exports %zu symbols the header does not declare:%s%s", lib, n_extra, extra,
              n_extra > 12 ? " ..." : "");
}

/* "The library is libgwipc.so.1": its SONAME. */
static void test_soname(void)
{
    char lib[4096], cmd[4200], out[512] = "";
    loaded_library(lib, sizeof lib);
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | sed -n 's/.*Library soname: \\[\\(.*\\)\\]/\\1/p'", lib);
    FILE *p = popen(cmd, "r");
    GWT_CHECK(p && fgets(out, sizeof out, p), "readelf failed on %s", lib);
    pclose(p);
    out[strcspn(out, "\n")] = '\0';
    assert_string_equal(out, "libgwipc.so.1");
}

/* "compare with the header's macro to catch a mismatch" */
static void test_version(void)
{
    assert_int_equal(gwipc_version_number(), GWIPC_VERSION_NUMBER);
    assert_string_equal(gwipc_version(), GWIPC_VERSION_STRING);
    assert_ptr_equal(gwipc_version(), gwipc_version()); /* static storage */
    assert_true(GWIPC_AT_LEAST_VERSION(0, 2, 0));
    assert_false(GWIPC_AT_LEAST_VERSION(0, 2, 1));
}

/* Every code's text and name as GWIPC_ERRORS lists them; static storage;
 * unknown codes get text too. */
static void test_error_table(void)
{
#define CHECK_CODE(name, value, text)                                                \
    assert_int_equal(name, value);                                                 \
    assert_string_equal(gwipc_strerror(value), text);                              \
    assert_string_equal(gwipc_error_name(value), #name);                           \
    assert_ptr_equal(gwipc_strerror(value), gwipc_strerror(value));                \
    assert_ptr_equal(gwipc_error_name(value), gwipc_error_name(value));
    GWIPC_ERRORS(CHECK_CODE)
#undef CHECK_CODE
    static const int unknown[] = {1, -30, -39, -43, 12345, -100000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = gwipc_strerror(unknown[i]);
        GWT_CHECK(s != NULL && s[0], "gwipc_strerror(%d) is NULL or empty", unknown[i]);
        assert_string_equal(gwipc_error_name(unknown[i]), "GWIPC_E_UNKNOWN");
    }
}

/* When GWT_EXPECT_LIB is set (make c-test-cgocheck2), this process must have
 * loaded that file, not the default build. */
static void test_loaded_expected_library(void)
{
    char lib[4096], want[4096];
    const char *expect = getenv("GWT_EXPECT_LIB");
    loaded_library(lib, sizeof lib);
    print_message("libgwipc loaded from %s\n", lib);
    if (!expect || !*expect)
        return;
    GWT_CHECK(realpath(expect, want) != NULL, "GWT_EXPECT_LIB=%s does not exist", expect);
    assert_string_equal(lib, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_every_declared_function_is_exported),
        GWT_TEST(test_nothing_else_is_exported),
        GWT_TEST(test_soname),
        GWT_TEST(test_version),
        GWT_TEST(test_error_table),
        GWT_TEST(test_loaded_expected_library),
    };
    return GWT_RUN(tests);
}
