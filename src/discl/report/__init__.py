"""A self-contained HTML report of a run: spectra, filter statistics, curricula, training curves, results."""

from .build import build_report

__all__ = ["build_report"]
