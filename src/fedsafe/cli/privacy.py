"""``fedsafe privacy``: NbAFL noise calibration and what a run's noise really gives (design §4).

``calibrate`` goes from a target (epsilon, delta) to the NbAFL noise, then asks the accountant what that noise
gives and what noise the accountant itself would need. ``account`` goes from the noise a run used to its
(epsilon, delta) per channel. Both print every number under both sensitivities (design §4): NbAFL's 2C/m
and the unconditional 2C, each table naming its own, with the "DP" label where epsilon <= 10 at delta <= 1e-5.
"""

from __future__ import annotations

import json
import math

import typer
from rich.table import Table

from ..privacy import (
    ACCOUNTANTS,
    DP_MAX_DELTA,
    DP_MAX_EPSILON,
    SENSITIVITIES,
    PrivacyReport,
    TargetNoise,
    account_run_both,
    calibrate_nbafl,
    noise_for_target,
)
from ..privacy.noise_scale import NoiseScale, noise_scale
from ..runs.layout import PRIVACY_REPORT
from .choices import choice
from .console import fail, out, usage_error

app = typer.Typer(no_args_is_help=True, add_completion=False)  # completion: the fedsafe group's

# The CLI solves the inverse to 1e-4 (relative): the PLD accountant costs ~50 ms an evaluation.
_INVERSE_RTOL = 1e-4


def _num(x: float) -> str:
    """Five significant digits: the tables must fit 80 columns."""
    return "inf" if math.isinf(x) else f"{x:.5g}"


def _parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise usage_error(f"--weights must be comma-separated numbers, got {text!r}.") from None


def _report_table(report: PrivacyReport, title: str) -> Table:
    tab = Table(title=title)
    for name in ("channel", "sens.", "std", "z", "eps RDP", "eps PLD"):
        tab.add_column(name, justify="left" if name == "channel" else "right")
    rows = [("uplink", report.uplink)]
    if len(set(report.weights)) == 1:
        rows.append(("downlink", report.downlink[0]))
    else:
        rows.extend((f"downlink c{ch.client}", ch) for ch in report.downlink)
    for label, ch in rows:
        tab.add_row(label, _num(ch.sensitivity), _num(ch.sigma), _num(ch.noise_multiplier),
                    _num(ch.epsilon_rdp), _num(ch.epsilon_pld))
    return tab


def _print_report(report: PrivacyReport, title: str) -> None:
    out.print(_report_table(report, f"{title}: {SENSITIVITIES[report.sensitivity][0]}"))
    legend = f"uplink: each client against the {report.uplink.adversary}"
    if report.num_clients > 1:
        who = "each client" if len(set(report.weights)) == 1 else "client cI"
        legend += f"; downlink: {who} against {report.downlink[0].adversary}"
    out.print(f"{legend}. z = std / sens.", highlight=False)
    for ch in (report.uplink, *report.downlink):
        if ch.reason:
            who = "uplink" if ch.client is None else f"downlink c{ch.client}"
            out.print(f"{who}: {ch.reason}", highlight=False)
    out.print(f"{report.accountant.upper()} (headline): epsilon uplink = {_num(report.epsilon_uplink)}, "
              f"downlink (worst client) = {_num(report.epsilon_downlink)}, at delta = {report.delta:g} "
              f"over T = {report.rounds} rounds; noise {report.noise}.", highlight=False)
    verdict = report.dp or (f"not DP (that needs epsilon <= {DP_MAX_EPSILON:g} at delta <= {DP_MAX_DELTA:g}; "
                            f"{SENSITIVITIES[report.sensitivity][0]})")
    out.print(f"Neighbouring: {report.neighbouring}. Label: {verdict}.", highlight=False)


def _print_reports(reports: dict[str, PrivacyReport], title: str) -> None:
    for report in reports.values():
        _print_report(report, title)


def _inverse(*, target_epsilon: float, delta: float, clip: float, m: int, rounds: int, clients: int,
             weights: list[float] | None) -> dict[str, list[TargetNoise]]:
    """Per sensitivity, the noise each accountant needs (s_U calibrated, s_D on top of it)."""
    return {sensitivity: [noise_for_target(target_epsilon=target_epsilon, delta=delta, clip=clip, min_local_size=m,
                                           rounds=rounds, num_clients=clients, weights=weights,
                                           accountant=accountant, sensitivity=sensitivity, rtol=_INVERSE_RTOL)
                          for accountant in ACCOUNTANTS] for sensitivity in SENSITIVITIES}


def _print_inverse(needs: dict[str, list[TargetNoise]], *, entries: int | None = None, clients: int = 1,
                   weights: list[float] | None = None, clip: float | None = None) -> None:
    """The noise each accountant needs; with ``entries``, also what it leaves of the model (received noise / C)."""
    first = next(iter(needs.values()))[0]
    out.print(f"Noise the accountants need for epsilon = {first.target_epsilon:g} at delta = {first.delta:g} "
              f"over T = {first.rounds} rounds:", highlight=False)
    tab = Table()
    names = ("sensitivity", "accountant", "z", "s_U", "s_D", *(("noise / C",) if entries is not None else ()))
    for name in names:
        tab.add_column(name, justify="left" if name in ("sensitivity", "accountant") else "right")
    for sensitivity, rows in needs.items():
        for need in rows:
            scale = _scale(entries, sigma_up=need.sigma_uplink, sigma_down=need.sigma_downlink, clients=clients,
                           weights=weights, clip=clip)
            tab.add_row(SENSITIVITIES[sensitivity][0], need.accountant.upper(), _num(need.noise_multiplier),
                        _num(need.sigma_uplink), _num(need.sigma_downlink),
                        *(() if scale is None else (_num(scale.received_to_clip or math.nan),)))
    out.print(tab)
    if entries is not None:
        out.print(f"noise / C: the L2 norm of the noise a client receives each round, over the clip C (a model of "
                  f"D = {entries} entries; at 1 or more every client starts from more noise than model).",
                  highlight=False)


_ENTRIES_HELP = (f"D, the model's floating-point entries (every one is noised; a run's {PRIVACY_REPORT} has it as "
                 "noise_scale.entries): also print the noise's norm beside the clip.")


def _scale(entries: int | None, *, sigma_up: float, sigma_down: float, clients: int, weights: list[float] | None,
           clip: float | None) -> NoiseScale | None:
    if entries is None:
        return None
    return noise_scale(std_uplink=sigma_up, std_downlink=sigma_down, entries=entries,
                       weights=weights or [1.0] * clients, clip=clip)


def _print_scale(scale: NoiseScale | None) -> None:
    if scale is None:
        return
    beside = "" if scale.received_to_clip is None else f", {_num(scale.received_to_clip)} x the clip C"
    out.print(f"The noise beside a model of D = {scale.entries} entries (L2 norms): averaged uplink noise "
              f"{_num(scale.averaged_uplink_norm)}, downlink {_num(scale.downlink_norm)}; a client receives "
              f"{_num(scale.received_norm)}{beside}.", highlight=False)
    if (warning := scale.warning()) is not None:
        out.print(f"Warning: {warning}.", highlight=False)


def _needs_json(needs: dict[str, list[TargetNoise]]) -> dict[str, list[dict[str, object]]]:
    return {sensitivity: [need.to_dict() for need in rows] for sensitivity, rows in needs.items()}


@app.command()
def calibrate(
    epsilon: float = typer.Option(..., "--epsilon", help="Target epsilon."),
    delta: float = typer.Option(1e-5, "--delta", help="Target delta."),
    clip: float = typer.Option(..., "--clip", help="C, the L2 clipping norm of the uploads."),
    m: int = typer.Option(..., "--m", help="m, the size of the smallest local data set."),
    exposures: int = typer.Option(None, "--L", help="L, uploads per client (default: T)."),
    rounds: int = typer.Option(..., "--T", help="T, the number of rounds."),
    clients: int = typer.Option(..., "--N", help="N, the number of clients."),
    accountant: str = typer.Option("rdp", "--accountant", click_type=choice(ACCOUNTANTS),
                                   help="Headline accountant."),
    entries: int = typer.Option(None, "--entries", min=1, help=_ENTRIES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """NbAFL noise for a target (epsilon, delta), and what the accountant says that noise really gives."""
    try:
        cal = calibrate_nbafl(epsilon=epsilon, delta=delta, clip=clip, min_local_size=m,
                              exposures=rounds if exposures is None else exposures, rounds=rounds,
                              num_clients=clients)
        reports = account_run_both(sigma_uplink=cal.sigma_uplink, sigma_downlink=cal.sigma_downlink, clip=clip,
                                   min_local_size=m, rounds=rounds, num_clients=clients, delta=delta,
                                   calibrated=True, accountant=accountant)
        needs = _inverse(target_epsilon=epsilon, delta=delta, clip=clip, m=m, rounds=rounds, clients=clients,
                         weights=None)
        scale = _scale(entries, sigma_up=cal.sigma_uplink, sigma_down=cal.sigma_downlink, clients=clients,
                       weights=None, clip=clip)
        if as_json:
            out.print_json(json.dumps({
                "nbafl": cal.to_dict(),
                "accountant": {name: report.to_dict() for name, report in reports.items()},
                "needed": _needs_json(needs), **({"noise_scale": scale.to_dict()} if scale else {})}))
            return
        tab = Table(title="NbAFL calibration (Wei et al. 2020)")
        tab.add_column("quantity")
        tab.add_column("value", justify="right")
        for label, value in [("c = sqrt(2 ln(1.25/delta))", cal.c), ("dS_U = 2C/m", cal.sensitivity_uplink),
                             ("s_U (uplink std)", cal.sigma_uplink), ("s_D (downlink std)", cal.sigma_downlink)]:
            tab.add_row(label, _num(value))
        out.print(tab)
        out.print(cal.note, highlight=False)
        _print_scale(scale)  # NbAFL's noise beside the model; the accountants' needs get a column below
        _print_reports(reports, "What this noise really gives")
        if cal.exposures != cal.rounds:
            out.print(f"The accountant assumes every client in every round: it composes over T = {rounds}, "
                      f"not L = {cal.exposures} (conservative).", highlight=False)
        _print_inverse(needs, entries=entries, clients=clients, clip=clip)
    except ValueError as e:
        raise fail(str(e)) from None


@app.command()
def account(
    sigma_up: float = typer.Option(..., "--sigma-up", help="s_U, std of each client's upload noise."),
    sigma_down: float = typer.Option(0.0, "--sigma-down", help="s_D, std of each client's downlink noise."),
    clip: float = typer.Option(None, "--clip", help="C, the L2 clipping norm (omit: no clipping)."),
    m: int = typer.Option(..., "--m", help="m, the size of the smallest local data set."),
    rounds: int = typer.Option(..., "--T", help="T, the number of rounds."),
    clients: int = typer.Option(..., "--N", help="N, the number of clients."),
    delta: float = typer.Option(1e-5, "--delta", help="The delta to report epsilon at."),
    weights: str = typer.Option(None, "--weights", help="Aggregation weights p_i, e.g. 300,500,200."),
    target_epsilon: float = typer.Option(None, "--target-epsilon",
                                         help="Also print the noise needed for this epsilon."),
    accountant: str = typer.Option("rdp", "--accountant", click_type=choice(ACCOUNTANTS),
                                   help="Headline accountant."),
    entries: int = typer.Option(None, "--entries", min=1, help=_ENTRIES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """The (epsilon, delta) per channel that a run with these noises gives, under both sensitivities."""
    p = _parse_weights(weights)
    try:
        reports = account_run_both(sigma_uplink=sigma_up, sigma_downlink=sigma_down, clip=clip, min_local_size=m,
                                   rounds=rounds, num_clients=clients, delta=delta, weights=p, calibrated=False,
                                   accountant=accountant)
        needs: dict[str, list[TargetNoise]] = {}
        if target_epsilon is not None:
            if clip is None:
                raise ValueError("--target-epsilon needs --clip: without clipping no noise is enough.")
            needs = _inverse(target_epsilon=target_epsilon, delta=delta, clip=clip, m=m, rounds=rounds,
                             clients=clients, weights=p)
        scale = _scale(entries, sigma_up=sigma_up, sigma_down=sigma_down, clients=clients, weights=p, clip=clip)
        if as_json:
            data: dict[str, object] = {"accountant": {name: report.to_dict() for name, report in reports.items()}}
            if needs:
                data["needed"] = _needs_json(needs)
            if scale:
                data["noise_scale"] = scale.to_dict()
            out.print_json(json.dumps(data))
            return
        _print_reports(reports, "Privacy of the run")
        if needs:
            _print_inverse(needs, entries=entries, clients=clients, weights=p, clip=clip)
        _print_scale(scale)
    except ValueError as e:
        raise fail(str(e)) from None
