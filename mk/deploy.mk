# mk/deploy.mk: `make test-deploy`, the pre-fork recipes of docs/DEPLOYING.md run briefly
# (tests/deploy/run_deploy.py, ~5 s): gunicorn with 2 workers, gunicorn --preload's ForkedError,
# Node cluster with 2 workers, worker_threads. gunicorn is installed into target/pyenv beside
# the other Python test dependencies.

DEPLOY_STAMP := $(PYENV)/.portway-deploy-deps

.PHONY: test-deploy

$(DEPLOY_STAMP): | bindings-ready
	$(PYENV)/bin/python -m pip install -q --disable-pip-version-check gunicorn
	touch $@

test-deploy: bindings-ready $(DEPLOY_STAMP)
	@command -v curl >/dev/null || { echo "installing curl"; (apt-get update -qq && apt-get install -y -qq curl) >/dev/null; }
	$(PYTHON) tests/deploy/run_deploy.py --python $(PYENV)/bin/python
