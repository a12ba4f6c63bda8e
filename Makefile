# Two commands do all the set-up on a fresh machine:
#   make demo   install, then fit the built-in sample person with Anny and write results to demo_output/
#   make test   install, then run the whole test suite
#
# The virtual environment lives outside the clone (so CI's fresh clones reuse it) and is
# rebuilt only when pyproject.toml changes. PyTorch3D needs torch 2.11.0 (see README).
PYTHON ?= python3
VENV ?= $(HOME)/.cache/resihmr-dr/venv
DEPS_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
BIN := $(VENV)/bin

.PHONY: install demo test clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'setuptools>=77,<82' wheel
	$(BIN)/python -m pip install -q -e '.[pytorch3d,test]'
	@rm -f $(VENV)/.deps-*
	@touch $(STAMP)

install: $(STAMP)
	@# Point the editable install at this checkout (cheap; CI clones to a new folder each run).
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .

demo: install
	$(BIN)/resihmr-dr demo --out demo_output

test: install
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
