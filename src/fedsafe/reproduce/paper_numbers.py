"""The two papers' reported numbers, as data, each with where it comes from.

Transcribed from the text extracted from the PDFs (``../shared/papers``): the CRN paper (Darzi et al., "The
hidden adversarial vulnerabilities of medical federated learning", ``003_1a9f4f0476dbd3d2.txt``) and Fed-Safe
(Darzi et al., "Fed-Safe: securing federated learning in healthcare against adversarial attacks",
``000_9a91d1df02d57be5.txt``). The extracted text has no page numbers: every number names its paper, section,
table and the line of the extracted file. Rates are stored as fractions (63.92% -> 0.6392), times in seconds;
``text`` keeps the cell as printed. A cell the extraction garbled is marked in ``note`` (its value is our
reading of it); a cell that is readable but doubtful is marked too.

>>> crn_table_1("Meningioma")["PGD-40"]["AASR"].value
0.3299
>>> crn_table_2("Meningioma")[("PGD", "CRN10")].text
'84.16%'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CRN_PAPER",
    "FEDSAFE_PAPER",
    "PAPER_NUMBERS",
    "PaperNumber",
    "crn_table_1",
    "crn_table_2",
    "fedsafe_table_1",
    "fedsafe_table_2",
    "lookup",
]

CRN_PAPER = "Darzi et al., The hidden adversarial vulnerabilities of medical federated learning (CRN paper)"
FEDSAFE_PAPER = "Darzi et al., Fed-Safe: securing federated learning in healthcare against adversarial attacks"
_CRN_FILE = "papers/003_1a9f4f0476dbd3d2.txt"
_FS_FILE = "papers/000_9a91d1df02d57be5.txt"


@dataclass(frozen=True)
class PaperNumber:
    """One reported number.

    Attributes:
        paper: "crn" or "fed-safe".
        table: "Table I", "Table II" (CRN) or "Table 1", "Table 2" (Fed-Safe), or "text".
        dataset: as printed ("Meningioma", "Glioma", "Pathology", "MRI").
        row: the row within the dataset (an attack such as "PGD-1+CRN10", or a step / eps value).
        column: the quantity ("ACC", "AASR", "time", "AETR", "ASR self", "ASR avg", ...).
        value: the number (a fraction for rates, seconds for times).
        text: the cell as printed in the extracted text.
        source: paper, section, table and line of the extracted file.
        note: garbled or doubtful cells, merged cells, ambiguities.
    """

    paper: str
    table: str
    dataset: str
    row: str
    column: str
    value: float
    text: str
    source: str
    note: str = ""


def _pct(text: str) -> float:
    return round(float(text.replace("%", "")) / 100, 6)


# -- CRN paper, Table I (Section IV.C "Efficiency gains from CRN"): eps 0.05, alpha 0.001, one batch ------------
_T1_LINES = {"Meningioma": 194, "Pathology": 197, "Glioma": 200}
_T1 = {  # dataset: (ACC, {attack: (AASR, time s)})
    "Meningioma": ("84.12%", {"PGD-1+CRN10": ("63.92%", "0.217"), "PGD-20": ("27.52%", "3.423"),
                              "PGD-40": ("32.99%", "6.794")}),
    "Pathology": ("77.01%", {"PGD-1+CRN10": ("90.92%", "0.354"), "PGD-20": ("60.98%", "5.464"),
                             "PGD-40": ("82.27%", "10.843")}),
    "Glioma": ("61.84%", {"PGD-1+CRN10": ("70.55%", "0.216"), "PGD-20": ("51.83%", "3.420"),
                          "PGD-40": ("63.77%", "6.793")}),
}
_ACC_NOTE = ("merged cell: one ACC per dataset (average clean accuracy of the clients), printed on the PGD-20 row; "
             "it applies to every attack of the dataset")


def _crn_table_1() -> list[PaperNumber]:
    out = []
    for ds, (acc, rows) in _T1.items():
        first = _T1_LINES[ds]
        for k, (attack, (aasr, secs)) in enumerate(rows.items()):
            src = f"CRN paper, Section IV.C, Table I, {_CRN_FILE} line {first + k}"
            out.append(PaperNumber("crn", "Table I", ds, attack, "ACC", _pct(acc), acc,
                                   f"CRN paper, Section IV.C, Table I, {_CRN_FILE} line {first + 1}", _ACC_NOTE))
            out.append(PaperNumber("crn", "Table I", ds, attack, "AASR", _pct(aasr), aasr, src))
            out.append(PaperNumber("crn", "Table I", ds, attack, "time", float(secs), secs, src,
                                   "seconds for one batch of data (the authors' GPU; batch size not stated)"))
    return out


# -- CRN paper, Table II (Section IV.E "Error transferability"): AETR -------------------------------------------
_T2_LINES = {"Meningioma": 230, "Glioma": 231, "Pathology": 232}
_T2_COLUMNS = [("FGSM", "Vanilla"), ("FGSM", "CRN5"), ("FGSM", "CRN10"), ("PGD", "Vanilla"), ("PGD", "CRN5"),
               ("PGD", "CRN10")]
_T2 = {
    "Meningioma": ["84.80%", "86.31%", "84.02%", "83.73%", "84.25%", "84.16%"],
    "Glioma": ["82.32%", "87.06", "89.98%", "74.89%", "83.64%%", "82.32%"],
    "Pathology": ["90.67%", "84.81%", "85.98%", "79.86%", "86.79%", "86.93%"],
}
_T2_NOTES = {
    ("Glioma", ("FGSM", "CRN5")): "garbled: printed without the % sign ('87.06'); read as 87.06%",
    ("Glioma", ("PGD", "CRN5")): "garbled: printed with a doubled % sign ('83.64%%'); read as 83.64%",
    ("Glioma", ("PGD", "CRN10")): "doubtful: the same value as Glioma FGSM Vanilla (82.32%), maybe a copy error",
}


def _crn_table_2() -> list[PaperNumber]:
    out = []
    for ds, cells in _T2.items():
        src = f"CRN paper, Section IV.E, Table II, {_CRN_FILE} line {_T2_LINES[ds]}"
        for (attack, start), text in zip(_T2_COLUMNS, cells, strict=True):
            note = _T2_NOTES.get((ds, (attack, start)), "")
            if attack == "PGD":
                note = "; ".join(n for n in (note, "PGD with 40 iterations (Section IV.E); eps, alpha not stated")
                                 if n)
            out.append(PaperNumber("crn", "Table II", ds, f"{attack} {start}", "AETR", _pct(text), text, src, note))
    return out


# -- Fed-Safe, Table 1 (Section 4.3): ASR self / avg, adversarial training vs distributed noise ------------------
_FS1_LINE = {"Glioma": 82, "MRI": 86, "Pathology": 90}
_FS1 = {  # dataset: {step: (adversarial training "self/avg", distributed noise "self/avg")}
    "Glioma": {"0.005": ("0.03/0.00", "0.03/0.00"), "0.012": ("0.00/0.00", "0.00/0.00"),
               "0.017": ("0.00/0.00", "0.00/0.00"), "0.05": ("0.03/0.00", "0.00/0.00")},
    "MRI": {"0.005": ("0.12/0.05", "0.10/0.02"), "0.012": ("0.22/0.09", "0.22/0.08"),
            "0.017": ("0.25/0.11", "0.23/0.04"), "0.05": ("0.46/0.27", "0.41/0.15")},
    "Pathology": {"0.005": ("0.32/0.08", "0.31/0.08"), "0.012": ("0.43/0.12", "0.47/0.10"),
                  "0.017": ("0.46/0.17", "0.49/0.12"), "0.05": ("0.54/0.32", "0.65/0.34")},
}
_FS1_NOTE = ("table caption lost in the extraction (header row garbled: 'Training Method'); the column 'Step' is "
             "the attack's perturbation step (design §9: PGD step); 'MRI' is the paper's brain-MRI (meningioma) task")


def _fedsafe_table_1() -> list[PaperNumber]:
    out = []
    for ds, rows in _FS1.items():
        for k, (step, cells) in enumerate(rows.items()):
            src = f"Fed-Safe, Section 4.3, Table 1, {_FS_FILE} line {_FS1_LINE[ds] + k}"
            for method, cell in zip(("adversarial training", "distributed noise"), cells, strict=True):
                self_, avg = cell.split("/")
                out.append(PaperNumber("fed-safe", "Table 1", ds, f"step {step}", f"{method}: ASR self",
                                       float(self_), cell, src, _FS1_NOTE))
                out.append(PaperNumber("fed-safe", "Table 1", ds, f"step {step}", f"{method}: ASR avg",
                                       float(avg), cell, src, _FS1_NOTE))
    return out


# -- Fed-Safe, Table 2 (Section 4.3, "Effect of differential privacy on robustness"): average ASR ----------------
_FS2_LINE = {"Pathology": 97, "MRI": 102}
_FS2 = {
    "Pathology": {"0.01": ("10.21%", "5.09%"), "0.03": ("9.97%", "8.72%"), "0.05": ("9.53%", "7.87%"),
                  "0.07": ("19.04%", "16.67%"), "Average": ("12.19%", "9.58%")},
    "MRI": {"0.01": ("2.74%", "0.31%"), "0.03": ("3.92%", "0.32%"), "0.05": ("12.67%", "0.32%"),
            "0.07": ("6.29%", "0.32%"), "Average": ("6.41%", "0.32%")},
}
_FS2_NOTE = ("caption and header garbled in the extraction ('No DP, DP, and'): columns read as average ASR without "
             "DP, with DP, and the attack eps (design §9); which defense method the rows use is not recoverable")


def _fedsafe_table_2() -> list[PaperNumber]:
    out = []
    for ds, rows in _FS2.items():
        for k, (eps, cells) in enumerate(rows.items()):
            src = f"Fed-Safe, Section 4.3, Table 2, {_FS_FILE} line {_FS2_LINE[ds] + k}"
            row = "Average" if eps == "Average" else f"eps {eps}"
            note = _FS2_NOTE
            if (ds, eps) == ("Pathology", "Average"):
                note += "; the DP average of the four cells is 9.5875%, printed 9.58% (truncated)"
            for col, text in zip(("ASR avg, no DP", "ASR avg, DP"), cells, strict=True):
                out.append(PaperNumber("fed-safe", "Table 2", ds, row, col, _pct(text), text, src, note))
    out.append(PaperNumber("fed-safe", "text", "Glioma", "every eps", "ASR avg, DP", 0.0, "ASR=0.0",
                           f"Fed-Safe, Section 4.3 (text beside Table 2), {_FS_FILE} line 114",
                           "Glioma is not in Table 2; the text says 'perfect defense with ASR=0.0'"))
    return out


PAPER_NUMBERS: tuple[PaperNumber, ...] = (*_crn_table_1(), *_crn_table_2(), *_fedsafe_table_1(),
                                          *_fedsafe_table_2())


def lookup(*, paper: str, table: str, dataset: str, row: str, column: str) -> PaperNumber:
    """The one number at (paper, table, dataset, row, column); KeyError naming it otherwise."""
    hits = [p for p in PAPER_NUMBERS
            if (p.paper, p.table, p.dataset, p.row, p.column) == (paper, table, dataset, row, column)]
    if len(hits) != 1:
        raise KeyError(f"no single paper number at {paper} {table} {dataset} / {row} / {column}")
    return hits[0]


def crn_table_1(dataset: str = "Meningioma") -> dict[str, dict[str, PaperNumber]]:
    """CRN Table I for one dataset: attack -> {"ACC", "AASR", "time"}."""
    out: dict[str, dict[str, PaperNumber]] = {}
    for p in PAPER_NUMBERS:
        if p.paper == "crn" and p.table == "Table I" and p.dataset == dataset:
            out.setdefault(p.row, {})[p.column] = p
    if not out:
        raise KeyError(f"CRN Table I has no dataset {dataset!r}; it has {', '.join(_T1)}")
    return out


def crn_table_2(dataset: str = "Meningioma") -> dict[tuple[str, str], PaperNumber]:
    """CRN Table II for one dataset: (attack "FGSM"/"PGD", start "Vanilla"/"CRN5"/"CRN10") -> AETR."""
    out = {tuple(p.row.split(" ")): p for p in PAPER_NUMBERS
           if p.paper == "crn" and p.table == "Table II" and p.dataset == dataset}
    if not out:
        raise KeyError(f"CRN Table II has no dataset {dataset!r}; it has {', '.join(_T2)}")
    return out  # type: ignore[return-value]


def fedsafe_table_1(dataset: str = "MRI") -> list[PaperNumber]:
    """Fed-Safe Table 1 for one dataset ("Glioma", "MRI", "Pathology")."""
    return [p for p in PAPER_NUMBERS if p.paper == "fed-safe" and p.table == "Table 1" and p.dataset == dataset]


def fedsafe_table_2(dataset: str = "MRI") -> list[PaperNumber]:
    """Fed-Safe Table 2 for one dataset ("MRI", "Pathology")."""
    return [p for p in PAPER_NUMBERS if p.paper == "fed-safe" and p.table == "Table 2" and p.dataset == dataset]
