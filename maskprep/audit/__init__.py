"""Audit an image dataset: class balance, bad files, duplicates, train/test leakage, label conflicts.

    from maskprep.audit import audit
    report = audit("data/")              # class/ or split/class/ folders
    report.conditions()                  # {"leakage": True, "duplicates": False, ...}
    write_html(report, "audit.html")
"""
from maskprep.audit.manager import FAIL_CONDITIONS, AuditReport, audit
from maskprep.audit.report import summary_lines, write_html, write_json

__all__ = ["audit", "AuditReport", "FAIL_CONDITIONS", "summary_lines", "write_html", "write_json"]
