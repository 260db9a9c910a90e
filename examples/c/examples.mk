# examples/c/examples.mk - C examples, C tests (cmocka), install and pkg-config.
#
# Included by the top-level Makefile, which defines BUILD and the rule that
# makes $(BUILD)/libgwipc.so.1 and its symlink $(BUILD)/libgwipc.so (and,
# for c-test-cgocheck2, the same under $(GWIPC_CGOCHECK2_DIR)).
#
#   make c-examples          the examples into $(BUILD)/examples/
#   make c-test              the C test suite (needs libcmocka-dev)
#   make c-test-cgocheck2    the suite again against a GOEXPERIMENT=cgocheck2 library
#   make install [PREFIX=/usr/local] [DESTDIR=]
#                            the library, the header and gwipc.pc
#
# Hooks the top-level Makefile adds (besides `-include examples/c/examples.mk`):
#   build: c-examples
#   test: c-test c-test-cgocheck2

BUILD          ?= build
PREFIX         ?= /usr/local
DESTDIR        ?=
LIBDIR         ?= $(PREFIX)/lib
INCLUDEDIR     ?= $(PREFIX)/include
PKGCONFIGDIR   ?= $(LIBDIR)/pkgconfig
GWIPC_CGOCHECK2_DIR ?= $(BUILD)/cgocheck2
CXX            ?= g++

GWIPC_VERSION := $(shell sed -n 's/^\#define GWIPC_VERSION_STRING "\(.*\)"/\1/p' include/gwipc.h)
GWIPC_LIB     := $(BUILD)/libgwipc.so
C_DIR         := examples/c
C_STRICT      := -std=c99 -Wall -Wextra -Werror -pedantic
C_EX_CFLAGS   := $(C_STRICT) -O2 -g -Iinclude
# $ORIGIN/..: the binaries in $(BUILD)/examples and $(BUILD)/c-tests find
# $(BUILD)/libgwipc.so.1 wherever the tree is (LD_LIBRARY_PATH still wins,
# which is how c-test-cgocheck2 swaps the library).
C_EX_LDLIBS   := -L$(BUILD) -Wl,-rpath,'$$ORIGIN/..' -lgwipc -pthread

C_EXAMPLES     := sensor_daemon consumer method_server method_client status_query
C_EXAMPLE_BINS := $(addprefix $(BUILD)/examples/,$(C_EXAMPLES))

C_TEST_DIR     := $(BUILD)/c-tests
C_TESTS        := test_abi test_misuse test_e2e test_threads test_fork test_signals test_go test_examples
C_TEST_BINS    := $(addprefix $(C_TEST_DIR)/,$(C_TESTS))
C_TEST_HELPERS := $(C_TEST_DIR)/gwt_peer $(C_TEST_DIR)/sigprobe
C_TEST_CFLAGS  := $(C_EX_CFLAGS) -I$(C_DIR)/tests -I$(C_DIR) \
                  -DGWT_BUILD_DIR_DEFAULT='"$(abspath $(BUILD))"' -DGWT_SRC_DIR='"$(abspath .)"'
CMOCKA_LIBS    := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

.PHONY: c-examples c-test-build c-test c-test-cgocheck2 c-header-check install uninstall

c-examples: $(C_EXAMPLE_BINS)

$(BUILD)/examples/%: $(C_DIR)/%.c $(wildcard $(C_DIR)/*.h) include/gwipc.h $(GWIPC_LIB)
	@mkdir -p $(@D)
	$(CC) $(C_EX_CFLAGS) -o $@ $< $(C_EX_LDLIBS)

# ---- tests -------------------------------------------------------------------

$(C_TEST_DIR)/util.o: $(C_DIR)/tests/util.c $(C_DIR)/tests/util.h include/gwipc.h
	@mkdir -p $(@D)
	$(CC) $(C_TEST_CFLAGS) -c -o $@ $<

# Generated: takes the address of every function the header declares.
$(C_TEST_DIR)/abi_all.c: include/gwipc.h $(C_DIR)/tests/gen_abi.sh
	@mkdir -p $(@D)
	sh $(C_DIR)/tests/gen_abi.sh include/gwipc.h > $@

$(C_TEST_DIR)/test_abi: $(C_DIR)/tests/test_abi.c $(C_TEST_DIR)/abi_all.c $(C_TEST_DIR)/util.o $(GWIPC_LIB)
	$(CC) $(C_TEST_CFLAGS) -o $@ $< $(C_TEST_DIR)/abi_all.c $(C_TEST_DIR)/util.o $(C_EX_LDLIBS) $(CMOCKA_LIBS) -ldl

$(C_TEST_DIR)/test_%: $(C_DIR)/tests/test_%.c $(C_TEST_DIR)/util.o $(C_DIR)/tests/util.h $(GWIPC_LIB)
	$(CC) $(C_TEST_CFLAGS) -o $@ $< $(C_TEST_DIR)/util.o $(C_EX_LDLIBS) $(CMOCKA_LIBS)

$(C_TEST_DIR)/gwt_peer: $(C_DIR)/tests/gwt_peer.c include/gwipc.h $(GWIPC_LIB)
	@mkdir -p $(@D)
	$(CC) $(C_TEST_CFLAGS) -o $@ $< $(C_EX_LDLIBS)

# Not linked against libgwipc: it dlopen()s it, to look at the process
# before and after the library (and its Go runtime) is loaded.
$(C_TEST_DIR)/sigprobe: $(C_DIR)/tests/sigprobe.c include/gwipc.h
	@mkdir -p $(@D)
	$(CC) $(C_TEST_CFLAGS) -o $@ $< -Wl,-rpath,'$$ORIGIN/..' -ldl -pthread

# The header compiles alone as strict C99 and as C++17.
c-header-check:
	$(CC) $(C_STRICT) -Iinclude -fsyntax-only -x c $(C_DIR)/tests/header_check.c
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -fsyntax-only -x c++ $(C_DIR)/tests/header_check.c

c-test-build: c-examples $(C_TEST_BINS) $(C_TEST_HELPERS)

# run_tests.sh runs every test binary under a time limit (and the header
# check and the install test) and fails if any failed. The Go tool
# ($(BUILD)/gwipc) plays the Go peer in test_go.
c-test: c-test-build c-header-check $(BUILD)/gwipc
	@rc=0; GWT_BUILD_DIR=$(abspath $(BUILD)) sh $(C_DIR)/tests/run_tests.sh $(C_TEST_DIR) $(C_TESTS) || rc=1; \
	$(MAKE) --no-print-directory c-install-test || rc=1; exit $$rc

# The same binaries against the cgocheck2 build: LD_LIBRARY_PATH beats the
# binaries' RUNPATH, and test_abi checks which file was really loaded.
c-test-cgocheck2: c-test-build $(GWIPC_CGOCHECK2_DIR)/libgwipc.so $(BUILD)/gwipc
	GWT_BUILD_DIR=$(abspath $(BUILD)) LD_LIBRARY_PATH=$(abspath $(GWIPC_CGOCHECK2_DIR)) \
	GWT_EXPECT_LIB=$(abspath $(GWIPC_CGOCHECK2_DIR))/libgwipc.so.1 \
	sh $(C_DIR)/tests/run_tests.sh $(C_TEST_DIR) $(C_TESTS)

# ---- install and pkg-config -------------------------------------------------

$(BUILD)/gwipc.pc: $(C_DIR)/gwipc.pc.in include/gwipc.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(GWIPC_VERSION)|g' $< > $@

# Rebuilt every time: PREFIX may differ from the last install.
.PHONY: $(BUILD)/gwipc.pc

install: $(GWIPC_LIB) $(BUILD)/gwipc.pc
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 0755 $(BUILD)/libgwipc.so.1 $(DESTDIR)$(LIBDIR)/libgwipc.so.1
	ln -sf libgwipc.so.1 $(DESTDIR)$(LIBDIR)/libgwipc.so
	install -m 0644 include/gwipc.h $(DESTDIR)$(INCLUDEDIR)/gwipc.h
	install -m 0644 $(BUILD)/gwipc.pc $(DESTDIR)$(PKGCONFIGDIR)/gwipc.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libgwipc.so.1 $(DESTDIR)$(LIBDIR)/libgwipc.so \
	      $(DESTDIR)$(INCLUDEDIR)/gwipc.h $(DESTDIR)$(PKGCONFIGDIR)/gwipc.pc

# Installs into a temporary DESTDIR, builds an example there with
# `pkg-config --cflags --libs gwipc` and runs it against the installed copy.
.PHONY: c-install-test
c-install-test: $(GWIPC_LIB)
	sh $(C_DIR)/tests/install_test.sh "$(MAKE)" "$(CC)"
