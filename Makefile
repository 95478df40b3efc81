# One command for the main job (`make demo`) and one for the tests (`make test`).
# Both install what is missing first: bubblewrap, git, npm, and the pinned OpenCode in .tools/.

SHELL := /bin/bash
export WARREN_OPENCODE := $(CURDIR)/.tools/opencode/node_modules/.bin/opencode
CARGO ?= cargo

.PHONY: tools build demo test lint bench clean-demo

tools:
	@./scripts/install-tools.sh >/dev/null

build: tools
	$(CARGO) build --bins

demo: build
	./scripts/demo.sh

test: tools
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: tools
	$(CARGO) bench -p warren-cli --bench run --bench server --bench remote --bench serve_streams --bench egress --bench kube_warm
	$(CARGO) bench -p warren-gateway --bench latency

clean-demo:
	rm -rf .demo
