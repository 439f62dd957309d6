# The two commands: `make demo` and `make test`. Both install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   := tests/data/cache/sample.wav
# Debian packages: PortAudio for capture, PulseAudio for the tests' null-sink capture path.
APT_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all install system-deps data test demo models bench clean

all: test

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: system-deps $(STAMP)

$(DATA): tests/data/fetch.py | $(STAMP)
	$(BIN)/python tests/data/fetch.py

data: $(DATA)

test: install data
	$(BIN)/python -m pytest -q

demo: install data
	$(BIN)/appliance demo --file $(DATA)

# Heavy, rare: re-export the diarization models with torch + pyannote.audio in their own venv.
models:
	bash models/export/build.sh

bench: install data
	$(BIN)/python -m pytest bench --benchmark-enable --benchmark-only -q

clean:
	rm -rf $(VENV) tests/data/cache .pytest_cache
