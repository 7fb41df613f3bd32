# The README's two commands: `make run` and `make test`. Both set up .venv on first use
# (and again whenever pyproject.toml changes), so a fresh clone needs nothing else.
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
PROJECT ?= .
# llama-cpp-python (the embedded LLM's runtime) is published as source only: compile it once
# (5-9 min on 2 cores) into .cache/wheels/<cpu> and install from there afterwards. GGML_NATIVE=ON
# builds for this machine's CPU: with AVX-512 the model reads a prompt 23 % faster than the
# portable AVX2 build (command-generator calls 0.84 -> 0.73 s at the median). The folder is named
# after the CPU's feature flags, so a cache carried to another machine is compiled again there,
# never loaded; pip's own cache is bypassed because it ignores CMAKE_ARGS.
CPU := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | md5sum | cut -c1-12)
WHEELS := .cache/wheels/$(CPU)
LLAMA_CPP := llama-cpp-python==0.3.36
LLAMA_WHEEL_GLOB := $(WHEELS)/llama_cpp_python-0.3.36-*.whl

.PHONY: run test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	@ls $(LLAMA_WHEEL_GLOB) >/dev/null 2>&1 || { echo "compiling $(LLAMA_CPP) once into $(WHEELS)/ (several minutes)"; \
		CMAKE_ARGS="-DGGML_NATIVE=ON" $(VENV)/bin/python -m pip wheel --quiet --no-cache-dir --no-deps -w $(WHEELS) $(LLAMA_CPP); }
	$(VENV)/bin/python -m pip install --quiet --find-links $(WHEELS) --editable '.[dev,embedded]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/voicecalm run $(PROJECT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest
