# Developer and CI entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
PG_DIR ?= .demo/pg

.PHONY: test deps-test deny deps demo bench bench-enc bench-host bench-facts bench-agent bench-changes bench-e2e bench-simulate pg-up pg-down

## test: formatting, lints, the supply-chain check (cargo deny), every
## crate's tests (the end-to-end suite with Debian's real puppetserver and
## puppet agents among them), every fuzz target for FUZZ_SECS (20 s), then
## the Foreman plugin's and the Helm chart's tests, and the check of the
## Grafana dashboard and alert rules against a live /metrics, and the status
## page in headless Chromium (rewrites docs/status-page.png). Installs what
## is missing (PostgreSQL 15, Puppet, Chromium, cargo-deny, cargo-fuzz,
## Debian's ruby/rails, helm, playwright-core and the Kubernetes schemas).
test: deps-test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash scripts/deny.sh
	bash scripts/test.sh
	bash scripts/fuzz.sh
	bash foreman-plugin/test.sh
	bash helm/test.sh
	bash tests/dashboards/run.sh
	bash tests/browser/run.sh

deps-test:
	PUPPET=1 BROWSER=1 bash scripts/install-deps.sh

## deny: the supply-chain check alone (deny.toml; docs/supply-chain.md)
deny:
	bash scripts/deny.sh

## deps: install what a fresh Debian 12 machine lacks (PostgreSQL 15, make, cc)
deps:
	bash scripts/install-deps.sh

## demo: primary + replica with the Foreman fixture (FLEET=N more hosts), the bridge on 127.0.0.1:8081
demo:
	bash scripts/demo.sh

## bench: every benchmark of the repository, each beside its baseline measured
## in the same run: the ENC (10K-host fleet; against /healthz and an ENC built by
## SQL on every request), /host (100K hosts), fact uploads, pvc-agent, the change
## feed, the real-Puppet end-to-end suite (root), the simulated day (against
## runinterval + splay and cron). Rewrites docs/benchmarks.md and its charts in
## docs/bench/ (about 35 minutes on 2 cores)
bench:
	bash bench/enc.sh
	bash bench/host.sh
	bash bench/facts.sh
	bash bench/agent.sh
	bash bench/changes.sh
	bash bench/e2e.sh
	bash bench/simulate.sh

## bench-enc: the ENC benchmark alone; rewrites its section of docs/benchmarks.md
bench-enc:
	bash bench/enc.sh

## bench-simulate: the simulated day alone (SIM_ARGS: more `pvc-bridge simulate` options); rewrites its section
bench-simulate:
	bash bench/simulate.sh

## bench-host: the /host benchmark alone; rewrites its section of docs/benchmarks.md
bench-host:
	bash bench/host.sh

## bench-facts: the fact upload benchmark alone; rewrites its section of docs/benchmarks.md
bench-facts:
	bash bench/facts.sh

## bench-agent: pvc-agent's idle RSS and CPU, file change -> Puppet started; rewrites its section of docs/benchmarks.md
bench-agent:
	bash bench/agent.sh

## bench-changes: the change feed: its triggers' cost to Foreman's writes (pgbench, with and without), a change -> the ENC under read load; rewrites its section of docs/benchmarks.md
bench-changes:
	bash bench/changes.sh

## bench-e2e: the real-Puppet suite once, as a measurement: tamper → restored, compile load; rewrites its section of docs/benchmarks.md (root)
bench-e2e:
	bash bench/e2e.sh

## pg-up: a PostgreSQL primary + streaming replica in $(PG_DIR) with database
## `foreman` loaded from the fixture; connection settings in $(PG_DIR)/env
pg-up:
	$(CARGO) run -q -p pvc-testkit --bin pvc-pg -- up --dir $(PG_DIR) --foreman-db foreman

## pg-down: stop it and remove $(PG_DIR)
pg-down:
	$(CARGO) run -q -p pvc-testkit --bin pvc-pg -- down --dir $(PG_DIR)
