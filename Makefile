# Two commands do all the set-up on a fresh machine:
#   make demo   install, then fit the built-in sample person with Anny and write results to demo_output/
#   make test   install, then run the whole test suite
#   make test-fast   install, then run the suite without the tests marked slow (< 3 min)
#   make benchmark   install, then synth -> fit -> eval on 40 synthetic people (benchmark_output/, ~10 min on 2 cores)
#
# Two virtual environments: the dependencies (~6 GB: torch, PyTorch3D, ...) in one shared by every
# checkout, outside the clone (so CI's fresh clones reuse it; rebuilt only when pyproject.toml
# changes), and this checkout's own small one in .venv/, which holds only the editable install of
# this checkout and sees the shared dependencies through a .pth file. Two clones therefore never
# run each other's code. PyTorch3D needs torch 2.11.0 (see README).
PYTHON ?= python3
DEPS_VENV ?= $(HOME)/.cache/resihmr-dr/venv
VENV ?= $(CURDIR)/.venv
DEPS_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
DEPS_STAMP := $(DEPS_VENV)/.deps-only-$(DEPS_HASH)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
DEPS_BIN := $(DEPS_VENV)/bin
BIN := $(VENV)/bin

.PHONY: install demo test test-fast benchmark clean-venv

# The stamps carry the hash of pyproject.toml's content (not its date: a fresh clone's file is
# always newer), so a clone with the same dependencies reinstalls nothing.
$(DEPS_STAMP):
	@test -x $(DEPS_BIN)/python || $(PYTHON) -m venv $(DEPS_VENV)
	$(DEPS_BIN)/python -m pip install -q --upgrade pip 'setuptools>=77,<82' wheel
	$(DEPS_BIN)/python -m pip install -e '.[pytorch3d,test]'  # not -q: the first install downloads ~3 GB
	@# Only the dependencies stay in the shared environment: the package itself lives in each checkout's .venv.
	$(DEPS_BIN)/python -m pip uninstall -q -y resihmr-dr
	@rm -f $(DEPS_VENV)/.deps-*
	@touch $(DEPS_STAMP)

$(STAMP): | $(DEPS_STAMP)
	@rm -rf $(VENV)
	$(DEPS_BIN)/python -m venv --without-pip $(VENV)
	@# One line that makes the shared environment's packages (and their own .pth files) importable here.
	$(DEPS_BIN)/python -c 'import sysconfig; print("import site; site.addsitedir(%r)" % sysconfig.get_paths()["purelib"])' \
		> "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_resihmr_dr_deps.pth"
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

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

clean-venv:  # this checkout's environment; `rm -rf $(DEPS_VENV)` drops the shared one too
	rm -rf $(VENV)
