"""Server-side aggregation: update checks, FedAvg/FedProx/robust rules and SegViz."""

from federation.strategies.aggregation import Aggregator, aggregate_arrays
from federation.strategies.segviz import aggregate_updates, contributors
from federation.strategies.validation import Rejection, UpdateCheck, check_updates

__all__ = [
    "Aggregator",
    "Rejection",
    "UpdateCheck",
    "aggregate_arrays",
    "aggregate_updates",
    "check_updates",
    "contributors",
]
