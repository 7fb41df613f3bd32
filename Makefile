# The README's two commands: `make run` and `make test`. Both set up .venv on first use
# (and again whenever pyproject.toml changes), so a fresh clone needs nothing else.
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
PROJECT ?= .

.PHONY: run test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/voicecalm run $(PROJECT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest
