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

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(BIN)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[sip]'
	touch $@

$(BIN)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[sip,test]'
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
