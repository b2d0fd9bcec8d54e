# hotline-bridge: every target a developer, CI, QA or ops needs. Run `make help`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOPOLOGY ?= asterisk/sandbox.toml
SANDBOX := $(PY) asterisk/sandbox.py --topology $(TOPOLOGY)

.PHONY: help setup deps venv sandbox sandbox-stop run demo demo-two-site drill bench bench-store bench-hotkey faults lab test test-unit lint fmt clean

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/' | expand -t 16

setup: deps venv ## install everything: apt packages, Python venv, sandbox PBX (idempotent)
	bash asterisk/provision.sh >/dev/null

# promtool is all we need from the prometheus package: never leave the server it ships running.
# postgresql: only its binaries (tests start their own server, lab/pgserver.py); the cluster the
# package creates is stopped and disabled, as prometheus is.
deps: ## apt: sip-tester (SIPp), baresip (a real agent softphone), chromium (the console's browser tests), debootstrap, iproute2, promtool, postgresql, a CJK font for report charts (needs root; skipped when present)
	@missing=""; for b in sipp:sip-tester debootstrap:debootstrap ss:iproute2 promtool:prometheus baresip:baresip-core chromium:chromium; do \
	  command -v $${b%%:*} >/dev/null || [ -x /usr/sbin/$${b%%:*} ] || missing="$$missing $${b#*:}"; done; \
	[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  case "$$missing" in *prometheus*) \
	    (systemctl disable --now prometheus || service prometheus stop) >/dev/null 2>&1 || true;; \
	  esac; \
	  case "$$missing" in *postgresql*) \
	    (systemctl disable --now postgresql || service postgresql stop) >/dev/null 2>&1 || true;; \
	  esac; \
	fi

venv: $(BIN)/hotline-bridge ## the Python virtualenv with the package and dev tools

$(BIN)/hotline-bridge: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

sandbox: setup ## start the sandbox PBX and wait until AMI says FullyBooted
	$(SANDBOX) start

sandbox-stop: ## stop the sandbox PBX
	$(SANDBOX) stop

# Issue 5: a 12345 PBX and a 110 PBX side by side (asterisk/two-site/), on their own ports.
TWO_SITE := asterisk/two-site
.PHONY: sandbox-two-site sandbox-two-site-stop two-site
sandbox-two-site: setup ## start the two-site pair: 12345 PBX (SIP 5260) and 110 PBX (SIP 5160), and the remote seat group PBX (SIP 5360)
	$(PY) asterisk/sandbox.py --topology $(TWO_SITE)/12345.toml start
	$(PY) asterisk/sandbox.py --topology $(TWO_SITE)/110.toml start
	$(PY) asterisk/sandbox.py --topology $(TWO_SITE)/remote.toml start

two-site: sandbox-two-site

sandbox-two-site-stop: ## stop the two-site pair (and the remote seat group PBX)
	-$(PY) asterisk/sandbox.py --topology $(TWO_SITE)/remote.toml stop
	-$(PY) asterisk/sandbox.py --topology $(TWO_SITE)/110.toml stop
	-$(PY) asterisk/sandbox.py --topology $(TWO_SITE)/12345.toml stop

# The bridge reads its own settings, generated from the topology ([bridge].mode = "sandbox").
BRIDGE_CONFIG := .sandbox/bridge.toml

run: sandbox ## run the bridge against the sandbox PBX (Ctrl-C to stop)
	$(SANDBOX) bridge-config --out $(BRIDGE_CONFIG) >/dev/null
	$(BIN)/hotline-bridge serve --config $(BRIDGE_CONFIG)

demo: setup ## place a citizen call, carry-transfer it to 110, then a three-way call; explain
	$(BIN)/python -m lab.demo --topology $(TOPOLOGY)

demo-two-site: setup ## 12345 and 110 PBXes + bridges: a carried call, its record and the 签收 back
	$(BIN)/python -m lab.demo_two_site

# Load drill knobs: make drill RATE=20 DURATION=60 MIX=0.1 (MIX = share of three-way calls).
# The mix over targets and jurisdictions (each checked at its own desk):
#   make drill RATE=3 DURATION=60 MIX_TARGETS=110,119,120,122,water,power,gas
# (MIX_JURISDICTIONS: default all five; DRILL_ARGS: more options, e.g. --publish bench/results).
RATE ?= 20
DURATION ?= 60
MIX ?= 0
HOLD ?= 8
MIX_TARGETS ?=
MIX_JURISDICTIONS ?=
DRILL_ARGS ?=

drill: sandbox lab ## load drill: RATE calls/s for DURATION s, MIX three-way, MIX_TARGETS spread; verifies every call
	$(BIN)/python -m lab.drill --topology $(TOPOLOGY) --rate $(RATE) --duration $(DURATION) --mix $(MIX) --hold $(HOLD) --targets '$(MIX_TARGETS)' --jurisdictions '$(MIX_JURISDICTIONS)' $(DRILL_ARGS)

bench: sandbox lab ## bridge vs raw AMI vs SIP REFER, same load; micro-benchmarks -> bench/results/
	$(BIN)/python -m lab.bench --topology $(TOPOLOGY) $(BENCH_ARGS)

# The record write path on SQLite and on PostgreSQL (a server started for the run), same run:
# no PBX needed.
bench-store: venv ## record write path p50/p99, SQLite vs PostgreSQL -> bench/results/store-*
	$(BIN)/python -m lab.storebench

# The bridge's own hotkey path on one idle core: its API, checks, record and AMI write, against a
# stand-in PBX in the same process (no Asterisk needed). STORE=postgres starts a server for it.
STORE ?= sqlite
bench-hotkey: lab ## the bridge's own hotkey path, one core: hotkey -> actions written, record write (JSON)
	$(BIN)/python -m lab.hotkeybench --store $(STORE) 2>/dev/null

# The fault drill: carry-transfer load (5/s, media) while the partner is unreachable for 30 s, the
# AMI link is cut, the bridge is kill -9ed and Asterisk restarts. Exit 1 if a zero is not zero.
# FAULTS_ARGS=--short is CI's version (tests/pbx/test_faults.py).
faults: sandbox lab ## fault drill: partner down, AMI cut, kill -9, PBX restart under load -> bench/results/faults/
	$(BIN)/python -m lab.faults $(FAULTS_ARGS)

# The replica-failure drill: a standby replica beside the active one, hotkeys spread over both,
# the active one kill -9ed mid-run; takeover time and the same zeros. FAULTS_ARGS=--short: CI's.
.PHONY: faults-replicas
faults-replicas: sandbox lab ## replica-failure drill: standby takes over a kill -9ed active under load
	$(BIN)/python -m lab.faults --replicas $(FAULTS_ARGS)

# Several PBXes (issue 14 §2): 3 sandbox PBXes (asterisk/cluster/, SIP 5460-5498, AMI
# 18460-18462), PostgreSQL and 3 bridge replicas (API 18470-18472, PBX services 18480-18482).
.PHONY: sandbox-cluster sandbox-cluster-stop faults-cluster
sandbox-cluster: setup ## 3 PBXes + PostgreSQL + 3 bridge replicas on loopback, each PBX owned by one replica
	$(BIN)/python -m lab.cluster start

sandbox-cluster-stop: ## stop the cluster sandbox (replicas, PostgreSQL, the 3 PBXes)
	$(BIN)/python -m lab.cluster stop

# The cluster replica-failure drill: load over the 3 PBXes through all replicas, one kill -9ed.
# FAULTS_ARGS=--short: the short version.
faults-cluster: setup lab ## cluster drill: 3 PBXes, 3 replicas, one kill -9ed -> bench/results/faults/cluster-*
	$(BIN)/python -m lab.cluster_drill --publish bench/results/faults $(FAULTS_ARGS)

# The drill's and bench's extras (matplotlib for the latency plots, py-spy for profiles).
lab: venv
	@$(BIN)/python -c 'import matplotlib, uvloop' 2>/dev/null || $(BIN)/pip install -q --disable-pip-version-check -e '.[dev,lab]'

test: setup ## the whole suite, real PBX and SIPp included (a PBX test never silently skips)
	HOTLINE_REQUIRE_PBX=1 $(BIN)/pytest -q

test-unit: venv ## pure-logic tests only (no PBX)
	$(BIN)/pytest -q tests/unit

lint: venv ## ruff (lint + format check), mypy, and the package's layers (import-linter)
	$(BIN)/ruff check src tests lab
	$(BIN)/ruff format --check src tests lab
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff format src tests lab
	$(BIN)/ruff check --fix src tests lab

clean:
	-$(SANDBOX) stop
	rm -rf .sandbox .pytest_cache .mypy_cache .ruff_cache
