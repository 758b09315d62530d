# Two commands do everything on a fresh machine:
#   make demo   create .venv, install, run the main job
#   make test   create .venv, install, lint, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean

# torch==2.13.0 first: on these machines it is a CPU wheel on disk. Installing the project
# afterwards finds torch>=2.2 already satisfied and never pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/descentlab descend "1.2*x**2 + 4" --start -3 --lr 0.2 --steps 10 --trace
	$(BIN)/descentlab descend "x**2" --start 1.8 --lr 0.1 --tol 0.01
	$(BIN)/descentlab descend himmelblau --start -0.4,-0.65 --optimizer adam --lr 0.05 --steps 500
	$(BIN)/descentlab descend himmelblau --grid 100 --lr 0.01 --steps 100
	$(BIN)/descentlab fit quadratic --epochs 10 --lr 1e-5
	$(BIN)/descentlab fit mnist --model mlp

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
