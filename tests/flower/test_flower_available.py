import importlib.util

import pytest


def test_flower_is_installed():
    if importlib.util.find_spec("flwr") is None:
        pytest.skip("Flower is not installed: the tests of fedsafe.flower need pip install -e '.[dev,flower]'")
    import flwr

    assert flwr.__version__ == "1.41.0"  # the version FLOWER.md and the app were checked against
