# probewatch: `make run` starts the exporter on the bundled config; `make test`
# installs everything the tests need (Debian packages and a venv) and runs them.

PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
LISTEN ?= 127.0.0.1:9637
# Real components the tests drive: Prometheus/promtool, Alertmanager/amtool,
# sipp, headless Chromium, and ip/nft for the network-namespace icmp tests.
APT_PACKAGES = prometheus prometheus-alertmanager sip-tester chromium iproute2 nftables
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck pytest bench system-packages venv clean

run: $(BIN)/.installed
	$(BIN)/probewatch serve --config.file=exporter/default.yml --web.listen-address=$(LISTEN)

test: system-packages $(BIN)/.installed-test lint typecheck pytest

system-packages:
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PACKAGES)

# A fresh Debian/Ubuntu may lack the venv module (python3-venv): install it first.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "probewatch: $(PYTHON) has no venv module; installing the Debian package python3-venv"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The sip kind needs pjsua2-python, which has wheels only for some Pythons and machines
# (CPython 3.11 and 3.12 on x86_64 when this was written).  Where no wheel fits, or when
# PROBEWATCH_NO_SIP=1 asks for it, probewatch is installed without the sip extra, with one
# line saying so: every other kind works, and a config with a sip probe fails
# `probewatch check` naming the extra.  $(VENV)/probewatch-no-sip records why, for the tests.
define install
	@extras="$(1)"; rm -f $(VENV)/probewatch-no-sip; \
	sip=$$($(BIN)/python -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['sip'][0])"); \
	if [ -n "$(PROBEWATCH_NO_SIP)" ] && [ "$(PROBEWATCH_NO_SIP)" != 0 ]; then \
	  why="PROBEWATCH_NO_SIP is set"; \
	elif $(BIN)/pip install -q --dry-run --only-binary=:all: "$$sip" >/dev/null 2>&1; then \
	  why=; extras="sip$${extras:+,$$extras}"; \
	else \
	  why="no $$sip wheel for $$($(BIN)/python -c 'import platform, sys; print("Python %d.%d on %s" % (*sys.version_info[:2], platform.machine()))')"; \
	fi; \
	if [ -n "$$why" ]; then \
	  echo "probewatch: installing without the sip kind ($$why); every other kind works"; \
	  echo "$$why" > $(VENV)/probewatch-no-sip; \
	fi; \
	spec=".$${extras:+[$$extras]}"; echo "$(BIN)/pip install -q -e '$$spec'"; \
	$(BIN)/pip install -q -e "$$spec"
endef

$(BIN)/.installed: $(BIN)/python pyproject.toml
	$(call install,)
	touch $@

$(BIN)/.installed-test: $(BIN)/python pyproject.toml
	$(call install,test)
	touch $(BIN)/.installed $@

lint: $(BIN)/.installed-test
	$(BIN)/ruff check .

typecheck: $(BIN)/.installed-test
	$(BIN)/mypy

# pytest exits 5 when it collected no tests; make treats that as a failure.
pytest: $(BIN)/.installed-test
	CI=$${CI:-} $(BIN)/pytest -ra -q

# Benchmarks print each figure beside its goal and write bench/results/*.json.
bench: $(BIN)/.installed-test
	$(BIN)/python bench/bench_tcp.py
	$(BIN)/python bench/bench_icmp_sip.py
	$(BIN)/python bench/bench_status_page.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
