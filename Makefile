# pg_dialer: PGXS build, plus `make test` (whole suite on a throwaway cluster), `make demo`,
# `make installcheck` (pg_regress against a running server), `make dist` (the PGXN zip and a
# tarball) and `make deb` (the Debian package postgresql-15-pg-dialer).

EXTENSION   = pg_dialer
EXTVERSION  = 0.3.0
MODULE_big  = pg_dialer
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# sql/install/ holds what CREATE EXTENSION and ALTER EXTENSION UPDATE run.  Committed, and
# written by hand: the readable parts of the current version's install script (parts/, in
# file-name order), the install scripts of released versions exactly as released (released/),
# the change file of each update (changes/pg_dialer--OLD--NEW.sql: the statements a draft
# cannot know, e.g. ALTER TABLE for a changed table) and the data (data/: libphonenumber's
# map, kept once).  Built by make, never committed: the current install script
# (pg_dialer--VERSION.sql), its part that loads the map (parts/16_number_timezones_data.sql)
# and the update script from each release to the next (pg_dialer--OLD--NEW.sql, written by
# tools/draft_update.py from the two install scripts and the change file).
INSTALL_DIR = sql/install
RELEASES    = 0.1.0 0.2.0
LAST_RELEASE = $(lastword $(RELEASES))
MAP_PART    = $(INSTALL_DIR)/parts/16_number_timezones_data.sql
SQL_PARTS   = $(sort $(wildcard $(INSTALL_DIR)/parts/*.sql) $(MAP_PART))
CURRENT_SCRIPT = $(INSTALL_DIR)/$(EXTENSION)--$(EXTVERSION).sql
# each release to the one after it, the last release to this version
UPDATE_PAIRS = $(join $(RELEASES),$(addprefix --,$(wordlist 2,$(words $(RELEASES)),$(RELEASES)) $(EXTVERSION)))
UPDATE_SCRIPTS = $(foreach p,$(UPDATE_PAIRS),$(INSTALL_DIR)/$(EXTENSION)--$(p).sql)
DATA_built  = $(CURRENT_SCRIPT) $(UPDATE_SCRIPTS)
DATA        = $(wildcard $(INSTALL_DIR)/released/$(EXTENSION)--*.sql)
EXTRA_CLEAN = $(MAP_PART)

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

$(CURRENT_SCRIPT): $(SQL_PARTS)
	cat $^ > $@

$(MAP_PART): $(INSTALL_DIR)/data/number_timezones.txt $(INSTALL_DIR)/tools/number_timezones_part.sh
	sh $(INSTALL_DIR)/tools/number_timezones_part.sh $< > $@.tmp && mv $@.tmp $@

# The install script a version's update starts from: a released one, as released.
release_script = $(INSTALL_DIR)/released/$(EXTENSION)--$(1).sql
# The install script an update leads to: a released one, or this version's, built.
target_script = $(if $(filter $(1),$(EXTVERSION)),$(CURRENT_SCRIPT),$(call release_script,$(1)))

# pg_dialer--OLD--NEW.sql from the two install scripts and changes/pg_dialer--OLD--NEW.sql
define update_rule
$(INSTALL_DIR)/$(EXTENSION)--$(1)--$(2).sql: $(call release_script,$(1)) $(call target_script,$(2)) \
		$(INSTALL_DIR)/changes/$(EXTENSION)--$(1)--$(2).sql $(INSTALL_DIR)/tools/draft_update.py
	python3 $(INSTALL_DIR)/tools/draft_update.py $(call release_script,$(1)) $(call target_script,$(2)) $$@.tmp \
		$(INSTALL_DIR)/changes/$(EXTENSION)--$(1)--$(2).sql && mv $$@.tmp $$@
endef
$(foreach p,$(UPDATE_PAIRS),$(eval $(call update_rule,$(firstword $(subst --, ,$(p))),$(lastword $(subst --, ,$(p))))))

# Every object is rebuilt when a header changes (PGXS tracks no header dependencies unless the
# server was configured with --enable-depend): an object compiled against an older layout of a
# shared struct would read other fields than the rest of the library.
$(OBJS): $(wildcard src/*.h)

# `make update-scripts` builds the install and update scripts alone (make and make install
# build them too).
update-scripts: $(DATA_built)

.PHONY: test demo bench dist deb update-scripts
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
