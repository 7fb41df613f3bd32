# The README's two commands: `make run` and `make test`. Both set up .venv on first use
# (and again whenever pyproject.toml changes), so a fresh clone needs nothing else.
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
PROJECT ?= .
# llama-cpp-python (the embedded LLM's runtime) is published as source only: compile it once
# (6-9 min on 2 cores) into .cache/wheels and install from there afterwards. GGML_NATIVE=OFF makes
# a portable build (AVX2/FMA/F16C) rather than one tied to this machine's CPU.
WHEELS := .cache/wheels
LLAMA_CPP := llama-cpp-python==0.3.36
LLAMA_WHEEL_GLOB := $(WHEELS)/llama_cpp_python-0.3.36-*.whl

.PHONY: run test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	@ls $(LLAMA_WHEEL_GLOB) >/dev/null 2>&1 || { echo "compiling $(LLAMA_CPP) once into $(WHEELS)/ (several minutes)"; \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(VENV)/bin/python -m pip wheel --quiet --no-deps -w $(WHEELS) $(LLAMA_CPP); }
	$(VENV)/bin/python -m pip install --quiet --find-links $(WHEELS) --editable '.[dev,embedded]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/voicecalm run $(PROJECT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest
