"""The Flower tests need ``flwr`` (``pip install -e '.[dev,flower]'``): without it they are not collected, and
``test_flower_available.py`` says why."""

import importlib.util

if importlib.util.find_spec("flwr") is None:
    collect_ignore_glob = ["test_[!f]*.py", "_helpers.py"]
