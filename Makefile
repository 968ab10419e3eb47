# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Development defaults; production sets DEBUG=false and a real SECRET_KEY in the environment.
export DEBUG ?= true

.PHONY: install demo test lint run serve clean mutation screenshots

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

# A local .env (never committed) so `.venv/bin/python manage.py ...` works outside make too; production sets its own.
.env:
	@echo "# Local development settings (see .env.example); production sets DEBUG=false and a real SECRET_KEY." > $@
	@echo "DEBUG=true" >> $@

install: $(VENV)/.installed .env

DEMO_BUSINESS := biz_DemoCoffeeRoasters01

DEMO_DAYS := 28

demo: install
	@echo "== Setting up the SQLite database"
	@LOG_LEVEL=WARNING $(PY) manage.py migrate --noinput -v0
	@echo "== Seeding the demo business, its three-step journey (two variants on step 1) and the last $(DEMO_DAYS) days"
	@echo "   of runs and visits, played through the real daily run (same seed, same figures; idempotent)"
	@LOG_LEVEL=WARNING $(PY) manage.py seed_demo --simulate-days $(DEMO_DAYS)
	@echo "== Preview: who would be reached right now, by journey step (sends nothing)"
	@LOG_LEVEL=WARNING $(PY) manage.py run_auto_engagement --business $(DEMO_BUSINESS) --dry-run
	@echo "== Today's run (record backends: nothing leaves this machine, every attempt is logged; 20% held out)"
	@LOG_LEVEL=WARNING $(PY) manage.py run_auto_engagement --business $(DEMO_BUSINESS)
	@echo "== Running it again reaches nobody new: 0 notified"
	@LOG_LEVEL=WARNING $(PY) manage.py run_auto_engagement --business $(DEMO_BUSINESS)
	@echo "== Results of the last 30 days: reached vs held out, the uplift with its 95% interval; then each step's"
	@echo "   variants against the holdout and the step's first variant, the winner marked [best] with its interval"
	@LOG_LEVEL=WARNING $(PY) manage.py engagement_stats --business $(DEMO_BUSINESS)
	@echo "== Where to look"
	@echo "   Admin: make serve, .venv/bin/python manage.py createsuperuser, then the demo config's results page"
	@echo "   (printed by the seeding step above: /admin/autoengagement/autoengagementconfig/<id>/results/): a table"
	@echo "   per journey step, the best variant marked with its interval. See docs/results.md and docs/journeys.md."
	@echo "   API, with make serve running:"
	@echo "   TOKEN=\$$(curl -s -X POST http://127.0.0.1:8000/api/auth/login -H 'Content-Type: application/json' \\"
	@echo "     -d '{\"email\": \"demo@example.com\", \"password\": \"demo-password\"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"session_token\"])')"
	@echo "   curl -s http://127.0.0.1:8000/api/auto-engagement/stats -H \"X-Session-Token: \$$TOKEN\" -H 'X-Business-Id: $(DEMO_BUSINESS)'"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: install lint
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest

# Mutation testing of the services (mutmut; [tool.mutmut] in pyproject.toml, scripts/mutation.py): each module of
# autoengagement/services/ mutated against tests/autoengagement on SQLite, its score printed and every mutant not
# killed shown with its diff. Long: a mutant is a test run. MODULES=autoengagement/services/run.py narrows it;
# MUTATION_POSTGRES=postgres://... runs the survivors again on that database (its PostgreSQL-only paths). CI holds the
# audience and scheduling modules at 95% killed or more (.ci/run).
# The admin pages' screenshots in docs/screenshots/ (docs/admin.md), saved by the browser tests that check the pages
# (tests/admin_pages): headless Chromium at 1280 px over a seeded business.
screenshots: install
	ADMIN_SCREENSHOTS_DIR=docs/screenshots $(VENV)/bin/pytest -q -p no:cacheprovider tests/admin_pages

mutation: install
	$(PY) scripts/mutation.py $(if $(MUTATION_POSTGRES),--postgres $(MUTATION_POSTGRES)) $(MODULES)

serve: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runserver

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache
