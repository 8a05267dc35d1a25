"""plantstream's exceptions: one root, one base per layer.

Every error of ours derives from PlantstreamError, so a caller can tell plantstream's conditions from
bugs and library errors with one `except`. Its message is one line naming the problem and the fix.
A subclass keeps the built-in base it had (ValueError, RuntimeError) as a second base, so code that
catches those still catches it. Layers: CoreError (config, serde, Kafka clients), ProducerError,
ProcessorError, SinkError, and ToolError for the top layer (local stack, simulators, benchmarks).
"""

from __future__ import annotations


class PlantstreamError(Exception):
    """Root of every plantstream exception."""


class CoreError(PlantstreamError):
    """Raised by plantstream.core: configuration, Avro contracts, the Kafka and registry clients."""


class ProducerError(PlantstreamError):
    """Raised by producers/: devices, historian exports, the store-and-forward buffer."""


class ProcessorError(PlantstreamError):
    """Raised by processors/: the worker and its stages."""


class SinkError(PlantstreamError):
    """Raised by sinks/: stores, alert channels, the dashboard."""


class ToolError(PlantstreamError):
    """Raised by the top layer: the local stack launcher, simulators, benchmarks."""
