# `make train` and `make test` set everything up on a fresh machine: the venv, the packages, the fonts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEJAVU_DIR := /usr/share/fonts/truetype/dejavu
DEJAVU_FONTS := DejaVuSans DejaVuSans-Bold DejaVuSansMono DejaVuSansMono-Bold DejaVuSerif DejaVuSerif-Bold
TRAIN_ARGS ?=

.PHONY: setup fonts train test lint bench bench-own-data clean

setup: $(VENV)/.installed fonts

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Freely licensed fonts every machine has offline: the captcha package's DroidSansMono, and
# Debian's DejaVu fonts where /usr/share/fonts has them.
fonts: $(VENV)/.installed
	cp "$$($(PY) -c 'import captcha, os; print(os.path.dirname(captcha.__file__))')/data/DroidSansMono.ttf" font/
	for name in $(DEJAVU_FONTS); do \
		if [ -f $(DEJAVU_DIR)/$$name.ttf ]; then cp $(DEJAVU_DIR)/$$name.ttf font/; fi; \
	done

train: setup
	$(PY) lstm_ocr_train.py $(TRAIN_ARGS) font/

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run_all.py

# Bench-only packages (requirements-bench.txt), never needed to train or read captchas.
$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-bench.txt numpy==1.23.5
	touch $@

# Fine-tuning on another library's captchas (about 40 minutes on 2 cores).
bench-own-data: setup $(VENV)/.bench-installed
	$(PY) bench/own_data.py

clean:
	rm -rf $(VENV) font/*.ttf
