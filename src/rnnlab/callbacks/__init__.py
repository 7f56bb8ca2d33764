"""Lightning callbacks of rnnlab: run records and resuming (always on), and the TensorBoard
diagnostics that conf/callbacks/ switches on."""

from rnnlab.callbacks.gradients import GradientHealth, ParameterHistograms
from rnnlab.callbacks.probing import GradientFlow, Saturation
from rnnlab.callbacks.resume import ExactResume
from rnnlab.callbacks.run_monitor import BestValidationMetrics, DivergenceMonitor
from rnnlab.callbacks.throughput import Throughput

__all__ = [
    "BestValidationMetrics",
    "DivergenceMonitor",
    "ExactResume",
    "GradientFlow",
    "GradientHealth",
    "ParameterHistograms",
    "Saturation",
    "Throughput",
]
