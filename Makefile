# One Ray auth mode for every ray command and driver: a local ray.init() with RAY_AUTH_MODE
# unset writes ~/.ray/auth_token, and later drivers then switch to token auth and fail to create
# actors ("ActorDiedError ... cancelled before it started running"; measured on Ray 2.60).
export RAY_AUTH_MODE := disabled
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

VENV ?= .venv
PYTHON ?= python3.11
STAMP := $(VENV)/.stamp
# e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to skip the CUDA wheels on CI.
TORCH_INDEX_URL ?=
APT_GET ?= apt-get
PYTEST_ARGS ?=

# The campaign image (Dockerfile): the one source of its name and Ray version; cluster.yaml and
# k8s/rayjob.yaml name the same image (a test checks). For a real cluster, push it to a registry
# its nodes pull from: make image IMAGE=<registry>/aar-ray:2.60.0-gpu, and use that name there.
RAY_VERSION := 2.60.0
IMAGE ?= aar-ray:$(RAY_VERSION)-gpu
DOCKER ?= docker

.PHONY: setup run test bench lint browser bubblewrap clean image mutation

setup: $(STAMP) bubblewrap

# torch goes in first and on its own so that the resolver keeps that build (CPU or CUDA)
# instead of pulling a different one as a dependency of transformers/peft.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(VENV)/bin/python -m pip install -e '.[dev,gpu]'
	touch $@

run: setup
	$(VENV)/bin/aar run --config jobs/configs/embedded.yaml

test: setup browser
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python -m aar_ray.bench

# Mutation testing of the core with the fast unit tests (docs/testing.md); not part of `make
# test`. Writes tests.mutation_score_core into bench/results.json.
mutation: setup
	$(VENV)/bin/python -m aar_ray.bench.mutation

lint: setup
	$(VENV)/bin/ruff check .

image:
	$(DOCKER) build --build-arg RAY_VERSION=$(RAY_VERSION) -t $(IMAGE) .

# An apt package the tests use if present: $(1) command, $(2) package, $(3) what happens
# without it. A missing apt (or no root) only warns. Use APT_GET="sudo apt-get" where needed.
define apt_optional
	@if command -v $(1) >/dev/null 2>&1; then \
		echo "$(1): $$(command -v $(1))"; \
	elif command -v $(firstword $(APT_GET)) >/dev/null 2>&1 \
		&& $(APT_GET) update -qq \
		&& DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(2); then \
		echo "$(2) installed"; \
	else \
		echo "WARNING: $(2) not available; $(3)" >&2; \
	fi
endef

browser:
	$(call apt_optional,chromium,chromium,browser tests will be skipped)

# bubblewrap is the sandbox's outer layer for agents' code (docs/threat-model.md); without it
# the lab falls back to Landlock + seccomp (resources.sandbox_fallback) and its tests skip.
bubblewrap:
	$(call apt_optional,bwrap,bubblewrap,agents' methods use the Landlock fallback)

# Keeps the venv (slow to rebuild) and campaign/run outputs; `rm -rf $(VENV)` to start over.
clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
