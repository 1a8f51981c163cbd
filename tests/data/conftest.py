"""Fixtures the data tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsafe.data import decode


@pytest.fixture
def count_decodes(monkeypatch):
    """Count calls of the real decoder."""
    calls = []
    real = decode.decode_image

    def counting(path, **kwargs):
        calls.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(decode, "decode_image", counting)
    return calls
