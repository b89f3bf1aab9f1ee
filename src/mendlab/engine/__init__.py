"""One engine for every experiment: samples, a solver that plays one against models, a scorer for its verdict."""

from mendlab.engine.runner import Engine, EngineConfig, EngineStopped, TaskSummary, engine_concurrency
from mendlab.engine.task import Outcome, Sample, SampleFailed, Task
from mendlab.store import SampleRecord

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineStopped",
    "Outcome",
    "Sample",
    "SampleFailed",
    "SampleRecord",
    "Task",
    "TaskSummary",
    "engine_concurrency",
]
