# Makefile - the commands a newcomer runs. Everything real happens in CMake;
# this file only strings the steps together.
#
#   make demo    install dependencies, build, and run the whole migration on
#                an embedded default (scripts/demo.py): mongosim with sample
#                data and live writes -> a 3-node pgdaemon cluster; a few minutes
#   make test    install dependencies, check formatting, build, run the unit
#                tests under ASan+UBSan, then every test (unit + integration)
#   make soak    the randomized differential test for MINUTES (default 30), fresh
#                seeds each batch; SOAK_ARGS for more (tests/integration/randomized/run.py)
#   make build   configure and build into build/
#   make deps    install the Debian packages (idempotent; root or sudo)

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build build-asan demo test test-unit test-asan test-integration soak format format-check clean

all: build

deps:
	./scripts/setup-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMG_SANITIZE=ON -DMG_BUILD_INTEGRATION=OFF

build-asan: $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

format-check: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target format-check

format: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target format

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest -L unit --output-on-failure -j $(JOBS)

test-unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure -j $(JOBS)

test-integration: build
	cd $(BUILD) && ctest -L integration --output-on-failure

# The README's test command. The last thing it prints is ctest's summary.
demo: deps
	$(MAKE) build
	MG_BUILD_DIR=$(abspath $(BUILD)) /usr/bin/python3 scripts/demo.py $(DEMO_ARGS)

MINUTES   ?= 30
SOAK_OUT  ?= $(BUILD)/soak
soak: build
	MG_BUILD_DIR=$(abspath $(BUILD)) /usr/bin/python3 tests/integration/randomized/run.py \
	    --minutes $(MINUTES) --out $(SOAK_OUT) $(SOAK_ARGS)

test: deps
	$(MAKE) format-check
	$(MAKE) test-asan
	$(MAKE) build
	cd $(BUILD) && ctest --output-on-failure

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
