# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Development defaults; production sets DEBUG=false and a real SECRET_KEY in the environment.
export DEBUG ?= true

.PHONY: install demo test lint run serve clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo "The daily run command arrives with the daily-run work; seeding is done."

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest

serve: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runserver

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache
