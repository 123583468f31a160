# Developer and CI entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
PG_DIR ?= .demo/pg

.PHONY: test pg-up pg-down

## test: formatting, lints, then every crate's tests (PostgreSQL 15 binaries needed)
test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

## pg-up: a PostgreSQL primary + streaming replica in $(PG_DIR) with database
## `foreman` loaded from the fixture; connection settings in $(PG_DIR)/env
pg-up:
	$(CARGO) run -q -p pvc-testkit --bin pvc-pg -- up --dir $(PG_DIR) --foreman-db foreman

## pg-down: stop it and remove $(PG_DIR)
pg-down:
	$(CARGO) run -q -p pvc-testkit --bin pvc-pg -- down --dir $(PG_DIR)
