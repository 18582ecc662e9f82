# The two commands of the README: `make demo` and `make test`. Each sets up everything it needs
# on a fresh Debian / Raspberry Pi OS machine (system packages, a venv, the project) and runs.

VENV ?= .venv
PYTHON ?= python3
SYSTEM_PACKAGES := libzbar0 mosquitto
# PostgreSQL: the tests start throwaway clusters of it for the central ledger (gated ledger --db postgresql://);
# fuse3: the power-cut tests mount a file system that loses unsynced writes (tests/support/cutfs.py)
TEST_SYSTEM_PACKAGES := postgresql fuse3
TEST_PACKAGES := chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: season test-powercut demo test test-venues test-fast lint format test-pretix pretix-venv system test-tools venv wallet-deps bench dist clean

system:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	fi

# Only the tests need a browser (the GT2 wallet page runs in headless Chromium).
test-tools:
	@missing=""; \
	for pkg in $(TEST_SYSTEM_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing test packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	fi
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "installing test packages: $(TEST_PACKAGES)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES) </dev/null \
		|| echo "warning: could not install $(TEST_PACKAGES); the wallet page tests will be skipped"; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[sim,test,central]'
	touch $@

venv: system $(VENV)/.installed

# The wallet page's one dependency, its QR encoder (qrcode-generator, pinned by
# docs/wallet/package-lock.json), from the npm registry into docs/wallet/node_modules/, where
# index.html loads it. The wallet tests in headless Chromium use it; `make dist` ships it.
WALLET := docs/wallet
$(WALLET)/node_modules/.installed: $(WALLET)/package.json $(WALLET)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		echo "installing system packages: npm"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends npm </dev/null; }
	cd $(WALLET) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

wallet-deps: $(WALLET)/node_modules/.installed

test: venv test-tools wallet-deps
	GPIOZERO_PIN_FACTORY=mock $(VENV)/bin/python -m pytest -n 2 -q -m "not slow" $(PYTEST_ARGS)

# The whole-venue rehearsals (tests marked slow: the demo venue on PostgreSQL, the outage, power-cut,
# exits, pretix and replaced-gate venues, the demo's day report in Chromium): about four minutes on
# two cores, apart from `make test` to keep that under ten. CI runs both (.ci/run).
test-venues: venv test-tools wallet-deps
	GPIOZERO_PIN_FACTORY=mock $(VENV)/bin/python -m pytest -n 2 -q -m slow $(PYTEST_ARGS)

# The unit tests only (tests/core, tests/gate, tests/central): no broker, no database server, no
# gate process; under a minute. tests/system starts real processes and is in `make test`.
test-fast: venv
	GPIOZERO_PIN_FACTORY=mock $(VENV)/bin/python -m pytest -n 2 -q tests/core tests/gate tests/central $(PYTEST_ARGS)

# ruff (pinned in the test extra, configured in pyproject.toml): lint rules, import order, format.
# `make lint` changes nothing and fails on what `make format` would change.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff check --select I .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

# pretix (tests/pretix/: a real pretix shop on 127.0.0.1) lives in its own venv: gated never imports it.
PRETIX_VENV ?= .venv-pretix
PRETIX_VERSION ?= 2026.8.0

$(PRETIX_VENV)/.installed:
	$(PYTHON) -m venv $(PRETIX_VENV)
	$(PRETIX_VENV)/bin/pip install -q --upgrade pip
	$(PRETIX_VENV)/bin/pip install -q 'pretix==$(PRETIX_VERSION)'
	touch $@

pretix-venv: system $(PRETIX_VENV)/.installed

test-pretix: venv pretix-venv
	GATED_PRETIX_PYTHON=$(CURDIR)/$(PRETIX_VENV)/bin/python GPIOZERO_PIN_FACTORY=mock \
		$(VENV)/bin/python -m pytest -q tests/pretix $(PYTEST_ARGS)

demo: venv
	@$(VENV)/bin/gated sim sim/scenarios/demo.toml --out demo-out; status=$$?; \
	echo "demo report: $(CURDIR)/demo-out/report.html (report.json and devices/ beside it)"; exit $$status

# Power cuts on the gate's state: 300 under its store doing the daemon's writes, then 30 under the whole
# `gated run`, each at a random moment, each followed by a restart on what survived (tests/support/powercut.py)
test-powercut: venv test-tools
	$(VENV)/bin/python -m tests.support.powercut cuts 300
	$(VENV)/bin/python -m tests.support.powercut daemon-cuts 30

# A season in accelerated time (bench/season.py, issue #25), scaled to a few minutes on two cores
season: venv
	$(VENV)/bin/python bench/season.py --days 100 --scale 0.05 $(SEASON_ARGS)

# Every benchmark runs, even after one misses a target; the exit status says whether any did.
bench: venv
	@missed=""; for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || missed="$$missed $$b"; done; \
	if [ -n "$$missed" ]; then echo "targets missed or failed in:$$missed"; exit 1; fi

# What a gate installs from (docs/install-pi.md): the wheel, and the files that are not Python
# (systemd units, board profiles, the example configuration, Mosquitto site files) in one tarball;
# and the wallet page a venue hosts for its ticket holders (index.html as it is in docs/wallet/,
# with the QR encoder where it loads it). THIRD_PARTY.md says what of others' each one ships.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
dist: venv wallet-deps
	rm -rf dist build
	$(VENV)/bin/pip wheel -q --no-deps -w dist .
	tar -czf dist/gated-$(VERSION)-files.tar.gz LICENSE THIRD_PARTY.md systemd firmware_config
	tar -czf dist/gated-$(VERSION)-wallet.tar.gz LICENSE THIRD_PARTY.md -C $(WALLET) index.html wallet.js \
		node_modules/qrcode-generator/dist/qrcode.js node_modules/qrcode-generator/package.json
	@ls -l dist

clean:
	rm -rf $(VENV) $(PRETIX_VENV) $(WALLET)/node_modules .pytest_cache .hypothesis demo-out dist
