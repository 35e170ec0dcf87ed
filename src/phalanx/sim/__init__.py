"""Event-driven fleet simulator and the run predictor used for calibration (pure, numpy only)."""

from phalanx.sim.engine import simulate
from phalanx.sim.policies import Policy, SimConfig, parse_policies
from phalanx.sim.predict_run import predict_run
from phalanx.sim.results import PolicyResult, SimResult

__all__ = [
    "Policy",
    "PolicyResult",
    "SimConfig",
    "SimResult",
    "parse_policies",
    "predict_run",
    "simulate",
]
