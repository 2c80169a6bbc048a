# prunekit: `make demo` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.prunekit-installed
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
FMNIST_DIR := /usr/share/datasets/fashion-mnist
TEST_TIMEOUT ?= 300

.PHONY: demo test test-heavy setup data browser clean

# `make demo` is meant to be rerun: it replaces its own earlier run in runs/demo (prunekit demo alone refuses).
demo: setup data
	$(VENV)/bin/prunekit demo --overwrite

test: setup data browser
	$(PY) -m pytest -x -p no:cacheprovider --timeout=$(TEST_TIMEOUT) -m "not heavy" tests

# The four largest torchvision classifiers (over 300M parameters), the slow quantize checks and 80 timm
# families; CI (.ci/run) runs them after `make test`.
test-heavy: setup
	$(PY) -m pytest -p no:cacheprovider --timeout=900 -m heavy tests

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Pinned torch first so that the package's own torch range installs nothing more.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

# Debian's Fashion-MNIST where apt-get exists and we are root; never fails.
data:
	@if [ ! -d $(FMNIST_DIR) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing dataset-fashion-mnist"; \
		( DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		  ( apt-get update -qq >/dev/null 2>&1 && \
		    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ) ) || \
		echo "dataset-fashion-mnist not installed (continuing)"; \
	fi; \
	if [ ! -d /usr/share/games/fortunes ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing fortunes (English text for the transformer methods)"; \
		( DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes >/dev/null 2>&1 || \
		  ( apt-get update -qq >/dev/null 2>&1 && \
		    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes >/dev/null 2>&1 ) ) || \
		echo "fortunes not installed (continuing)"; \
	fi; true

# Headless Chromium renders the HTML report in its test; installed where apt-get exists and we are root.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (for the HTML report test)"; \
		( DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  ( apt-get update -qq >/dev/null 2>&1 && \
		    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ) ) || \
		echo "chromium not installed (the HTML report test will say so)"; \
	fi; true

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
