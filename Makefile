# pg_opsdata — PGXS build.
#
#   make            build the library and the install script
#   make install    install into the PostgreSQL found by $(PG_CONFIG)
#   make demo       install what is missing, build, install, run the demo
#   make test       install what is missing, build, install, run every suite
#   make installcheck
#                   the pg_regress tests against the installed server that the
#                   PG* environment variables name, which preloads pg_opsdata
#   make deps       install the Debian packages the build and tests need
#   make format     reformat the C sources with clang-format

EXTENSION   = pg_opsdata
EXTVERSION  = 0.2
MODULE_big  = pg_opsdata

# Areas, in the order their SQL is assembled into the install script.
# Each area keeps its C and its SQL side by side in src/<area>/.
AREAS       = core worker partition audit metrics learning

C_SOURCES   = $(sort $(wildcard $(addsuffix /*.c,$(addprefix src/,$(AREAS)))))
OBJS        = $(C_SOURCES:.c=.o)

# src/core/finish.sql runs last: health, grants and checks that need every
# area's objects to exist.
SQL_PIECES  = $(filter-out src/core/finish.sql, \
                $(foreach a,$(AREAS),$(sort $(wildcard src/$(a)/*.sql)))) \
              src/core/finish.sql
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
# upgrade/ holds the install scripts of released versions, frozen as they
# shipped, and one update script per release step.  A released file is
# never edited; the step to the version under development
# ($(EXTVERSION)) gains every schema change made to src/ in the same commit.
DATA        = $(wildcard upgrade/$(EXTENSION)--*.sql)

PG_CONFIG  ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PG_CPPFLAGS = -I$(srcdir)/src -DOPSDATA_VERSION='"$(EXTVERSION)"'
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter

EXTRA_CLEAN = $(DATA_built) $(wildcard test/modules/*/*.o test/modules/*/*.so test/modules/*/*.bc)

# make installcheck (PGXS): the tests of sql/ against expected/, run by
# pg_regress in a database it makes (UTF8, C locale, whatever the server's
# defaults) on an installed server that preloads pg_opsdata.  The
# *_nopreload tests need a server without it: test/run runs them, with
# every other suite, on servers of its own.
REGRESS      = $(filter-out %_nopreload,$(sort $(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --encoding=UTF8 --no-locale

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
# Without pg_config only the set-up targets work; they install it first.
all install:
	@echo "pg_config was not found: run \"make deps\" (or \"make demo\" / \"make test\") first" >&2; exit 1
endif

$(DATA_built): $(SQL_PIECES) Makefile
	@{ printf -- '-- pg_opsdata %s install script, assembled from src/<area>/*.sql.\n' '$(EXTVERSION)'; \
	   printf '\\echo Use "CREATE EXTENSION pg_opsdata" to load this file. \\quit\n'; \
	   for f in $(SQL_PIECES); do printf '\n-- %s\n' "$$f"; cat "$$f"; done; } > $@

$(OBJS): $(wildcard src/*/*.h)
# The library's version is compiled in.
src/core/health.o: Makefile

.PHONY: deps demo test format

deps:
	@./test/deps

demo: deps
	$(MAKE) all
	$(MAKE) install
	./demo/run

test: deps
	$(MAKE) all
	$(MAKE) install
	./test/run

format:
	clang-format -i $(C_SOURCES) $(wildcard src/*/*.h test/modules/*/*.[ch])
