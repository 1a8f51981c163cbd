"""fedsafe on Flower (flwr 1.41, Message API): the same federation as the in-process simulator, on Flower's
simulation engine or on real, TLS-authenticated processes.

* :mod:`fedsafe.flower.app`: the run config both sides are driven by, record conversion, the shared federation;
* :mod:`fedsafe.flower.strategy`: ``FedSafeStrategy`` (a ``FedAvg``) - per-client noisy downlinks, fedsafe's
  aggregation and server hooks, the run directory;
* :mod:`fedsafe.flower.client_app` / :mod:`fedsafe.flower.server_app`: the ClientApp and ServerApp;
* :mod:`fedsafe.flower.simulate`: ``simulate(cfg, run_dir)`` on the simulation engine;
* :mod:`fedsafe.flower.deploy`: certificates, node keys, SuperLink / SuperNode processes, ``deploy(cfg, ...)``;
* :mod:`fedsafe.flower.recorder`: ``RecordingStrategy``, which records any Flower app's federation as a run
  directory; :mod:`fedsafe.flower.recording` and :mod:`fedsafe.flower.audit_data` read such a recording and the
  user's audit data for ``fedsafe audit`` (these two without Flower).

Nothing here is imported by ``import fedsafe``; Flower is needed only by these modules
(``pip install 'fedsafe[flower]'``).
"""
