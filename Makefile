# Two commands on a fresh machine that has only Python 3.11: `make demo` and `make test`. Each creates and fills the
# environment (.venv) on first use and reuses it after. The CPU build of torch goes in first, so that the project's
# torch range is already met and pip never fetches a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedsafe-installed

.PHONY: demo test test-slow env clean-env

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# monai: the tests of MONAI networks (model.name monai:<Network>); it needs only torch and numpy, no torchvision
	$(BIN)/python -m pip install --quiet -e '.[dev,flower,monai]'
	# the reference attack library of the tests only; --no-deps: its metadata names torchvision (unused)
	$(BIN)/python -m pip install --quiet scipy requests
	$(BIN)/python -m pip install --quiet --no-deps torchattacks==3.5.1
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedsafe demo

# `make test`: lint and every test but the slow end-to-end ones (minutes each: the Flower deployment and
# simulation, kill-and-resume); `make test-slow` runs those; CI (.ci/run) runs both.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

clean-env:
	rm -rf $(VENV)
