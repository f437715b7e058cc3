# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test docs lint clean chromium screenshots

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/foramflow demo

test: $(STAMP) chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

# The documentation site, into site/; strict, so a broken link or a missing result file fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Browser tests drive Debian's chromium; installed when missing and run as root, else skipped.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && apt-get install -y chromium; \
	elif [ ! -x /usr/bin/chromium ]; then \
		echo "note: /usr/bin/chromium missing (needs root to install); browser tests will be skipped"; \
	fi

# The app's pictures in the manual (docs/images/app-*.png), taken again by the browser tests.
screenshots: $(STAMP) chromium
	FORAMFLOW_SCREENSHOTS=1 $(BIN)/pytest -q tests/label/test_browser_import.py \
		tests/label/test_browser_jobs.py tests/label/test_browser_project.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
