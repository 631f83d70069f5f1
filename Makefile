# cowfs: build, test and demo. `make demo` and `make test` are all a newcomer needs.
#
# The venv is built from the system python (/usr/bin/python3): the tests run the filesystem as an
# unprivileged user, who cannot execute a python living under /root. It lives in ./.venv when
# every directory above the checkout is traversable by others, else in
# /var/tmp/cowfs-venv-<hash of the checkout path> (override with VENV=...). `make venv` prints it.

SHELL := /bin/bash
PY ?= /usr/bin/python3
TEST_USER ?= cowfs-test
# hard cap for the whole pytest run, seconds (each mount/op has its own, shorter timeout)
TEST_TIMEOUT ?= 1800
PYTEST_ARGS ?=
# docker-registry: the real OCI registry tests/test_registry.py and bench/registry.py start
# npm (with node; `cowfs snapshot build --kind npm`, tests/test_snapshot_npm.py, bench/npmcache.py)
# is installed by `deps` only when missing: a node from elsewhere brings its own npm
APT_PACKAGES := fuse3 libfuse3-dev pkg-config attr fuse-overlayfs stress-ng gcc python3-dev python3-venv \
  strace docker-registry zstd
# how long `make fuzz` runs the differential fuzzer, and its seed (empty: a fresh one)
FUZZ_SECONDS ?= 600
SEED ?=
# how long `make soak` runs (tests/soak.py), seconds; SEED above picks its seed too
SECONDS ?= 600
# extra arguments for `make soak`, e.g. SOAK_ARGS="--procs 4 --interval 5 10"
SOAK_ARGS ?=
# extra arguments for `make crash` (tests/crash.py), e.g. CRASH_ARGS="--scenario fsync -v"
CRASH_ARGS ?=
# extra arguments for `python -m bench`, e.g. BENCH_ARGS="--only walk --runs 3"
BENCH_ARGS ?=
# extra arguments for `python -m bench.perreq`, e.g. PERREQ_ARGS="--quick --ops listdir-warm"
PERREQ_ARGS ?=
# extra arguments for `python -m bench.pipcache`, e.g. PIPCACHE_ARGS="--rounds 3 --variants cache,empty"
PIPCACHE_ARGS ?=
# extra arguments for `python -m bench.npmcache`, e.g. NPMCACHE_ARGS="--rounds 3 --variants offline,empty"
NPMCACHE_ARGS ?=

# ./.venv if others can reach it, else a world-readable place outside the checkout
ifndef VENV
VENV := $(shell d='$(CURDIR)'; ok=1; while [ "$$d" != / ]; do \
	  [ $$(( 0$$(stat -Lc %a "$$d") % 2 )) = 1 ] || ok=0; d=$$(dirname "$$d"); done; \
	  if [ $$ok = 1 ]; then echo '$(CURDIR)/.venv'; \
	  else echo /var/tmp/cowfs-venv-$$(printf %s '$(CURDIR)' | md5sum | cut -c1-10); fi)
endif
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo 1)

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all deps venv test demo clean testenv fuzz crash soak bench bench-perreq bench-pipcache \
  bench-npmcache

all: venv

# --- system packages -------------------------------------------------------------------------
deps:
	@missing=""; \
	command -v fusermount3 >/dev/null || missing="$$missing fuse3"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	{ command -v pkg-config >/dev/null && pkg-config --exists fuse3; } || missing="$$missing libfuse3-dev"; \
	command -v setfattr >/dev/null || missing="$$missing attr"; \
	command -v fuse-overlayfs >/dev/null || missing="$$missing fuse-overlayfs"; \
	command -v stress-ng >/dev/null || missing="$$missing stress-ng"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ -x /usr/bin/docker-registry ] || missing="$$missing docker-registry"; \
	command -v zstd >/dev/null || missing="$$missing zstd"; \
	{ command -v npm >/dev/null && command -v node >/dev/null; } || missing="$$missing npm"; \
	[ -f "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)/Python.h" ] || missing="$$missing python3-dev"; \
	$(PY) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v setpriv >/dev/null && command -v unshare >/dev/null || missing="$$missing util-linux"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "cowfs: missing system packages:$$missing -- as root run: apt-get install -y$$missing"; exit 1; fi; \
	echo "cowfs: installing$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) $$missing

# --- python venv ------------------------------------------------------------------------------
# Dependencies are installed when pyproject.toml changes; the cowfs package itself is reinstalled
# (non-editable, so the venv needs nothing from the checkout) on every `make venv`.
$(VENV)/.deps-stamp: pyproject.toml
	@echo "cowfs: venv in $(VENV)"
	@umask 022; [ -x $(VENV)/bin/python ] || $(PY) -m venv $(VENV)
	@umask 022; $(VENV)/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(["setuptools>=64", "wheel"] + p["dependencies"] + p["optional-dependencies"]["test"]))' > $(VENV)/requirements.txt
	@umask 022; $(VENV)/bin/pip install -q -r $(VENV)/requirements.txt > $(VENV)/pip.log 2>&1 \
	  || { cat $(VENV)/pip.log; exit 1; }
	@touch $@

venv: deps $(VENV)/.deps-stamp
	@umask 022; src=$$(mktemp -d /tmp/cowfs-build.XXXXXX) && \
	  cp -r pyproject.toml README.md cowfs "$$src"/ && \
	  $(VENV)/bin/pip install -q --no-deps --no-build-isolation --force-reinstall "$$src" \
	    > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; rm -rf "$$src"; exit 1; }; \
	  rm -rf "$$src"
	@chmod -R a+rX $(VENV)
	@echo "cowfs: installed into $(VENV) (cowfs = $(VENV)/bin/cowfs)"

# --- tests ------------------------------------------------------------------------------------
# Root prepares what rootless FUSE needs (/dev/fuse 0666, an unprivileged user), then pytest runs
# in a private mount namespace: every mount made by a test vanishes with it, even after a crash.
testenv:
	@if [ "$(IS_ROOT)" != 1 ]; then \
	  echo "cowfs: make test needs root (kernel overlay reference mounts, /dev/fuse, test user)"; exit 1; fi
	@chmod 666 /dev/fuse
	@id -u $(TEST_USER) >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin $(TEST_USER)

test: deps venv testenv
	@cd '$(CURDIR)' && COWFS_TEST_USER=$(TEST_USER) timeout -k 30 $(TEST_TIMEOUT) \
	  unshare -m --propagation private $(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 5 ]; then echo "make test: pytest ran no tests (exit 5): failing"; exit 1; fi; \
	  if [ $$rc = 124 ]; then echo "make test: killed after $(TEST_TIMEOUT) s"; fi; \
	  exit $$rc

# Differential fuzzing against kernel overlayfs for as long as asked; prints ops, divergences, seed.
fuzz: deps venv testenv
	@cd '$(CURDIR)' && COWFS_TEST_USER=$(TEST_USER) unshare -m --propagation private \
	  $(VENV)/bin/python tests/fuzz.py --seconds $(FUZZ_SECONDS) $(if $(SEED),--seed $(SEED))

# Kill at any point: SIGKILL the daemon before every change to the disk of every crash scenario,
# remount and check (tests/crash.py; CI runs a sample in tests/test_crash.py). Prints the kills.
crash: deps venv testenv
	@cd '$(CURDIR)' && COWFS_TEST_USER=$(TEST_USER) timeout -k 30 $(TEST_TIMEOUT) \
	  unshare -m --propagation private $(VENV)/bin/python tests/crash.py $(CRASH_ARGS)

# Soak: several workers mixing every operation on one mount for SECONDS, the daemon SIGKILLed or
# unmounted between operations every 10-20 s and remounted; ends with the merged tree equal to a
# model, the lower unchanged, fsck clean (tests/soak.py; CI runs 2 minutes in tests/test_soak.py).
soak: deps venv testenv
	@cd '$(CURDIR)' && COWFS_TEST_USER=$(TEST_USER) timeout -k 30 $$(( $(SECONDS) + 600 )) \
	  unshare -m --propagation private $(VENV)/bin/python tests/soak.py --seconds $(SECONDS) \
	  $(if $(SEED),--seed $(SEED)) -v $(SOAK_ARGS)

# --- benchmarks -------------------------------------------------------------------------------
# raw dir, kernel overlay, fuse-overlayfs and cowfs side by side (bench/, README "Benchmarks").
# Installs what only the bench needs: fio, the `bench` extra (matplotlib); the wheelhouse is
# downloaded by the bench itself into /var/cache/cowfs-bench.
bench: deps venv testenv
	@command -v fio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio; }
	@$(VENV)/bin/python -c 'import matplotlib' 2>/dev/null || { umask 022; $(VENV)/bin/pip install -q \
	  $$($(VENV)/bin/python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))'); }
	@cd '$(CURDIR)' && $(VENV)/bin/python -m bench $(BENCH_ARGS)

# Per-request micro-benchmark: trivial pyfuse3 fs, cowfs, fuse-overlayfs, kernel overlay
# (bench/perreq.py, README "Benchmarks"); results in bench/results/perreq/.
bench-perreq: deps venv testenv
	@cd '$(CURDIR)' && $(VENV)/bin/python -m bench.perreq $(PERREQ_ARGS)

# pip install of popular packages (bench/pipcache-requirements.txt, from the index) into a fresh
# venv: with a sandbox over a `cowfs snapshot build` snapshot as the pip cache, from its
# wheelhouse offline, and with an empty cache (bench/pipcache.py, README "Snapshots"); results
# in bench/results/pipcache/. Needs the index (PyPI) reachable through pip.
bench-pipcache: deps venv testenv
	@cd '$(CURDIR)' && timeout -k 30 3600 $(VENV)/bin/python -m bench.pipcache $(PIPCACHE_ARGS)

# npm install of popular packages (bench/npmcache-packages.txt) into a fresh project: with a
# sandbox over a `cowfs snapshot build --kind npm` snapshot as ~/.npm (offline, prefer-offline,
# plain) and with an empty cache (bench/npmcache.py, README "Benchmarks"); results in
# bench/results/npmcache/. Needs the npm registry reachable through npm.
bench-npmcache: deps venv testenv
	@cd '$(CURDIR)' && timeout -k 30 3600 $(VENV)/bin/python -m bench.npmcache $(NPMCACHE_ARGS)

# --- demo -------------------------------------------------------------------------------------
demo: deps venv $(if $(IS_ROOT),testenv)
	@if [ "$(IS_ROOT)" = 1 ]; then \
	  unshare -m --propagation private $(VENV)/bin/python tools/demo.py; \
	else $(VENV)/bin/python tools/demo.py; fi

clean:
	rm -rf .venv build *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	@case '$(VENV)' in /var/tmp/cowfs-venv-*) rm -rf '$(VENV)';; esac
