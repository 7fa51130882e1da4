# `make demo`: set up .venv, train on the synthetic sample corpus, tag a sentence. `make test`: the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
TAGGER := $(VENV)/bin/tagger
DATA ?= ../shared/data

.PHONY: setup demo test bench-conll2003 bench-predict

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: setup
	$(TAGGER) train samples/en/train.txt --dev samples/en/dev.txt --test samples/en/test.txt \
		--output models/sample-en --config configs/sample.toml --force
	echo "Ilse Yilmaz, a spokesman for Quantix Labs, said shares of Helix Systems rose 3 percent in Stonehaven." | $(TAGGER) predict models/sample-en

test: setup
	$(PY) -m pytest -q

bench-conll2003: setup
	$(PY) bench/conll2003.py --data $(DATA)/conll2003

bench-predict: setup
	$(PY) bench/predict.py --data $(DATA)/conll2003
