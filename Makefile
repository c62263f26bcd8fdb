# Two entry points: `make demo` (the main job on the synthetic default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_TMPDIR ?= /tmp/merray

.PHONY: install demo test test-fast lint clean

# The environment is about 7.5 GB (PyTorch with its CUDA libraries); a full disk otherwise
# fails half-way through pip with "No space left on device"; a new one is checked first.
NEED_GB := 8

$(STAMP): pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ ! -d $(VENV) ] && [ "$$free" -lt $(NEED_GB) ]; then \
		echo "make: the environment ($(VENV)) needs about $(NEED_GB) GB; $$free GB is free on the disk" \
			"holding $(CURDIR). Free some space (df -h $(CURDIR)) and run make again." >&2; \
		exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	@# OpenCV's contrib build (TV-L1 flow) replaces the plain one; both at once break `import cv2`
	$(BIN)/python -m pip uninstall -y -q opencv-python-headless 2>/dev/null || true
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: a LOSO on the synthetic default set (no --data-root), then its report.
demo: $(STAMP)
	mkdir -p $(RAY_TMPDIR)
	$(BIN)/mer-ray train --config experiments/configs/demo.yaml \
		--workdir data/demo --storage-path data/demo/results --name demo
	$(BIN)/mer-ray report data/demo/results --out data/demo/report

# Every tier: unit, Ray and end-to-end tests (CI runs this).
test: $(STAMP)
	mkdir -p $(RAY_TMPDIR)
	$(BIN)/python -m pytest -q -m "" --durations=20

# The unit tier only: no Ray, seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mer_ray tests experiments benchmarks

clean:
	rm -rf data/demo .pytest_cache
