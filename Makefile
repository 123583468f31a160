# Developer and CI entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
PG_DIR ?= .demo/pg

.PHONY: test deps demo bench pg-up pg-down

## test: formatting, lints, then every crate's tests (installs PostgreSQL 15 binaries if missing)
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash scripts/test.sh

## deps: install what a fresh Debian 12 machine lacks (PostgreSQL 15, make, cc)
deps:
	bash scripts/install-deps.sh

## demo: primary + replica with the Foreman fixture (FLEET=N more hosts), the bridge on 127.0.0.1:8081
demo:
	bash scripts/demo.sh

## bench: the ENC load benchmark (10K-host fleet, oha); results go to docs/benchmarks.md
bench:
	bash bench/enc.sh

## pg-up: a PostgreSQL primary + streaming replica in $(PG_DIR) with database
## `foreman` loaded from the fixture; connection settings in $(PG_DIR)/env
pg-up:
	$(CARGO) run -q -p pvc-testkit --bin pvc-pg -- up --dir $(PG_DIR) --foreman-db foreman

## pg-down: stop it and remove $(PG_DIR)
pg-down:
	$(CARGO) run -q -p pvc-testkit --bin pvc-pg -- down --dir $(PG_DIR)
