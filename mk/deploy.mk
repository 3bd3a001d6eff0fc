# mk/deploy.mk: `make test-deploy`, the pre-fork recipes of docs/DEPLOYING.md run briefly
# (tests/deploy/run_deploy.py, ~5 s): gunicorn with 2 workers, gunicorn --preload's ForkedError,
# uWSGI lazy-apps with 2 workers (pyuwsgi: uWSGI as a prebuilt wheel),
# Node cluster with 2 workers, worker_threads. gunicorn is installed into target/pyenv beside
# the other Python test dependencies, with pyuwsgi.

DEPLOY_STAMP := $(PYENV)/.portway-deploy-deps

.PHONY: test-deploy

$(DEPLOY_STAMP): mk/deploy.mk | bindings-ready
	$(PYENV)/bin/python -m pip install -q --disable-pip-version-check gunicorn pyuwsgi
	touch $@

test-deploy: bindings-ready $(DEPLOY_STAMP)
	@command -v curl >/dev/null || { echo "installing curl"; (apt-get update -qq && apt-get install -y -qq curl) >/dev/null; }
	$(PYTHON) tests/deploy/run_deploy.py --python $(PYENV)/bin/python
