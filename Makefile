# socklab: `make lesson-1` runs the first lesson, `make test` proves what the lessons claim.
CARGO ?= cargo
# `make lesson-7` and `make lesson-07` both run lessons/07-*/.
two_digits = $(shell printf '%02d' $$(echo $(1) | sed 's/^0*//'))

.PHONY: lessons test lint deps fmt bench

lesson-%:
	@$(CARGO) run -q --example lesson-$(call two_digits,$*) -- $(ARGS)

# `make python-7`: the lesson's Python programs (the seed's, ported), run together on loopback.
python-%:
	@python3 lessons/run_python.py $(call two_digits,$*)

# `make expected-15` regenerates lessons/15-*/expected.trace; `make expected-15 ARGS=herd`, a part's.
expected-%:
	$(CARGO) build -q --example lesson-$(call two_digits,$*)
	SOCKLAB_TRACE=plain ./target/debug/examples/lesson-$(call two_digits,$*) $(ARGS) > $(wildcard lessons/$(call two_digits,$*)-*)/expected$(if $(ARGS),.$(ARGS)).trace

lessons:
	@$(CARGO) run -q --bin socklab -- lessons

# The tests use real peers (deps) and run the lesson programs: build those (as programs, not
# test harnesses) in the same pass as the tests, then run every test binary even when one fails.
# Four tests at a time on two cores: most of a test's time is spent waiting on its peers.
test: deps
	$(CARGO) build --examples --bins --tests
	$(CARGO) test --no-fail-fast --lib --bins --tests -- --test-threads=4

# Every loop against the same loop in C (bench/echo.c) and mio (bench/mio-echo), release builds,
# 5 repetitions, about 8 minutes here; QUICK=1 for one short pass. Tables on stdout, target/bench/results.json.
bench: target/bench/echo-c
	$(CARGO) build -q --release --bins
	$(CARGO) build -q --release --manifest-path bench/mio-echo/Cargo.toml --target-dir target/mio
	./target/release/bench $(if $(QUICK),--quick)

target/bench/echo-c: bench/echo.c
	mkdir -p target/bench && $(CC) -O2 -Wall -Wextra -o $@ bench/echo.c

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

deps:
	@missing=""; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	command -v ss >/dev/null || missing="$$missing iproute2"; \
	nc -h 2>&1 | grep -q OpenBSD || missing="$$missing netcat-openbsd"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: strace, socat, netcat-openbsd and iproute2 (ss) are installed"; fi
