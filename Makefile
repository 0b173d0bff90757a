# The two Quick start commands (`make demo`, `make test`) need only Python >= 3.11 and make:
# each creates .venv and installs what it needs. `make compare` adds PyTorch and Captum;
# `make integration` needs the real MNIST in ../shared/data/mnist (or JAXVIS_DATA_DIR); `make browser`
# needs Debian's chromium.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: demo test compare integration browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.compare: $(VENV)/.installed requirements-compare.txt
	$(PY) -m pip install --quiet -r requirements-compare.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) scripts/demo.py --out outputs

# Two pytest-xdist workers, each test file on one of them (a file's fixtures and compiled
# programs are shared by its tests).
test: $(VENV)/.installed
	$(PY) -m pytest tests -q -n 2 --dist loadfile --ignore=tests/compare --ignore=tests/integration --ignore=tests/browser

compare: $(VENV)/.compare
	$(PY) -m pytest tests/compare -q -s

integration: $(VENV)/.compare
	$(PY) -m pytest tests/integration -q

# The report page in headless Chromium (Debian's package: apt-get install -y chromium).
browser: $(VENV)/.installed
	$(PY) -m pytest tests/browser -q

clean:
	rm -rf $(VENV) outputs .pytest_cache
