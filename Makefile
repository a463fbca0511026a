# One entry point for every routine task. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
KAFKA_LOCAL := deploy/kafka-local/kafka-local
PEER_VENV := .venv-peer

.DEFAULT_GOAL := help
PHONY_BENCH := bench bench-smoke bench-large bench-profile peer-venv
.PHONY: $(PHONY_BENCH) help install demo test test-unit test-integration test-faults lint format docs bench-timer bench-identity bench-accounts bench-wheel bench-api bench-lists bench-notify bench-metrics bench-guarantee bench-backpressure bench-input-checks bench-drain-ab ops-plot broker broker-stop broker-status clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED) ## Create .venv with leadscore and its dev tools

demo: $(INSTALLED) ## Local broker, topics, worker and simulated traffic; prints actions until Ctrl-C
	deploy/demo.sh

$(PEER_VENV)/.installed: bench/peer-requirements.txt pyproject.toml
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/pip install --quiet -r bench/peer-requirements.txt
	$(PEER_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

peer-venv: $(PEER_VENV)/.installed ## The Quix Streams peer's own virtualenv (.venv-peer)

bench: $(INSTALLED) $(PEER_VENV)/.installed ## leadscore vs the limit loop and the Quix Streams peer, ~1M events (about an hour; bench/results/)
	$(BIN)/python bench/bench.py --size standard

bench-smoke: $(INSTALLED) $(PEER_VENV)/.installed ## The same benchmark at a size of seconds (runs in CI)
	$(BIN)/python bench/bench.py --size smoke

LARGE_SYSTEMS ?= leadscore,limit,peer
bench-large: $(INSTALLED) $(PEER_VENV)/.installed ## 10M events, 1M contacts: memory, state bytes per lead, recovery (about 2.5 h; LARGE_SYSTEMS=... adds the exactly_once drains, hours more)
	$(BIN)/python bench/bench.py --size large --systems $(LARGE_SYSTEMS)

bench-profile: $(INSTALLED) ## Where a worker's time goes per event: one drain under py-spy, samples by cost (bench/results/)
	$(BIN)/python bench/profile_worker.py --events 60000 --contacts 10000

bench-timer: $(INSTALLED) ## Timer tick cost: 100k leads, 1% due, against a full scan (bench/results/)
	$(BIN)/python bench/timer_tick.py --leads 100000 --due 0.01 --repeat 5

bench-identity: $(INSTALLED) ## The step's cost per event with identity and privacy, vs plain scoring (bench/results/)
	$(BIN)/python bench/identity_cost.py --leads 20000 --repeat 5

bench-accounts: $(INSTALLED) ## The cost of accounts per scored event: the lead step's share and the account agent's step (bench/results/)
	$(BIN)/python bench/account_cost.py --leads 20000 --accounts 1000 --repeat 5

bench-wheel: $(INSTALLED) ## Per-event cost of maintaining the timer wheel, with vs without (bench/results/)
	$(BIN)/python bench/wheel_overhead.py --events 100000 --contacts 10000 --repeat 5

bench-api: $(INSTALLED) ## GET /leads/{id} latency on the owner and forwarded, idle and under load (bench/results/)
	$(BIN)/python bench/api_latency.py --contacts 2000 --requests 1000 --rounds 3
	$(BIN)/python bench/api_latency.py --contacts 2000 --requests 1000 --rounds 3 --load-rate 200

bench-lists: $(INSTALLED) ## The ranked lists beside GET /leads/{id}, 100k leads, idle and scoring 500 events/s (bench/results/)
	$(BIN)/python bench/api_latency.py --contacts 100000 --requests 300 --rounds 3
	$(BIN)/python bench/api_latency.py --contacts 100000 --requests 300 --rounds 3 --load-rate 500

bench-notify: $(INSTALLED) ## Notification sink: deliveries/s against a bare client, and action->delivery latency (bench/results/)
	$(BIN)/python bench/notify_throughput.py --actions 5000 --load 0.5 --seconds 20 --repeat 3

bench-metrics: $(INSTALLED) ## Drain throughput of one worker with per-event metrics on vs off (bench/results/)
	$(BIN)/python bench/metrics_overhead.py --events 100000 --contacts 10000 --repeat 3

bench-guarantee: $(INSTALLED) ## Drain throughput of one worker under at_least_once vs exactly_once (bench/results/)
	$(BIN)/python bench/guarantee_cost.py --events 100000 --contacts 10000 --repeat 3

bench-drain-ab: $(INSTALLED) ## One worker's drain throughput against a baseline commit, runs alternated (BASELINE=rev; bench/results/)
	$(BIN)/python bench/drain_ab.py --baseline $(or $(BASELINE),HEAD~1) --events 100000 --repeat 4

bench-input-checks: $(INSTALLED) ## Per-event decode + score cost against a baseline commit (BASELINE=rev; bench/results/)
	$(BIN)/python bench/input_checks.py --baseline $(or $(BASELINE),c55dc60) --events 100000 --repeat 5

bench-backpressure: $(INSTALLED) ## A cold worker meets 1M waiting events: lag and RSS over time vs a 10k burst (bench/results/)
	$(BIN)/python bench/backpressure.py --events 1000000 --contacts 100000 --baseline 10000

ops-plot: $(INSTALLED) ## docs/operations-latency.png: event->action latency from Prometheus over a stepped-rate run
	$(BIN)/python bench/ops_plot.py --rates 50,100,200,400 --step-seconds 45

test: $(INSTALLED) ## Lint, type-check, unit, integration and fault tests on real Kafka brokers
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest tests/unit tests/integration
	$(BIN)/pytest -rxX tests/faults

test-unit: $(INSTALLED) ## Unit tests only (no broker)
	$(BIN)/pytest tests/unit

test-integration: $(INSTALLED) ## Integration tests only (starts the local broker if none is given)
	$(BIN)/pytest tests/integration

test-faults: $(INSTALLED) ## Fault tier: SIGKILLs mid-stream on a broker of its own, compared with the scoring core
	$(BIN)/pytest -rxX tests/faults

docs: $(INSTALLED) ## Regenerate docs/configuration.md from the settings object
	$(BIN)/leadscore settings --markdown > docs/configuration.md

lint: $(INSTALLED) ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check leadscore tests bench deploy
	$(BIN)/ruff format --check leadscore tests bench deploy
	$(BIN)/mypy

format: $(INSTALLED) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format leadscore tests bench deploy
	$(BIN)/ruff check --fix leadscore tests bench deploy

broker: ## Start the local Kafka broker on 127.0.0.1:9092
	$(KAFKA_LOCAL) start

broker-stop: ## Stop the local Kafka broker
	$(KAFKA_LOCAL) stop

broker-status: ## Is the local Kafka broker running?
	$(KAFKA_LOCAL) status

clean: ## Remove the venv, caches and local broker/demo data (not the jar cache)
	-$(KAFKA_LOCAL) stop
	rm -rf $(VENV) $(PEER_VENV) .kafka-local .kafka-local-test .kafka-local-faults .demo .mypy_cache .ruff_cache .pytest_cache .hypothesis
