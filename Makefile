# metric_anomaly: PGXS build.
#
#   make                build the library
#   make install        install it into the PostgreSQL that pg_config names
#   make test           fresh-machine contract: install what is missing, build,
#                       install, run every pg_regress and TAP test
#   make demo           fresh-machine contract: a throwaway cluster with the
#                       worker, a realistic day of events, the results
#   make installcheck   pg_regress + TAP against an installed build (no set-up)
#   make test-matrix    build and test on PostgreSQL 13, 15, 17, 18 and the 19
#                       beta, each in a chroot of its Debian suite (root)
#   make deb            Debian packages postgresql-NN-metric-anomaly for every
#                       server version installed (needs postgresql-server-dev-all)
#   make fuzz           libFuzzer targets of the pure C parts, each for
#                       FUZZ_SECONDS (clang)
#   make valgrind       the pg_regress suite with the server under valgrind

EXTENSION = metric_anomaly
MODULE_big = metric_anomaly
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/channel/*.c)))
DATA = $(wildcard sql/metric_anomaly--*.sql)

# Every sql/NAME.sql that is not an install or upgrade script is a pg_regress
# test, run on a temporary instance that preloads the library.
REGRESS = $(sort $(basename $(notdir $(filter-out sql/metric_anomaly--%,$(wildcard sql/*.sql)))))
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_regress --temp-config=$(CURDIR)/test/regress.conf
TAP_TESTS = 1

PG_CONFIG ?= pg_config
GD_CFLAGS := $(shell pkg-config --cflags gdlib fontconfig 2>/dev/null)
GD_LIBS := $(shell pkg-config --libs gdlib fontconfig 2>/dev/null || echo -lgd -lfontconfig)
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

# The library's version is the control file's default_version (src/extension.c
# waits while the database holds another).
MA_VERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(CURDIR)/metric_anomaly.control)
PG_CPPFLAGS = -I$(CURDIR)/src $(GD_CFLAGS) $(CURL_CFLAGS) -DMA_LIBRARY_VERSION='"$(MA_VERSION)"'
# -Wall -Wextra, less three warnings that PostgreSQL's own headers and
# macros trip (unused parameters of inline functions, partially initialised
# structs, signed/unsigned mixes in ARR_DATA_PTR).
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK = $(GD_LIBS) $(CURL_LIBS)

EXTRA_CLEAN = tmp_regress tmp_check results regression.diffs regression.out test/tmp

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies (Debian builds without --enable-depend):
# a changed header rebuilds every object, so a stale one never links in.
$(OBJS): $(wildcard src/*.h src/channel/*.h)

# TAP tests live in test/t; PGXS runs prove from $(srcdir) on t/*.pl.
PROVE_TESTS = test/t/*.pl
PG_PROVE_FLAGS += -I $(CURDIR)/test

.PHONY: test demo bench test-matrix deb fuzz valgrind
test:
	bash test/run_tests.sh

demo:
	bash test/demo.sh

bench:
	bash test/bench/all.sh

test-matrix:
	bash test/matrix/run.sh $(MATRIX_ARGS)

# One binary package per server version found, by Debian's pg_buildext;
# the .deb files land in the parent directory.
deb:
	pg_buildext updatecontrol
	DEB_BUILD_OPTIONS="nocheck $(DEB_BUILD_OPTIONS)" dpkg-buildpackage -b -us -uc -Pnocheck

FUZZ_SECONDS ?= 60
fuzz:
	bash test/fuzz/run.sh $(FUZZ_SECONDS)

valgrind:
	bash test/valgrind/run.sh
