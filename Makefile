# Entry points (see README): `make bootstrap` once, `make preview` / `make up` to stand the
# system up, `make destroy` to take it down, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A stamp file, not $(BIN)/python: that is a symlink, and `touch` through it would change the
# shared interpreter's mtime instead of recording this install.
VENV_READY := $(VENV)/.requirements-installed
STACK ?= dev

.PHONY: check bootstrap up preview destroy test lint typecheck bench bench-contention loop

$(VENV_READY): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(VENV_READY)

# Prerequisites of `make up`, checked with the standard library before anything is installed
# or created: CLIs, logins, state backend, stack, config, GitHub repositories.
check:
	$(PYTHON) tools/preflight.py --for up

# The state bucket, KMS key and stack (idempotent): make bootstrap PROJECT=my-id REGION=europe-west1
bootstrap:
	$(PYTHON) tools/bootstrap.py --project "$(PROJECT)" --region "$(REGION)" --stack "$(STACK)"

# The checks run first; the install and Pulumi only when they pass.
up:
	$(PYTHON) tools/preflight.py --for up
	$(MAKE) --no-print-directory $(VENV_READY)
	pulumi up

# As the preview build does it: the checks, then refuse a stack file that cannot be previewed
# truthfully (the committed example, placeholders, no usable secrets provider), then preview
# with the policies.
preview:
	$(PYTHON) tools/preflight.py --for preview
	$(MAKE) --no-print-directory $(VENV_READY)
	$(BIN)/python -m components.stack_file --stack "$$(pulumi stack --show-name)"
	pulumi preview --policy-pack policy --diff

# Cluster deletion protection off, then `pulumi destroy --exclude-protected` (YES=1: no prompts).
destroy:
	$(PYTHON) tools/preflight.py --for destroy
	$(MAKE) --no-print-directory $(VENV_READY)
	$(PYTHON) tools/teardown.py $(if $(YES),--yes)

lint: $(VENV_READY)
	$(BIN)/ruff check .

# mypy.ini holds one section per module group; the program's components and the step scripts'
# library (scripts/gitops) are checked strictly, the step scripts themselves as typed code.
typecheck: $(VENV_READY)
	$(BIN)/mypy --config-file mypy.ini components/ scripts/

# The event tests publish to the Pub/Sub emulator: one for the whole run (both test workers),
# booting while the first tests run; reused when PUBSUB_EMULATOR_HOST is set (.ci/run).
test: lint typecheck
	$(BIN)/python tests/pubsub_emulator.py -- $(BIN)/python -m pytest -q

bench: $(VENV_READY)
	$(BIN)/python benchmarks/env_repo_latency.py
	$(BIN)/python benchmarks/render_latency.py

# 16, 64 and 128 writers publishing to one branch at once (about 5 minutes on 2 cores).
bench-contention: $(VENV_READY)
	$(BIN)/python benchmarks/contention.py

loop: $(VENV_READY)
	$(BIN)/python examples/local_loop.py
