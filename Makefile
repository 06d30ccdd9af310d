# `make demo` and `make test` set up everything they need on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SYSTEM_STAMP := .cache/.system-stamp

.PHONY: demo demo-quick test test-slow lint format system bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# espeak-ng + MBROLA voices, sox, ffmpeg (Debian contrib/non-free); needs root the first time.
system: $(SYSTEM_STAMP)
$(SYSTEM_STAMP): scripts/setup_system.sh
	bash scripts/setup_system.sh
	mkdir -p .cache && touch $(SYSTEM_STAMP)

demo: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m ssps demo --out runs/demo

demo-quick: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m ssps demo --quick --out runs/demo-quick

test: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .cache build *.egg-info
