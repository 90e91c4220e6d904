# pg_dialer: PGXS build, plus `make test` (whole suite on a throwaway cluster), `make demo`,
# `make installcheck` (pg_regress against a running server), `make dist` (the PGXN zip and a
# tarball) and `make deb` (the Debian package postgresql-15-pg-dialer).

EXTENSION   = pg_dialer
EXTVERSION  = 0.2.0
MODULE_big  = pg_dialer
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# sql/install/ holds what CREATE EXTENSION and ALTER EXTENSION UPDATE run: the install script
# of the current version, assembled from the readable parts in sql/install/parts/ in
# file-name order; the install scripts of released versions, kept exactly as released
# (sql/install/pg_dialer--0.1.0.sql); and the update script from each release to the next
# (sql/install/pg_dialer--0.1.0--0.2.0.sql, written by `make update-script`).  Its data/ holds
# the data a part is generated from, its tools/ the update script's generator.
INSTALL_DIR = sql/install
SQL_PARTS   = $(sort $(wildcard $(INSTALL_DIR)/parts/*.sql))
DATA_built  = $(INSTALL_DIR)/$(EXTENSION)--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard $(INSTALL_DIR)/$(EXTENSION)--*.sql))

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags 2>/dev/null) -DPG_DIALER_VERSION=\"$(EXTVERSION)\"
SHLIB_LINK  = $(shell curl-config --libs 2>/dev/null || echo -lcurl)

# sql/*.sql are the pg_regress inputs, expected/*.out their outputs (the PGXS pair).
# test/run_all.sh runs them against its throwaway cluster; `make installcheck` runs them the PGXS way against a running server where
# pg_dialer is installed and preloaded (shared_preload_libraries), as a superuser: pg_regress
# creates (and first drops) the database dialer_regress there.  Point it at the server with
# the usual PGHOST, PGPORT and PGUSER.  The tests need no worker for that database.
REGRESS     = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))

PG_CONFIG  ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS       := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

# The C code uses PostgreSQL 15's internal APIs (META.json says so too): refuse another major
# version at once rather than with compiler errors.  `make dist` needs no server tree.
PG_MAJOR   := $(shell $(PG_CONFIG) --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
ifneq ($(filter-out dist,$(or $(MAKECMDGOALS),all)),)
ifneq ($(PG_MAJOR),)
ifneq ($(PG_MAJOR),15)
$(error pg_dialer builds on PostgreSQL 15 only, and $(PG_CONFIG) is PostgreSQL $(PG_MAJOR))
endif
endif
endif

# On a fresh machine PGXS is not installed yet: `make test` and `make demo` still work,
# because their scripts install what is missing first and then build.
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
# the database pg_regress creates (PGXS's own default, contrib_regression, set by the include
# above, would change the database name in the expected outputs' warnings)
CONTRIB_TESTDB = dialer_regress
endif

$(DATA_built): $(SQL_PARTS)
	cat $^ > $@

# Every object is rebuilt when a header changes (PGXS tracks no header dependencies unless the
# server was configured with --enable-depend): an object compiled against an older layout of a
# shared struct would read other fields than the rest of the library.
$(OBJS): $(wildcard src/*.h)

# The update script from the last release to this version is written, never edited by hand:
# from the two install scripts and the hand-written statements beside the tool.
LAST_RELEASE = 0.1.0
UPDATE_SCRIPT = $(INSTALL_DIR)/$(EXTENSION)--$(LAST_RELEASE)--$(EXTVERSION).sql
update-script: $(DATA_built)
	python3 $(INSTALL_DIR)/tools/draft_update.py $(INSTALL_DIR)/$(EXTENSION)--$(LAST_RELEASE).sql $< $(UPDATE_SCRIPT) \
		$(INSTALL_DIR)/tools/$(EXTENSION)--$(LAST_RELEASE)--$(EXTVERSION).hand.sql

.PHONY: test demo bench dist deb update-script
test:
	bash test/run_all.sh

# make demo KEEP=1: the dashboard too, and everything stays up until Ctrl-C
demo:
	DIALER_DEMO_KEEP=$(if $(filter 1 yes true,$(KEEP)),1,0) bash test/demo.sh

bench:
	bash bench/run.sh

# The distribution: the committed tree of HEAD (git archive), as pg_dialer-VERSION.zip (the
# PGXN archive) and pg_dialer-VERSION.tar.gz (the same files).
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(EXTVERSION)/ -o $(EXTENSION)-$(EXTVERSION).zip HEAD
	git archive --format tar.gz --prefix=$(EXTENSION)-$(EXTVERSION)/ -o $(EXTENSION)-$(EXTVERSION).tar.gz HEAD

# The Debian package postgresql-15-pg-dialer, built by dpkg-buildpackage with debian/ (which
# uses pg_buildext, as Debian's PostgreSQL extension packages do) from a copy of the source:
# in a git checkout, the working tree's files that git does not ignore, as they are now (read
# through a temporary index, so git's own index is left alone); elsewhere (an unpacked dist
# tarball) every file.  The build runs the pg_regress tests first, on a temporary cluster that
# loads the library just built from the package's directory; that cluster runs as the user
# postgres, which must be able to read it, so the copy is built in a directory of its own under
# /tmp that everyone may enter (a checkout in /root, say, is closed to postgres).  The .deb is
# left in build/ with the build's .changes and .buildinfo.  DEB_BUILD_OPTIONS=nocheck skips the
# tests.
DEB_DIR = build
deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		cp "$$(git rev-parse --git-path index)" $(DEB_DIR)/index && \
		GIT_INDEX_FILE=$(DEB_DIR)/index git add -A && \
		git archive --format=tar -o $(DEB_DIR)/source.tar "$$(GIT_INDEX_FILE=$(DEB_DIR)/index git write-tree)"; \
	else \
		tar -c -f $(DEB_DIR)/source.tar --exclude=./$(DEB_DIR) --exclude=./node_modules .; \
	fi
	rm -f $(DEB_DIR)/index
	top=$$(mktemp -d /tmp/pg-dialer-deb.XXXXXX) && chmod 755 "$$top" && \
	mkdir "$$top/pg-dialer-$(EXTVERSION)" && \
	tar -x -f $(DEB_DIR)/source.tar -C "$$top/pg-dialer-$(EXTVERSION)" && \
	(cd "$$top/pg-dialer-$(EXTVERSION)" && dpkg-buildpackage --build=binary --no-sign); \
	rc=$$?; \
	cp "$$top"/*.deb "$$top"/*.changes "$$top"/*.buildinfo $(DEB_DIR)/ 2>/dev/null; \
	rm -rf "$$top" $(DEB_DIR)/source.tar; \
	exit $$rc
	@ls -1 $(DEB_DIR)/*.deb
