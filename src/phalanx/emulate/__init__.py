"""Emulated chips: CPU compute paced to look like a slower accelerator."""
