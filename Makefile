# whylab: two commands on a fresh machine (Python 3.11, make, bash):
#   make run    set up .venv, run the whole DAG on the embedded default corpus, print the report path
#               (after a crash or a kill, run it again: it resumes where the dead run stopped)
#   make test   set up .venv, run the test suite (unit tests + the DAG end to end on config/test.yaml)
#   make lint   the static checks CI runs (repository hygiene, ruff, mypy, snakefmt, snakemake --lint)
#   make setup-llmc   only .venv-llmc: llmcompressor's own environment (transformers 5), for the
#               C15/C16 cross-check rule (make setup builds it too; about a minute)
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG ?= config/config.yaml
# The torch wheel index; leave empty to use pip's default (here: the CPU wheel on disk).
# Elsewhere on Linux, https://download.pytorch.org/whl/cpu keeps pip off the multi-GB CUDA build.
TORCH_INDEX ?=
EXTRA ?= cpu

BIN := $(VENV)/bin
STAMP := $(VENV)/.whylab-installed
# llmcompressor's environment: it needs transformers 5, which .venv cannot share (optimum-onnx
# caps transformers below 4.58). It lies beside VENV, where the rule thirdparty_llmcompressor
# looks for it (<VENV>-llmc, i.e. .venv-llmc). Its pins are workflow/envs/llmcompressor.yaml's,
# read from there: each conda `- name=version` (pytorch-cpu is torch), each pip `- name==version`.
LLMC_VENV := $(VENV)-llmc
LLMC_ENV := workflow/envs/llmcompressor.yaml
LLMC_STAMP := $(LLMC_VENV)/.whylab-installed
LLMC_PINS = $(shell sed -n -e '/python=\|- pip$$/d' -e 's/^ *- pytorch-cpu=/torch==/p' \
	-e 's/^ *- \([a-z0-9_.-]*\)=\([0-9][0-9.]*\)$$/\1==\2/p' -e 's/^ *- \([A-Za-z0-9_.-]*==[^ ]*\)$$/\1/p' $(LLMC_ENV))

.PHONY: setup setup-llmc run test lint report clean

setup: $(STAMP) $(LLMC_STAMP)

setup-llmc: $(LLMC_STAMP)

$(LLMC_STAMP): $(LLMC_ENV)
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (whylab needs Python 3.11; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(LLMC_VENV)
	$(LLMC_VENV)/bin/python -m pip install -q --upgrade pip
	$(LLMC_VENV)/bin/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(LLMC_VENV)/bin/python -m pip install -q $(LLMC_PINS)
	touch $@

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (whylab needs Python 3.11; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[$(EXTRA),test]'
	touch $@

# After a crash, kill or power loss, `make run` again resumes: a lock a dead run left is removed
# (never while a Snakemake process works here) and its half-done jobs are made again.
run: setup
	PYTHONPATH=$(CURDIR)/src $(BIN)/python -m whylab.recover --cores $(CORES) --configfile $(CONFIG) --show-failed-logs
	@PYTHONPATH=$(CURDIR)/src $(BIN)/python -c "import sys; from whylab.config import print_report_pages; print_report_pages(sys.argv[1:])" $(CONFIG)

test: setup
	$(BIN)/python -m pytest

# Static checks, as CI runs them: what git tracks (no results, no file over 1 MB, no YAML key given
# twice, no module over 400 lines), ruff (lint + format, no function over 60 statements), mypy,
# snakefmt, snakemake --lint.
lint: setup
	$(BIN)/python workflow/scripts/check_repository.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/snakefmt --check Snakefile workflow/Snakefile workflow/rules/
	$(BIN)/snakemake --lint --configfile $(CONFIG)

report: setup
	$(BIN)/snakemake --cores 1 --configfile $(CONFIG) --report reports/snakemake.html

clean:
	rm -rf results reports/index.html reports/snakemake.html .snakemake
