# mlx5lab: `make run` runs the main job, `make test` runs the tests. Each does its own set-up
# (Debian packages, QEMU build, virtualenv, guest image), idempotently, with caches outside the checkout.

SHELL := /bin/bash
CACHE ?= $(if $(MLX5LAB_CACHE),$(MLX5LAB_CACHE),$(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/mlx5lab)
export MLX5LAB_CACHE := $(CACHE)
VENV := $(CACHE)/venv
PY := $(VENV)/bin/python
KERNEL ?=
KERNEL_OPT := $(if $(KERNEL),--kernel $(KERNEL),)
export MLX5LAB_KERNEL := $(KERNEL)
ITERATIONS ?= 3

.PHONY: run test test-kernels test-soak test-verify-fix verify-seed-fixes test-debug-kernel debug-kernel test-quick setup host-packages venv qemu image lint bench clean-cache

# The main job: a short reboot-vs-reader campaign on the negative control (stock mlx5_core) and on the
# positive control (guard-reverted mlx5_core); prints both outcome tables and where the vmcores are.
run: setup
	$(VENV)/bin/mlx5lab controls $(KERNEL_OPT) --iterations $(ITERATIONS)

# tests/unit needs no QEMU, no root and no cache; tests/host needs the set-up's artefacts but boots no guest;
# tests/vm boots guests. Under `make test` a missing set-up artefact fails a test instead of skipping it.
test: setup
	MLX5LAB_FULL_TESTS=1 $(PY) -m pytest -q --durations=15 -m "not kernels and not soak and not verifyfix and not debugkernel" tests

# One Debian kernel of each suite (bullseye, bookworm, trixie, sid) boots with the card: about 350 MB of
# packages downloaded once, then one guest boot per kernel (2.7 min from an empty cache; README, "Kernels and patches").
test-kernels: setup
	MLX5LAB_FULL_TESTS=1 $(PY) -m pytest -q -s -m kernels tests/vm/test_kernels.py

# VM checks with a known intermittent failure (each names it), repeated until they are fixed.
test-soak: setup
	MLX5LAB_FULL_TESTS=1 $(PY) -m pytest -q -m soak tests

# verify-fix on the positive control with both example fixes of guest-images/fixes/, 2 base and 3 fixed
# iterations each: the two fixed builds the first time (~10 min), then 2 to 3 min of guests (README,
# "Kernels and patches").
test-verify-fix: setup
	MLX5LAB_FULL_TESTS=1 $(PY) -m pytest -q -m verifyfix tests/vm/test_verify_fix.py

# The seed's conclusion on the positive control: the vendor-style fix still panics, the write-up's own
# proposal is clean. Prints both verdicts; the evidence and verdicts.txt stay in VERIFY_OUT.
ifndef VERIFY_OUT
VERIFY_OUT := $(CACHE)/campaigns/verify-seed-fixes-$(shell date +%Y%m%d-%H%M%S)
endif
VERIFY_BASE ?= 3
VERIFY_FIX ?= 10
verify-seed-fixes: setup
	@mkdir -p $(VERIFY_OUT); set -o pipefail; \
	for fix in vendor-style seed-proposal; do \
	  $(PY) -m mlx5lab verify-fix $(KERNEL_OPT) --patch guest-images/fixes/$$fix.patch \
	    --base-iterations $(VERIFY_BASE) --iterations $(VERIFY_FIX) --out $(VERIFY_OUT)/$$fix \
	    | sed "s|^|$$fix: |"; echo "$$fix: exit status $$? (expected $$([ $$fix = vendor-style ] && echo 1 || echo 0))"; \
	done | tee $(VERIFY_OUT)/verdicts.txt; \
	grep -q "^vendor-style: exit status 1 " $(VERIFY_OUT)/verdicts.txt && \
	grep -q "^seed-proposal: exit status 0 " $(VERIFY_OUT)/verdicts.txt

# The debug kernel (KASAN, lockdep, hung-task and soft-lockup detectors) from Debian's linux-source, built
# once into the cache: about 35 minutes on two busy cores (README, "The debug kernel"). Not part of setup.
DEBUG_KERNEL ?= debug-6.1.192
debug-kernel: venv
	@scripts/setup-host.sh debug-kernel
	nice -n 15 $(PY) -m mlx5image.debugkernel $(DEBUG_KERNEL)

# The guest boots the debug kernel with the card; the no-poison positive control gives a KASAN report.
test-debug-kernel: setup debug-kernel
	MLX5LAB_FULL_TESTS=1 MLX5LAB_DEBUG_KERNEL=$(DEBUG_KERNEL) $(PY) -m pytest -q -s -m debugkernel tests/vm/test_debug_kernel.py

test-quick: venv
	$(PY) -m pytest -q tests/unit

setup: host-packages venv qemu image

host-packages:
	@scripts/setup-host.sh

venv: host-packages
	@scripts/setup-venv.sh $(VENV)

qemu: host-packages
	@qemu-device/build-qemu.sh >/dev/null

# The guest image, both race variants (the positive control's mlx5_core is built once, ~2 min) and the
# kernel's debug info for vmcore triage (~860 MB download once): all cached, so tests download nothing.
image: venv
	@$(VENV)/bin/mlx5lab image $(KERNEL_OPT) --variant stock --variant vulnerable --debuginfo >/dev/null

lint: venv
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/mlx5lab bench boot $(KERNEL_OPT)
	$(VENV)/bin/mlx5lab bench device $(KERNEL_OPT)
	$(VENV)/bin/mlx5lab bench race $(KERNEL_OPT)

clean-cache:
	rm -rf $(CACHE)
