"""The Flower tests need ``flwr`` (``pip install -e '.[dev,flower]'``): without it each module that needs it is
skipped with that reason (``pytest.importorskip`` at its top); the deployment helpers that do not need it
(certificates, processes) are still tested. ``test_flower_available.py`` runs the suite with ``flwr`` hidden."""
