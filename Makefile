# Every target sets itself up: the virtualenv lives outside the clone (scripts/bootstrap.sh).
SHELL := /bin/bash
VENV = $(shell scripts/bootstrap.sh)

.PHONY: demo test typecheck bench-ingest clean-data wheel

demo:                ## run the whole pipeline on the embedded default (local Spark + Delta + demo crawl)
	@venv=$(VENV) && "$$venv/bin/hybridrec" pipeline --conf conf/local.yaml

# mypy's cache lives with the virtualenv (keyed by the requirements), so a fresh clone does not
# re-analyse pyspark, numpy and pandas (mypy.ini): 25 s cold, 10 s with that cache.
MYPY = "$$venv/bin/python" -m mypy --cache-dir "$$venv/.mypy_cache"

test:                ## the whole test suite (what CI runs)
	@venv=$(VENV) && "$$venv/bin/python" -m pytest -q tests && $(MYPY)

typecheck:
	@venv=$(VENV) && $(MYPY)

wheel:               ## dist/hybridrec-<v>-py3-none-any.whl, and its copy -pyfiles.zip for spark-submit --py-files
	@venv=$(VENV) && "$$venv/bin/python" -m pip wheel --no-deps --no-build-isolation -q -w dist . && rm -rf build \
	  && for w in dist/hybridrec-*-py3-none-any.whl; do cp "$$w" "$${w%-py3-none-any.whl}-pyfiles.zip"; done && ls dist

clean-data:          ## forget the local tables and demo crawl
	rm -rf .hybridrec
