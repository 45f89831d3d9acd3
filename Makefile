# Common tasks; each target is one documented command (README: Development).
PYTHON ?= python

.PHONY: install app test-fast test bench mutate lint lock docker

install:  ## everything: web app, Dask, PostgreSQL, calibration, test tools
	$(PYTHON) -m pip install -e '.[all,dev]'

app:  ## the web explorer on http://localhost:8501
	batchlab app

test-fast:  ## the suite without the tests marked slow (fresh installs, a real server)
	$(PYTHON) -m pytest -q -m 'not slow'

test:  ## the whole suite, as CI runs it
	$(PYTHON) -m pytest -q

bench:  ## the engines on 1,000,000 requests per mode, then the store
	batchlab bench
	batchlab bench-store

mutate:  ## mutation testing of the module [tool.mutmut] names (pyproject.toml); results: mutmut results
	mutmut run

lint:
	ruff check .

lock:  ## requirements.lock from pyproject.toml: what the Docker image installs
	$(PYTHON) -m pip install --dry-run --ignore-installed --quiet --report .lock-report.json '.[web,postgres,dask]'
	$(PYTHON) .ci/lock.py .lock-report.json requirements.lock
	rm -f .lock-report.json

docker:  ## the web image, and the calibration image (torch CPU wheels)
	docker build -t batchlab .
	docker build --target calibrate -t batchlab-calibrate .
