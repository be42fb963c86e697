# Quick start (README): `make reproduce` and `make test`. Helpers: `make lab`, `make venv`, `make help`.
# The virtual environment is .venv (override with KITLIB_VENV=path, as .ci/run does); the package is
# re-installed only when pyproject.toml changes (stamp file inside the venv).

PYTHON ?= python3.11
KITLIB_VENV ?= .venv
VENV := $(KITLIB_VENV)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kitlib-test.stamp
LAB_STAMP := $(VENV)/.kitlib-lab.stamp

.DEFAULT_GOAL := help
.PHONY: help reproduce test lab venv

help:
	@echo "make reproduce   every paper notebook at the smoke profile -> results/smoke/<paper>/"
	@echo "make test        unit tests (tests/) then the notebooks under nbval (--nbval-lax)"
	@echo "make lab         install JupyterLab into $(VENV), keep notebook outputs out of git (nbstripout), start it"
	@echo "make venv        only create/update $(VENV)"

reproduce: $(STAMP)
	$(PY) -m kitlib reproduce --profile smoke

# pytest exit code 5 means "no tests collected": not a failure for the notebook pass. The notebooks under nbval
# write their tables to a temporary folder ($KITLIB_RESULTS), never into results/.
test: $(STAMP)
	$(PY) -m pytest tests --durations=12
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		out=$$(mktemp -d); \
		echo "KITLIB_RESULTS=$$out $(PY) -m pytest --nbval-lax notebooks/"; \
		KITLIB_RESULTS=$$out $(PY) -m pytest --nbval-lax notebooks/ || { rc=$$?; rm -rf "$$out"; [ $$rc -eq 5 ] || exit $$rc; }; \
		rm -rf "$$out"; \
	else \
		echo "no notebooks/*.ipynb: nbval pass skipped"; \
	fi

# nbstripout as a git filter: whatever JupyterLab autosaves into notebooks/, git sees (and commits) the notebook
# without outputs (.gitattributes applies it to notebooks/*.ipynb only, never to executed notebooks under results/;
# this registers the filter in .git/config).
lab: $(LAB_STAMP)
	git config filter.nbstripout.clean "$(abspath $(PY)) -m nbstripout"
	git config filter.nbstripout.smudge cat
	git config diff.ipynb.textconv "$(abspath $(PY)) -m nbstripout -t"
	$(VENV)/bin/jupyter lab

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[test]'
	touch $@

$(LAB_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -e '.[test,lab]'
	touch $@
