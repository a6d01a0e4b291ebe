# Tandem: the two commands a newcomer needs are `make demo` and `make test`.
# Both install dependencies (idempotent) and build first.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps configure build linux-guest debian-guest demo test test-asan asan-configure test-asan-unit fuzz-configure fuzz-build fuzz fuzz-regress bench clean install lab lab-down

all: build

deps:
	@bash deploy/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The Linux guest image alone (kernel + initramfs, guest/linux/build.sh); `build` includes it.
linux-guest: configure
	@cmake --build $(BUILD) -j $(JOBS) --target linux-guest

# The Debian guest alone (guest/debian, docs/debian-guest.md): its kernel and the ext4 root
# image of Debian trixie riscv64 packages, under $(BUILD)/guest/debian.
debian-guest: configure
	@cmake --build $(BUILD) -j $(JOBS) --target debian-guest

# Builds only what the demo runs (target demo-deps: tandem, tandemd, tandemctl, the guests,
# the Linux image), not the tests and benchmarks.
demo: configure
	@cmake --build $(BUILD) -j $(JOBS) --target demo-deps
	@bash tools/demo.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer, in a separate build
# directory (-O1 -g1, see TANDEM_SANITIZE_OPT_FLAGS). Any report fails its test: UBSan does not
# recover, ASan aborts on the first error, LeakSanitizer runs at exit.
SANITIZER_ENV = ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

asan-configure: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_SANITIZE=ON -DTANDEM_LINUX_GUEST=OFF >/dev/null

# Everything labelled asan (unit suites, the tandem binary's tests, guest diffs): manual, long.
test-asan: asan-configure
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && $(SANITIZER_ENV) ctest --output-on-failure -j $(JOBS) -L asan --timeout 900

# The subset CI runs after `make test`: the GoogleTest suites of vmm, vmm-hooks, checkpoint,
# replicator, fencing and netsim, building only the libraries, those tests and the guests.
# The Linux guest that `make test` built (if any) boots in checkpoint_protect_replay_test.
ASAN_LINUX_IMAGES = $(if $(wildcard $(BUILD)/guest/linux/Image),TANDEM_LINUX_IMAGES=$(abspath $(BUILD)/guest/linux))
test-asan-unit: asan-configure
	@cmake --build $(ASAN_BUILD) -j $(JOBS) --target asan-unit
	@cd $(ASAN_BUILD) && $(SANITIZER_ENV) $(ASAN_LINUX_IMAGES) ctest --output-on-failure -j $(JOBS) -L asan-unit --timeout 900

# libFuzzer targets (fuzz/, docs/fuzzing.md) in their own clang build directory: every
# library with ASan + UBSan + coverage; only the libraries the targets link are built.
# `make fuzz` runs each target for FUZZ_SECONDS (FUZZ_TARGETS="a b" for some); `make
# fuzz-regress` runs each once over its corpus (CI, after test-asan-unit). Seeds come from the
# repository, from fuzz_make_seeds, and from $(BUILD)'s guests when `make build` ran.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz-configure: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang-16 -DCMAKE_CXX_COMPILER=clang++-16 -DTANDEM_BUILD_GUESTS=OFF -DTANDEM_LINUX_GUEST=OFF >/dev/null

fuzz-build: fuzz-configure
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

fuzz: fuzz-build
	@bash fuzz/run.sh fuzz $(FUZZ_BUILD) $(BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	@bash fuzz/run.sh regress $(FUZZ_BUILD) $(BUILD) $(FUZZ_TARGETS)

bench: build
	@bash bench/run.sh $(BUILD)

# Installs the binaries, example configs, systemd units and the OCF agent (CMake install
# rules) under PREFIX (DESTDIR honoured); then, as root, the tandem user and state dirs.
PREFIX ?= /usr/local
install: build
	@bash deploy/install.sh --build-dir $(BUILD) --prefix $(PREFIX)

# A two-host deployment in network namespaces (root): `make lab`, then `make lab-down`.
LAB_STATE ?= /tmp/tandem-lab
lab: build
	@bash deploy/lab/lab.sh up --build-dir $(BUILD) --state-dir $(LAB_STATE)

lab-down:
	@bash deploy/lab/lab.sh down --state-dir $(LAB_STATE)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
