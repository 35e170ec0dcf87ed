"""Planner and cost model: which chips, what shares, what it will cost (pure, numpy only)."""

from phalanx.plan.fleet_classes import DeviceClass, FleetSpec, SyncParams, load_fleet, parse_fleet
from phalanx.plan.model_profile import ModelProfile, load_model, parse_model
from phalanx.plan.plan_types import ClassPlan, Exclusion, Plan, PlanOptions
from phalanx.plan.planner import make_plan

__all__ = [
    "ClassPlan",
    "DeviceClass",
    "Exclusion",
    "FleetSpec",
    "ModelProfile",
    "Plan",
    "PlanOptions",
    "SyncParams",
    "load_fleet",
    "load_model",
    "make_plan",
    "parse_fleet",
    "parse_model",
]
