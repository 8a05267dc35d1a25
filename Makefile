# The two commands a newcomer needs (see README.md):
#   make demo   - run the whole pipeline on the demo plant (Ctrl-C stops it; DURATION=60 for a bounded run)
#   make test   - lint, type-check and run the full test suite (starts its own Kafka + registry)
# Both set themselves up idempotently: the system packages they need (tools/system-packages: apt-get when
# run as root, else the exact command to run), and a virtualenv in .venv with the project installed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DURATION ?=

.PHONY: demo test lint install clean stop proto vendor system-packages system-packages-demo

system-packages:
	@tools/system-packages install test

system-packages-demo:
	@tools/system-packages install demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: system-packages-demo $(STAMP)
	$(BIN)/plantstream up $(if $(DURATION),--duration $(DURATION),)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo
	$(BIN)/python tools/lint_imports.py

test: system-packages lint
	$(BIN)/pytest -q

# the Sparkplug B payload module from our .proto (run after editing it; a unit test checks it is current)
proto: $(STAMP)
	$(BIN)/protoc -I . --python_out=. --pyi_out=. producers/readers/sparkplug_b.proto

# the dashboard's one vendored browser library (committed, so the page needs no network): uPlot from npm,
# pinned; this target fetches it again and checks it against the committed SHA256SUMS
UPLOT_VERSION := 1.6.32
VENDOR := sinks/dashboard/static/vendor
vendor:
	rm -rf build/vendor && mkdir -p build/vendor
	cd build/vendor && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null && tar xzf uplot-$(UPLOT_VERSION).tgz
	cp build/vendor/package/dist/uPlot.iife.min.js build/vendor/package/dist/uPlot.min.css $(VENDOR)/
	cp build/vendor/package/LICENSE $(VENDOR)/uPlot.LICENSE
	cd $(VENDOR) && sha256sum -c SHA256SUMS

stop: $(STAMP)
	$(BIN)/plantstream kafka stop

clean:
	rm -rf $(VENV) .plantstream .pytest_cache .mypy_cache .ruff_cache
