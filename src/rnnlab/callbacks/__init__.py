"""Lightning callbacks of rnnlab."""

from rnnlab.callbacks.resume import ExactResume
from rnnlab.callbacks.run_monitor import BestValidationMetrics, DivergenceMonitor

__all__ = ["BestValidationMetrics", "DivergenceMonitor", "ExactResume"]
