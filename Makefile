# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates .venv (Python 3.11) and installs what it needs first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint install browser elements clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: MutateNN needs Python 3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mutatenn demo

# The HTML report test drives Debian's Chromium; install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

# The export test renders the mutation-testing report in the real web component
# (npm's mutation-testing-elements, pinned in reports/exports.py) under .cache/.
elements: $(STAMP)
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; fi; }
	-$(BIN)/python tests/_elements.py

# Test files are shared out to TEST_WORKERS processes (pytest-xdist), each file whole to one
# of them, so module fixtures are built once: a serial run leaves much of a second core idle.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) browser elements
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra --durations=25 $(XDIST) tests

# The fast tier: every package, in a few minutes on two cores (tests marked slow left out).
test-fast: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra -m "not slow" $(XDIST) tests

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs
