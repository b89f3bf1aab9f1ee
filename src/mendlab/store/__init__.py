"""Where results live: a SQLite file that survives kill -9 and lets runs resume."""

from mendlab.store.results import (
    DEFAULT_DB,
    GenerationRecord,
    Mark,
    ResultsStore,
    Run,
    RunMismatch,
    SampleRecord,
    Vote,
    config_sha256,
    resume_key,
)

__all__ = [
    "DEFAULT_DB",
    "GenerationRecord",
    "Mark",
    "ResultsStore",
    "Run",
    "RunMismatch",
    "SampleRecord",
    "Vote",
    "config_sha256",
    "resume_key",
]
