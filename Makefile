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

DEMO_BUSINESS := biz_DemoCoffeeRoasters01

demo: install
	@echo "== Setting up the SQLite database"
	@LOG_LEVEL=WARNING $(PY) manage.py migrate --noinput -v0
	@echo "== Seeding the demo business (idempotent)"
	@LOG_LEVEL=WARNING $(PY) manage.py seed_demo
	@echo "== Preview: who would be reached right now (sends nothing)"
	@LOG_LEVEL=WARNING $(PY) manage.py run_auto_engagement --business $(DEMO_BUSINESS) --dry-run
	@echo "== The daily run (record backends: nothing leaves this machine, every attempt is logged)"
	@LOG_LEVEL=WARNING $(PY) manage.py run_auto_engagement --business $(DEMO_BUSINESS)
	@echo "== Running it again reaches nobody new"
	@LOG_LEVEL=WARNING $(PY) manage.py run_auto_engagement --business $(DEMO_BUSINESS)
	@echo "== Next: 'make serve', then http://127.0.0.1:8000/admin/ (createsuperuser first); see README.md"

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
