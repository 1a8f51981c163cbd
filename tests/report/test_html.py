"""The HTML report: self-contained, and rendered by a real headless browser (Debian's chromium) offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fedsafe.config import config_hash, load_config, to_yaml
from fedsafe.report.html import build_report, find_manifests, write_report
from fedsafe.reproduce.demo_reproduction import run_demo
from fedsafe.runs import open_run


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
    assert "point(s) in numbers</summary>" in text  # each verdict's points, folded under it


def test_a_verdicts_points_are_a_folded_table_in_its_own_numbers():
    from fedsafe.report.elements import verdicts
    from fedsafe.verdicts.claims import Comparison, compare

    v = compare("DN lowers ASR", [Comparison("step 0.005", [0.1, 0.2, 0.15], [0.3, 0.35, 0.4], seeds=[0, 2, 3])],
                expect="lower", names=("DN", "AT"))
    text = verdicts([v.to_dict()])
    (pt,) = v.points
    row = re.search(r"<details><summary>1 point\(s\) in numbers</summary><table>.*?<tbody><tr>(.*?)</tr>", text)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:4] == ["step 0.005", pt.outcome, "3", "0 2 3"]
    assert cells[6] == f"{pt.difference:.3g}" and cells[8] == f"{pt.p:.2g}"
    assert verdicts([{"claim": "c", "status": "holds", "evidence": "e"}]).count("<details>") == 0  # older files


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


def test_a_run_shows_the_noise_it_used_not_the_hand_set_value(tmp_path):
    """A calibrated run: its config holds the hand-set s_U (0), its privacy report the s_U it ran with."""
    cfg = load_config(overrides=["federation.uplink_clip=10", "privacy.calibrate={epsilon: 2.0}",
                                 "federation.uplink_noise=0.0"])
    store = open_run(tmp_path, config_hash=config_hash(cfg)).store
    store.write_header(config_text=to_yaml(cfg), data_report={"task": "synthetic", "synthetic": True}, splits={},
                       privacy_report={"noise": "calibrated (NbAFL)", "sigma_uplink": 0.0123,
                                       "sigma_downlink": 0.0456, "clip": 10.0, "delta": 1e-5,
                                       "pld": {"epsilon": 2.0, "epsilon_uplink": 1.5, "epsilon_downlink": 1.9}})
    text = build_report(tmp_path)
    row = re.search(r"<td>calibrated \(NbAFL\)</td>(.*?)</tr>", text).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', row)[:3] == ["0.0456", "10", "0.0123"]  # s_D, C, s_U
