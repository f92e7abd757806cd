# plexsync: local development and test entry points (GNU make).
# The logic lives in scripts/ so it can be run and checked on its own.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# cargo-lambda (and the zig it uses) come from the project venv.
VENV_PATH := $(CURDIR)/.venv/bin:$(PATH)
SAM := SAM_CLI_TELEMETRY=0 PATH="$(VENV_PATH)" $(CURDIR)/.venv-sam/bin/sam

.PHONY: help test dev demo lint lint-template build sam-build deploy bench reliability clean-dev import-demo

help:
	@echo "make test       Postgres + moto, then cargo test --workspace (ARGS=... go to cargo test)"
	@echo "make dev        local stack on http://127.0.0.1:8080 (admin page at /, API at /api/plex/...)"
	@echo "make lint       cargo fmt --check and clippy -D warnings"
	@echo "make lint-template  cfn-lint (+ serverless rules) and sam validate --lint on template.yaml"
	@echo "make build      cargo lambda build --release (Lambda artifacts in target/lambda/)"
	@echo "make sam-build  sam build (runs cargo lambda build --release per function, into .aws-sam/)"
	@echo "make deploy     sam deploy (--guided the first time, i.e. without samconfig.toml)"
	@echo "make demo       post a sequence of Plex webhooks to a running make dev and show the result"
	@echo "make bench      release binaries: cold start, throughput vs pgbench, RSS; criterion; writes BENCHMARKS.md"
	@echo "make import-demo  import a generated 2,000-show Plex library end to end, check it, time it (BENCHMARKS.md)"
	@echo "make reliability  storm, DB outage, poison, fuzzing, schemathesis, secret scan (RELIABILITY.md)"
	@echo "make clean-dev  stop what make dev started and remove .dev/"

test:
	scripts/test.sh $(ARGS)

dev:
	scripts/dev.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

lint-template:
	scripts/ensure-venv.sh --with-sam
	.venv/bin/cfn-lint template.yaml -a cfn_lint_serverless.rules
	$(SAM) validate --lint --template-file template.yaml

build:
	scripts/ensure-venv.sh --with-cargo-lambda
	PATH="$(VENV_PATH)" cargo lambda build --release

demo:
	.venv/bin/python tools/demo.py

import-demo:
	scripts/import-demo.sh

sam-build:
	scripts/ensure-venv.sh --with-cargo-lambda --with-sam
	$(SAM) build --template-file template.yaml

deploy: sam-build
	$(SAM) deploy $(if $(wildcard samconfig.toml),,--guided)

bench:
	scripts/bench.sh

reliability:
	scripts/reliability.sh

clean-dev:
	scripts/dev.sh stop
	rm -rf .dev
