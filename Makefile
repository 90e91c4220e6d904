# pg_dialer: PGXS build, plus `make test` (whole suite on a throwaway cluster) and `make demo`.

EXTENSION   = pg_dialer
EXTVERSION  = 0.1.0
MODULE_big  = pg_dialer
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script is assembled from the readable parts in sql/parts/, in file-name order.
SQL_PARTS   = $(sort $(wildcard sql/parts/*.sql))
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags 2>/dev/null)
SHLIB_LINK  = $(shell curl-config --libs 2>/dev/null || echo -lcurl)

# pg_regress inputs live in sql/, outputs in expected/; run by test/run_all.sh against the
# harness cluster (they need the library preloaded, so there is no plain `installcheck` here).
REGRESS     = $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(sort $(wildcard sql/*.sql))))

PG_CONFIG  ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS       := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

# On a fresh machine PGXS is not installed yet: `make test` and `make demo` still work,
# because their scripts install what is missing first and then build.
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
endif

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

.PHONY: test demo bench
test:
	bash test/run_all.sh

demo:
	bash test/demo.sh

bench:
	bash bench/run.sh
