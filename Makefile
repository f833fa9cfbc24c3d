PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: with torch already satisfied pip never looks for a CUDA build.
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[tensorflow,jax,generation,keras-cv,lora,ray,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/genaug train --balanced --epochs 15 --color-mode grayscale --output-dir outputs --model-dir models

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check genaug training tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/loader_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
