# Two commands do all the set-up on a fresh machine:
#   make demo   install, then fit the built-in sample person with Anny and write results to demo_output/
#   make test   install, then run the whole test suite
#   make test-fast   install, then run the suite without the tests marked slow (< 3 min)
#   make benchmark   install, then synth -> fit -> eval on 40 synthetic people (benchmark_output/, ~14 min on 2 cores)
#
# The virtual environment lives outside the clone (so CI's fresh clones reuse it) and is
# rebuilt only when pyproject.toml changes. PyTorch3D needs torch 2.11.0 (see README).
PYTHON ?= python3
VENV ?= $(HOME)/.cache/resihmr-dr/venv
DEPS_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
BIN := $(VENV)/bin

.PHONY: install demo test test-fast benchmark clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'setuptools>=77,<82' wheel
	$(BIN)/python -m pip install -e '.[pytorch3d,test]'  # not -q: the first install downloads ~3 GB
	@rm -f $(VENV)/.deps-*
	@touch $(STAMP)

install: $(STAMP)
	@# Point the editable install at this checkout (cheap; CI clones to a new folder each run).
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .

demo: install
	$(BIN)/resihmr-dr demo --out demo_output

test: install
	$(BIN)/python -m pytest -q

# The quick tier (< 3 min on 2 cores): everything but the tests marked slow (the notebooks, DDP,
# killed runs, the evaluator end to end, the refinement's round trips). CI runs `make test`.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# The README's benchmark table: 40 synthetic people at 0, 2 and 5 px keypoint noise, fitted with the
# default config, scored with the baselines. Rerunning resumes the fit (finished people are skipped);
# people the fit flags or fails (exit code 1) are listed by eval, so the fit step may fail.
BENCH ?= benchmark_output
benchmark: install
	$(BIN)/resihmr-dr synth --out $(BENCH)/synth --count 40 --seed 0 --noise-px 0,2,5 --no-progress
	-$(BIN)/resihmr-dr fit --annotations $(BENCH)/synth/annotations.json --out $(BENCH)/fit
	$(BIN)/resihmr-dr eval --pred $(BENCH)/fit --gt $(BENCH)/synth --out $(BENCH)/eval

clean-venv:
	rm -rf $(VENV)
