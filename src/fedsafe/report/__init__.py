"""Reports: one self-contained HTML file from a run directory or a results directory."""

from .html import build_report, write_report

__all__ = ["build_report", "write_report"]
