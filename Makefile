# Every target sets itself up: the virtualenv lives outside the clone (scripts/bootstrap.sh).
SHELL := /bin/bash
VENV = $(shell scripts/bootstrap.sh)

.PHONY: demo test typecheck bench-ingest clean-data wheel

demo:                ## run the whole pipeline on the embedded default (local Spark + Delta + demo crawl)
	@venv=$(VENV) && "$$venv/bin/hybridrec" pipeline --conf conf/local.yaml

test:                ## the whole test suite (what CI runs)
	@venv=$(VENV) && "$$venv/bin/python" -m pytest -q tests && "$$venv/bin/python" -m mypy

typecheck:
	@venv=$(VENV) && "$$venv/bin/python" -m mypy

wheel:
	@venv=$(VENV) && "$$venv/bin/python" setup.py -q bdist_wheel

clean-data:          ## forget the local tables and demo crawl
	rm -rf .hybridrec
