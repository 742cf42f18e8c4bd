"""A study's report: tables with confidence intervals and paired tests, plots, a tidy frame.

``write_report(folder)`` builds ``folder/report/`` from ``results.parquet`` and the Optuna
journal; ``write_aim_report`` builds ``folder/report-aim/`` from the study's Aim runs.
"""

from mmlearn.report.build import write_aim_report, write_report
from mmlearn.report.locate import locate
from mmlearn.report.records import ReportError

__all__ = ["ReportError", "locate", "write_aim_report", "write_report"]
