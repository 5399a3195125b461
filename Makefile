# The two commands: `make run` (set up, migrate, run the app and the emulator) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test setup lint chromium translations

run: setup
	$(BIN)/marketapp run --devportal 8100

test: setup chromium lint
	$(BIN)/pytest
ifdef CI
	MARKETAPP_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -m "not browser"
endif

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Browser tests use Debian's Chromium (never a downloaded browser build).
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# Re-extract user-visible strings, merge them into every catalog, compile (see README, Languages).
TR := marketapp/translations
translations: setup
	$(BIN)/pybabel extract -F babel.cfg -k _ -k gettext -k ngettext -k lazy_gettext --no-wrap \
	  --sort-by-file --project="Smart Scenarios for Bitrix24" -o $(TR)/messages.pot .
	$(BIN)/pybabel update --no-wrap -i $(TR)/messages.pot -d $(TR)
	$(BIN)/pybabel compile -d $(TR) --statistics
