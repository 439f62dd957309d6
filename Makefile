# The two commands: `make demo` and `make test`. Both install everything first
# (`make deps`: Debian packages and the development .venv).
# `make install` installs the daemon as a systemd service (systemd/README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   := tests/data/cache/sample.wav
# Debian packages: PortAudio for capture, PulseAudio for the tests' null-sink capture path,
# systemd for the tests' `systemd-analyze verify/security` of the service unit, python3-venv for
# `make install`'s venv on the system Python, chromium for the room-screen browser test (Playwright).
APT_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins systemd python3-venv chromium espeak-ng
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all proto deps install install-venv install-files system-deps data test demo models bench bench-check bench-baseline soak clean

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
	$(BIN)/appliance models --assemble >/dev/null
	touch $@

deps: system-deps $(STAMP)

$(DATA): tests/data/fetch.py | $(STAMP)
	$(BIN)/python tests/data/fetch.py

data: $(DATA)

test: deps data
	$(BIN)/python proto/generate.py --check
	$(BIN)/python -m pytest -q
	$(BIN)/python -m bench.guard check

# Regenerate appliance/_generated from proto/ (make test fails while it is stale).
proto: deps
	$(BIN)/python proto/generate.py

demo: deps data
	$(BIN)/appliance demo --file $(DATA)

# Heavy, rare: re-export the diarization models with torch + pyannote.audio in their own venv.
models:
	bash models/export/build.sh

# Every benchmark (a results file in bench/results/), then the README section and plots from them.
bench: deps data
	$(BIN)/python -m pytest bench --benchmark-enable --benchmark-only -q
	$(BIN)/python -m bench.report --write

# The regression guard (about 3 minutes; also the last step of `make test`): gates on figures of
# the same run (ours vs the naive baseline, streaming vs offline WER, quality bounds) on any
# machine, and on bench/baseline.json only on a machine with its CPU fingerprint (README,
# Benchmarks). `make bench-baseline` re-records the baseline (then commit it).
bench-check: deps data
	$(BIN)/python -m bench.guard check

bench-baseline: deps data
	$(BIN)/python -m bench.guard baseline

# The long reliability run (an hour): four rooms pushed in real time, subscribers joining and
# leaving; RSS, descriptors and delivery latency per 10 minutes (bench/soak.py).
# SOAK_SECONDS=120 SOAK_WINDOW=30 make soak is a two-minute smoke.
soak: deps data
	$(BIN)/python -m bench.soak

# --- the service: `make install` (as root), or `make install DESTDIR=/image/root` for an OS image ---
PREFIX      ?= /opt/appliance
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(SYSCONFDIR)/systemd/system
SYSUSERSDIR ?= $(SYSCONFDIR)/sysusers.d
TMPFILESDIR ?= $(SYSCONFDIR)/tmpfiles.d
DESTDIR     ?=
ROOTVENV    := $(DESTDIR)$(PREFIX)/venv

install: install-venv install-files

# The daemon in its own venv, from a wheel of this tree (not editable), on the system Python:
# the unit's ProtectHome=yes hides an interpreter under /root or /home (pyenv) from the service.
# With DESTDIR the venv is built in place, then its scripts are pointed at $(PREFIX), where the
# image will hold it: build it with the image's own Python (e.g. inside its chroot).
INSTALL_PYTHON ?= /usr/bin/python3

install-venv:
	@base=$$($(INSTALL_PYTHON) -c 'import sys; print(sys.base_prefix)') || exit 1; \
	case "$$base" in /root|/root/*|/home/*) \
		echo "$(INSTALL_PYTHON) lives under $$base, hidden from the service by ProtectHome=yes:" \
			"use a system Python (INSTALL_PYTHON=/usr/bin/python3)" >&2; exit 1;; \
	esac
	$(INSTALL_PYTHON) -m venv --clear $(ROOTVENV)
	$(ROOTVENV)/bin/pip install --quiet --upgrade pip
	$(ROOTVENV)/bin/pip install --quiet .
	$(ROOTVENV)/bin/appliance models --assemble >/dev/null
	@if [ -n "$(DESTDIR)" ]; then \
		grep -lIr -- '$(ROOTVENV)' $(ROOTVENV)/bin $(ROOTVENV)/pyvenv.cfg | \
			xargs -r sed -i 's|$(ROOTVENV)|$(PREFIX)/venv|g'; \
	fi

# Unit, user, directories and config; the config only if there is none (never overwrite the
# operator's), a fresh copy of the example always next to the venv.
install-files:
	install -D -m 0644 systemd/appliance.service $(DESTDIR)$(UNITDIR)/appliance.service
	install -D -m 0644 systemd/appliance.sysusers $(DESTDIR)$(SYSUSERSDIR)/appliance.conf
	install -D -m 0644 systemd/appliance.tmpfiles $(DESTDIR)$(TMPFILESDIR)/appliance.conf
	install -D -m 0644 systemd/appliance.toml $(DESTDIR)$(PREFIX)/share/appliance.toml.example
	install -D -m 0644 systemd/README.md $(DESTDIR)$(PREFIX)/share/README.md
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/appliance
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/appliance/appliance.toml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/appliance/appliance.toml"; \
	else \
		install -m 0640 systemd/appliance.toml $(DESTDIR)$(SYSCONFDIR)/appliance/appliance.toml; \
	fi
	@# On a live system: create the user, fix ownership of /etc/appliance, reload units.
	@# In a DESTDIR image, systemd-sysusers and systemd-tmpfiles do that at boot.
	@if [ -z "$(DESTDIR)" ]; then \
		systemd-sysusers $(SYSUSERSDIR)/appliance.conf && \
		systemd-tmpfiles --create $(TMPFILESDIR)/appliance.conf && \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; \
		else echo "systemd is not running: skipped systemctl daemon-reload"; fi; \
	fi

clean:
	rm -rf $(VENV) tests/data/cache .pytest_cache

# --- the appliance OS image (firmware/README.md): `make firmware`, then `make firmware-test` ---
# Root only (mmdebstrap --mode=root). Outputs in firmware/build/: appliance.raw and its SBOM.
FIRMWARE_APT := mmdebstrap qemu-system-x86 ovmf mtools dosfstools e2fsprogs fdisk erofs-utils systemd unzip
FWBUILD      := firmware/build

.PHONY: firmware firmware-deps firmware-test

firmware-deps:
	@missing=$$(for p in $(FIRMWARE_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The wheel of this tree and the versions the tests run with (the dev venv's) go into the image.
firmware: firmware-deps $(STAMP)
	@[ "$$(id -u)" = 0 ] || { echo "make firmware runs as root (mmdebstrap --mode=root, chroot)" >&2; exit 1; }
	rm -rf $(FWBUILD)/dist
	$(BIN)/pip wheel --quiet --no-deps -w $(FWBUILD)/dist .
	$(BIN)/pip freeze --exclude-editable > $(FWBUILD)/constraints.txt
	firmware/build-rootfs.sh $(FWBUILD)/dist/appliance-*.whl $(FWBUILD)/constraints.txt
	firmware/build-image.sh

# Two boots of a copy of the image under qemu (KVM when /dev/kvm works), checked from the host.
firmware-test: firmware
	$(BIN)/python firmware/boot_test.py
