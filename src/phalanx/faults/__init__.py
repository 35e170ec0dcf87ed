"""Fault injection as a library feature: specs, and the in-worker injector."""

from phalanx.faults.spec import FaultSpec, parse_fault, parse_faults

__all__ = ["FaultSpec", "parse_fault", "parse_faults"]
