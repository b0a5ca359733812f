"""From a finished sweep to a records folder: the single-file bundle (bundle.py, its size being the
run's code bytes), the runtime it calls (runtime.py), the README/submission writer and `crownq-submit`."""
