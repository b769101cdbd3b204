# Every target sets itself up: the virtualenv lives outside the clone (scripts/bootstrap.sh).
SHELL := /bin/bash
VENV = $(shell scripts/bootstrap.sh)

.PHONY: demo test test-fast typecheck lint-imports bench-ingest clean-data wheel

demo:                ## run the whole pipeline on the embedded default (local Spark + Delta + demo crawl)
	@venv=$(VENV) && "$$venv/bin/hybridrec" pipeline --conf conf/local.yaml

# mypy's cache lives with the virtualenv (keyed by the requirements), so a fresh clone does not
# re-analyse pyspark, numpy and pandas (mypy.ini): 25 s cold, 10 s with that cache.
MYPY = "$$venv/bin/python" -m mypy --cache-dir "$$venv/.mypy_cache"

# The package's layers (.importlinter): each imports only downward, function-local imports included.
LINT_IMPORTS = (cd lib && "$$venv/bin/lint-imports" --no-cache ../.importlinter)

test:                ## the whole test suite (what CI runs): every test, the types, the import layers
	@venv=$(VENV) && "$$venv/bin/python" -m pytest -q tests && $(MYPY) && $(LINT_IMPORTS)

test-fast:           ## the edit-test loop: unit and parity tests, no stage or pipeline runs (under 3 minutes)
	@venv=$(VENV) && "$$venv/bin/python" -m pytest -q -m "not slow and not stage" tests && $(MYPY) && $(LINT_IMPORTS)

typecheck:
	@venv=$(VENV) && $(MYPY)

lint-imports:
	@venv=$(VENV) && $(LINT_IMPORTS)

wheel:               ## dist/hybridrec-<v>-py3-none-any.whl, and its copy -pyfiles.zip for spark-submit --py-files
	@venv=$(VENV) && "$$venv/bin/python" -m pip wheel --no-deps --no-build-isolation -q -w dist . && rm -rf build \
	  && for w in dist/hybridrec-*-py3-none-any.whl; do cp "$$w" "$${w%-py3-none-any.whl}-pyfiles.zip"; done && ls dist

clean-data:          ## forget the local tables and demo crawl
	rm -rf .hybridrec
