# shoal — see README.md. Only Python 3.11 is needed; everything else installs from here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format typecheck bench setup lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@# The local sandbox provider needs bubblewrap and slirp4netns (docs/sandbox.md).
	@missing=""; for tool in bwrap slirp4netns; do \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing bubblewrap slirp4netns for the local sandbox"; \
		apt-get update -qq && apt-get install -y -qq bubblewrap slirp4netns; \
	else \
		echo "sandbox:$$missing missing - run: sudo apt-get install -y bubblewrap slirp4netns"; \
	fi

run: setup
	$(BIN)/shoal migrate
	$(BIN)/shoal serve --host 127.0.0.1 --port 8000

# Two workers (the machines have 2 cores); a file's tests stay on one worker, so the e2e cluster
# and its RabbitMQ consumers never run twice at once.
PYTEST_ARGS ?= -n 2 --dist loadfile

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o constraints.txt

clean:
	@# Local sandboxes' workspace images (as root) stay mounted after shoal stops: unmount them.
	@awk -v dir="$(CURDIR)/.shoal/" 'index($$2, dir) == 1 { print $$2 }' /proc/mounts 2>/dev/null \
		| xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf $(VENV) .shoal .mypy_cache .ruff_cache .pytest_cache
