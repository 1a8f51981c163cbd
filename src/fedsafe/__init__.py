"""fedsafe: security of federated learning on medical images.

Implements the Fed-Safe defense (distributed noise + server-side adversarial adaptation) and the
cross-round-noise (CRN) attack of Darzi et al.; see ``docs/design.md`` for the exact algorithms.
"""

__version__ = "0.1.0"
