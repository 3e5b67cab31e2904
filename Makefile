# `make train` and `make test` set everything up on a fresh machine: the venv, the packages, the fonts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A second venv without MXNet (today's numpy), where the ONNX reading path is tested.
ONNX_VENV := .venv-onnx
DEJAVU_DIR := /usr/share/fonts/truetype/dejavu
DEJAVU_FONTS := DejaVuSans DejaVuSans-Bold DejaVuSansMono DejaVuSansMono-Bold DejaVuSerif DejaVuSerif-Bold
TRAIN_ARGS ?=

.PHONY: setup onnx-venv dev-deps bench-deps fonts train test lint bench bench-own-data clean

setup: $(VENV)/.installed fonts

# The pinned packages, then this project itself (editable: `from lstm_ocr import Reader` works from any folder).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Test and lint tools (requirements-dev.txt), never needed to train, read or serve.
dev-deps: $(VENV)/.dev-installed

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt numpy==1.23.5
	touch $@

onnx-venv: $(ONNX_VENV)/.installed

$(ONNX_VENV)/.installed: requirements-onnx.txt
	$(PYTHON) -m venv $(ONNX_VENV)
	$(ONNX_VENV)/bin/python -m pip install --quiet -r requirements-onnx.txt
	touch $@

# Bench-only packages (wheezy.captcha, ddddocr: requirements-bench.txt), numpy pinned beside MXNet.
bench-deps: $(VENV)/.bench-installed

$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-bench.txt numpy==1.23.5
	touch $@

# Freely licensed fonts: the captcha package's DroidSansMono and Debian's DejaVu fonts where
# /usr/share/fonts has them (both offline), then more from Debian's font packages, fetched without
# installing them (lstm_ocr/fetch_fonts.py; a package that cannot be had is a warning, see font/README.md).
fonts: $(VENV)/.installed
	cp "$$($(PY) -c 'import captcha, os; print(os.path.dirname(captcha.__file__))')/data/DroidSansMono.ttf" font/
	for name in $(DEJAVU_FONTS); do \
		if [ -f $(DEJAVU_DIR)/$$name.ttf ]; then cp $(DEJAVU_DIR)/$$name.ttf font/; fi; \
	done
	$(PY) -m lstm_ocr.fetch_fonts font/

train: setup
	$(PY) lstm_ocr_train.py $(TRAIN_ARGS) font/

test: setup onnx-venv dev-deps
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: setup onnx-venv bench-deps
	$(PY) bench/run_all.py

# Fine-tuning on two looks of another library's captchas, 200 and 1,000 images (about 10 minutes on 2 cores).
bench-own-data: setup bench-deps
	$(PY) bench/own_data.py

clean:
	rm -rf $(VENV) $(ONNX_VENV) font/*.ttf
