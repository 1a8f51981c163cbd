"""The HTML report: self-contained, and rendered by a real headless browser (Debian's chromium) offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fedsafe.experiments.demo import run_demo
from fedsafe.report.html import build_report, find_manifests, write_report


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A real (tiny) demo: two trainings, three attacks each, its manifest, figure and run directories."""
    root = tmp_path_factory.mktemp("results")
    run_demo(root, tiny=True)
    return root


def _external_references(text: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)[^"' >]*""", text, flags=re.I)


def test_results_report_is_self_contained(results):
    text = build_report(results)
    assert _external_references(text) == []
    assert "<script" not in text.lower()
    assert text.count("data:image/png;base64,") >= 1  # the demo's figure
    assert "Do the claims hold here?" in text and 'class="heatmap"' in text
    assert "synthetic" in text and "epsilon" in text  # the setup names the data and the privacy it gives
    assert "Demo: an insider attacks a federation" in text


def test_run_report_shows_its_attack_evaluations(results):
    run = sorted((results / "runs").iterdir())[0]
    text = build_report(run)
    assert "Attack evaluations" in text and text.count('class="heatmap"') == 3
    assert "data:image/png;base64," in text  # clean accuracy per round
    assert _external_references(text) == []


def test_one_reproduction_folder_and_errors(results, tmp_path):
    (manifest,) = find_manifests(results)
    assert "Demo" in build_report(manifest.parent)
    with pytest.raises(FileNotFoundError, match="neither a results directory"):
        build_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        build_report(tmp_path / "absent")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_report_renders_offline_in_headless_chromium(results, tmp_path):
    from PIL import Image

    page = write_report(results, tmp_path / "report.html")
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--proxy-server=127.0.0.1:9",  # any network request would fail: the page must not need one
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = page.resolve().as_uri()
    shot = tmp_path / "shot.png"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2000", url], check=True, timeout=180,
                   capture_output=True, env=env)
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, timeout=180, capture_output=True, text=True,
                         env=env).stdout

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 10  # not blank
    assert (pixels < 200).mean() > 0.01  # text, tables and figures drawn, not a white page
    assert dom.count("<table") >= 5  # the demo's table, setup tables and the six heat-maps
    assert re.search(r'<img[^>]+src="data:image/png;base64,', dom)
    assert "Do the claims hold here?" in dom and "fedsafe report" in dom
