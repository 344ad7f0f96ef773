# kmod-harness: `make run` runs the default job, `make test` the whole test suite.
# Both install what is missing first (Debian packages with apt, then a
# virtualenv with the package). Packages need root: sudo is used when not root.

PYTHON   ?= python3
VENV     ?= .venv
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
KERNEL   ?= debian:bookworm
PYTEST_ARGS ?=
# make test runs on two pytest-xdist workers (a test file's tests on one worker), each guest
# with one vCPU: under TCG each vCPU is one host thread, and two 1-vCPU guests side by side get
# more done on two cores than one 2-vCPU guest at a time. TEST_JOBS=1 runs one process.
TEST_JOBS ?= 2
ifeq ($(TEST_JOBS),1)
TEST_RUNNER := $(VENV)/bin/python -m pytest
else
TEST_RUNNER := HARNESS_CPUS=$${HARNESS_CPUS:-1} $(VENV)/bin/python -m pytest -n $(TEST_JOBS) --dist loadfile
endif
# Tests whose kernels cost far more than the default one, to get (a kernel built from source,
# ~20 min; another architecture's root made through qemu-user, 10-25 min) and to boot (a KASAN guest
# runs its steps 5-10x slower; an arm64 one 3x): each kind has its own target, so that `make test`
# stays under 30 minutes. `make test-all` and .ci/run run every one of them.
SLOW_KINDS := sanitizer or kunit or arches or debug_kernel or fuzz

# Building modules against a kernel tree (local:PATH) and kernels from source
# (debian-src:SUITE+FLAVOUR) with the host's compiler.
KERNEL_BUILD_PACKAGES := gcc make libc6-dev flex bison bc libelf-dev libssl-dev cpio xz-utils
# Debian/Ubuntu packages the harness needs on the host.
# Guests of the other architectures of harness/arches.py (--arch arm64, riscv64): their emulators
# (qemu-system-arm, qemu-system-misc), and qemu-user for their roots and module builds, with the
# binfmt_misc entries the binfmt target registers. tests/unit/test_arches.py holds both lists to the table.
ARCH_PACKAGES := qemu-system-arm qemu-system-misc qemu-user-static arch-test
BINFMTS := qemu-aarch64 qemu-riscv64
DEB_PACKAGES := qemu-system-x86 mmdebstrap bubblewrap debian-archive-keyring \
	apt kmod python3-venv udev busybox-static zstd openssh-client \
	$(KERNEL_BUILD_PACKAGES) $(ARCH_PACKAGES)
# What the tests need besides: a browser for the HTML report's test (tests/unit/test_html.py).
TEST_DEB_PACKAGES := chromium
SANITIZER_KERNEL := debian-src:trixie+debug
KUNIT_KERNEL := debian-src:trixie+kunit+gcov
SETUP_STAMP := $(VENV)/.setup-done

.PHONY: setup binfmt host-packages run test test-all test-unit test-vm test-sanitizers sanitizer-kernel sanitizer-kernel-id \
	lint clean help test-debug test-faults test-kunit test-kunit-cached kunit-kernel test-arches test-arches-cached \
	bench bench-ssh bench-roundtrip bench-stress bench-watch bench-arches mutation

help:
	@echo "make run     run the netlink module's job on $(KERNEL) (override: make run KERNEL=debian:trixie)"
	@echo "make test    unit tests, tests that boot real VMs on stock amd64 kernels, the workflow run locally (act)"
	@echo "make test-all         make test, then the sanitizer, KUnit and other architectures' tests below (what .ci/run does)"
	@echo "make test-arches      the tests of guests of other architectures (their roots: 10-25 min each the first time)"
	@echo "make test-faults      build $(SANITIZER_KERNEL) once (~14 min on 2 cores), then its sanitizer tests and fault walks (what .ci/run runs)"
	@echo "make test-sanitizers  the same kernel's sanitizer tests alone; make test-debug: all its tests, harness fuzz's too"
	@echo "make test-kunit       build $(KUNIT_KERNEL) once (~20 min on 2 cores), then the KUnit and coverage tests"
	@echo "make setup   install host packages and the virtualenv only"

host-packages:  # the Debian packages the harness needs on the host (also used by action.yml)
	@missing=$$(for p in $(DEB_PACKAGES) $(EXTRA_DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		[ -n "$(SUDO)" ] && echo "installing$$(echo " $$missing") with sudo (not root)"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(SETUP_STAMP): pyproject.toml
	$(MAKE) -s host-packages EXTRA_DEB_PACKAGES="$(TEST_DEB_PACKAGES)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

setup: $(SETUP_STAMP) binfmt

# Other architectures' programs run here through qemu-user once binfmt_misc knows them
# (harness/arches.py). Where systemd-binfmt runs, installing qemu-user-static did that; otherwise
# (containers, these machines) it is done here, on every setup: a registration lasts until the host reboots.
BINFMT := /proc/sys/fs/binfmt_misc
binfmt: host-packages
	@[ -e $(BINFMT)/register ] || $(SUDO) mount -t binfmt_misc binfmt_misc $(BINFMT) || \
		echo "warning: cannot mount binfmt_misc: guests of other architectures (--arch) will not work here"
	@for b in $(BINFMTS); do \
		[ ! -e $(BINFMT)/register ] || [ -e $(BINFMT)/$$b ] || \
		$(SUDO) sh -c "cat /usr/lib/binfmt.d/$$b.conf > $(BINFMT)/register" || \
		echo "warning: cannot register $$b with binfmt_misc: its architecture's guests will not work here"; \
	done

run: setup
	$(SUDO) $(VENV)/bin/harness run --kernel $(KERNEL)

test: setup
	$(TEST_RUNNER) -m "not ($(SLOW_KINDS))" --durations=30 $(PYTEST_ARGS)

test-all: test test-debug test-kunit test-arches

test-unit: setup
	$(VENV)/bin/python -m pytest -m "not vm and not workflow" $(PYTEST_ARGS)

test-vm: setup
	$(VENV)/bin/python -m pytest -m vm $(PYTEST_ARGS)

sanitizer-kernel: setup  # build (once) the sanitizer kernel the tests marked sanitizer boot
	$(SUDO) $(VENV)/bin/harness kernels fetch --kernel $(SANITIZER_KERNEL)

test-sanitizers: sanitizer-kernel
	HARNESS_SANITIZERS=1 $(VENV)/bin/python -m pytest -m sanitizer --durations=10 $(PYTEST_ARGS)

kunit-kernel: setup  # build (once) the KUnit + gcov kernel the tests marked kunit boot
	$(SUDO) $(VENV)/bin/harness kernels fetch --kernel $(KUNIT_KERNEL)

test-kunit: kunit-kernel
	HARNESS_KUNIT=1 $(VENV)/bin/python -m pytest -m kunit --durations=10 $(PYTEST_ARGS)

# The KUnit tests if their kernel is built, else skipped with a reason CI accepts (tests/allowed-skips.txt).
test-kunit-cached: setup
	$(VENV)/bin/python -m pytest -m kunit --durations=10 $(PYTEST_ARGS)

# Guests of other architectures than the host's (marker arches): their roots made first when missing.
test-arches: setup binfmt
	HARNESS_ARCHES=1 $(VENV)/bin/python -m pytest -m arches --durations=10 $(PYTEST_ARGS)

# The same tests if their roots are made, else skipped with a reason CI accepts (tests/allowed-skips.txt).
test-arches-cached: setup binfmt
	$(VENV)/bin/python -m pytest -m arches --durations=10 $(PYTEST_ARGS)

# The debug kernel's tests .ci/run runs: the sanitizer tests and harness faults' walks (markers
# sanitizer, debug_kernel), one at a time, each guest on two vCPUs: a walk boots its next guest
# ahead once a point has killed one, and a second worker's guests beside it made boots take 2-8x longer.
test-faults: sanitizer-kernel
	HARNESS_DEBUG_KERNEL=1 HARNESS_SANITIZERS=1 $(VENV)/bin/python -m pytest -m "sanitizer or debug_kernel" --durations=20 $(PYTEST_ARGS)

# Every test of the debug kernel (built once): the sanitizer tests, harness faults and harness fuzz
# (markers sanitizer, debug_kernel, fuzz), on make test's two workers.
test-debug: sanitizer-kernel
	HARNESS_DEBUG_KERNEL=1 HARNESS_SANITIZERS=1 $(TEST_RUNNER) -m "sanitizer or debug_kernel or fuzz" --durations=20 $(PYTEST_ARGS)

sanitizer-kernel-id:  # (after make setup) the sanitizer kernel's cache key: source package version + configuration hash
	@$(VENV)/bin/harness kernels resolve --kernel $(SANITIZER_KERNEL)

bench: setup  # harness run vs plain vng, phases, a cold run: the table in docs/PERFORMANCE.md
	$(SUDO) $(VENV)/bin/python bench/startup.py --reps 5 --cold --markdown results/bench-startup.md \
		--json results/bench-startup.json

bench-roundtrip: setup
	$(SUDO) $(VENV)/bin/python bench/roundtrip.py --json results/bench-roundtrip.json

bench-ssh: setup
	$(SUDO) $(VENV)/bin/python bench/ssh_commands.py --commands 20 --json results/bench-ssh.json

lint: setup  # ruff; mypy on the harness and all its tests (pyproject.toml [tool.mypy]); the import layers
	$(VENV)/bin/ruff check harness tests userspace bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) results .pytest_cache

mutation: setup  # mutants of the verdict code (pyproject.toml [tool.mutmut]); figures in docs/RELIABILITY.md
	$(VENV)/bin/pip install -q 'mutmut>=3.3'
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2 || true
	$(VENV)/bin/mutmut results

bench-stress: setup  # 40+ verdicts under load: the table in docs/RELIABILITY.md
	$(SUDO) $(VENV)/bin/python bench/stress.py --runs 40 --markdown results/bench-stress.md --json results/bench-stress.json

bench-arches: setup binfmt  # trixie on each architecture, alternated, module rebuilt each run (docs/PERFORMANCE.md)
	$(SUDO) $(VENV)/bin/python bench/arches.py --reps 3 --markdown results/bench-arches.md \
		--json results/bench-arches.json

bench-watch: setup  # edit to verdict: harness watch against a warm harness run per edit (docs/PERFORMANCE.md)
	$(SUDO) $(VENV)/bin/python bench/watch.py --edits 10 --rapid 5 --markdown results/bench-watch.md \
		--json results/bench-watch.json
