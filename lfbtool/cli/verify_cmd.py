"""``lfbtool verify BANK``: check a bank's format, index and values; one ``ok:`` line or one error line."""

from __future__ import annotations

from lfbtool.cli.options import BankArgument
from lfbtool.runtime.console import stdout


def verify_command(bank: BankArgument) -> None:
    """Check format version, offsets, sort order, row counts and NaN/Inf; exit 2 at the first problem."""
    from lfbtool.bank.verify import check_bank

    report = check_bank(bank)
    imported = ", imported from MMAction2 (no boxes)" if report.imported else ""
    stdout.print(
        f"ok: {report.path}: format v{report.format_version}, mode {report.mode}, {report.videos} videos, "
        f"{report.keys} keyframes, {report.rows} rows of {report.feature_dim}-d {report.dtype}{imported}",
        markup=False,
    )
