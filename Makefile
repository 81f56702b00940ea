# Two entry points (see README): `make up` stands the system up, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up preview test lint typecheck bench bench-contention loop

$(BIN)/python: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(BIN)/python

# Needs the Pulumi CLI, gcloud (with gke-gcloud-auth-plugin) logged in, and a stack config.
up: $(BIN)/python
	pulumi up

# As the preview build does it: refuse a stack file that cannot be previewed truthfully (the
# committed example, placeholders, no usable secrets provider), then preview with the policies.
preview: $(BIN)/python
	$(BIN)/python -m components.stack_file --stack "$$(pulumi stack --show-name)"
	pulumi preview --policy-pack policy --diff

lint: $(BIN)/python
	$(BIN)/ruff check .

# mypy.ini holds one section per module group; the program's components and the step scripts'
# library (scripts/gitops) are checked strictly, the step scripts themselves as typed code.
typecheck: $(BIN)/python
	$(BIN)/mypy --config-file mypy.ini components/ scripts/

test: lint typecheck
	$(BIN)/python -m pytest -q

bench: $(BIN)/python
	$(BIN)/python benchmarks/env_repo_latency.py

# 16, 64 and 128 writers publishing to one branch at once (about 5 minutes on 2 cores).
bench-contention: $(BIN)/python
	$(BIN)/python benchmarks/contention.py

loop: $(BIN)/python
	$(BIN)/python examples/local_loop.py
