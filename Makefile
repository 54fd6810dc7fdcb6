# Every target creates .venv and installs what is missing first, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m phala.contracts.vm.build
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/phala dev --base-path .phala-dev

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check phala tests bench examples

bench: $(STAMP)
	$(BIN)/phala bench chain

clean:
	rm -rf $(VENV) .phala-dev .pytest_cache .phala-build
