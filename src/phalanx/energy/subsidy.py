"""One meaning per subsidy flag, in every command that prices energy.

`--subsidy-fraction F`: the share of the power bill someone else pays (0..1).
`--subsidy-per-kwh P`: an amount per kWh taken off the tariff.
`run`, `plan` and `simulate` all take both (once each meant something else per
command). Each command converts to the form it computes with: the planner and
the simulator a fraction of the bill, `run`'s estimate a net price per kWh.
"""

from __future__ import annotations

from phalanx.errors import UsageError


def parse_per_kwh(flag: str, text: str | None) -> float | None:
    """'0.08/kWh' or '0.08' -> 0.08 (a price per kWh); None stays None."""
    if text is None:
        return None
    number = text.strip().lower().removesuffix("/kwh")
    try:
        value = float(number)
    except ValueError:
        raise UsageError(
            flag, "is not a price per kWh", f"write e.g. {flag} 0.08/kWh", text
        ) from None
    if not value >= 0:
        raise UsageError(flag, "must not be negative", f"write e.g. {flag} 0.02/kWh", text)
    return value


def _check_fraction(fraction: float | None) -> None:
    if fraction is not None and not 0 <= fraction <= 1:
        raise UsageError(
            "--subsidy-fraction",
            "must be between 0 and 1 (the share of the bill paid by the subsidy)",
            "write e.g. --subsidy-fraction 0.3, or --subsidy-per-kwh 0.02/kWh for an amount",
            fraction,
        )


def _one_of(fraction: float | None, per_kwh: float | None) -> None:
    if fraction and per_kwh:
        raise UsageError(
            "--subsidy-per-kwh",
            "cannot be combined with --subsidy-fraction",
            "give the subsidy one way: a share of the bill or an amount per kWh",
            per_kwh,
        )


def subsidy_fraction(tariff_per_kwh: float, fraction: float | None, per_kwh: float | None) -> float:
    """The share of the bill the subsidy pays, from whichever flag was given."""
    _check_fraction(fraction)
    _one_of(fraction, per_kwh)
    if per_kwh:
        # More subsidy than the tariff leaves the power free, not paid for.
        return 1.0 if tariff_per_kwh <= 0 else min(1.0, per_kwh / tariff_per_kwh)
    return fraction or 0.0


def subsidy_per_kwh(
    tariff_per_kwh: float | None, fraction: float | None, per_kwh: float | None
) -> float | None:
    """The amount per kWh the subsidy takes off the tariff, from whichever flag was given."""
    _check_fraction(fraction)
    _one_of(fraction, per_kwh)
    if fraction:
        if tariff_per_kwh is None:
            raise UsageError(
                "--subsidy-fraction",
                "is a share of the power bill, and there is no bill without a tariff",
                "add --tariff 0.08/kWh",
                fraction,
            )
        return tariff_per_kwh * fraction
    return per_kwh
