"""User-facing errors. The CLI prints `str(error)` on one line and exits non-zero: no traceback for a
user's mistake (a bad file, a model that is not installed, a server that is down)."""

from __future__ import annotations


class MendlabError(Exception):
    """Something the user can fix; the message says what and where."""

    exit_code = 2


class ConfigError(MendlabError):
    """A malformed mendlab.toml or scenario file; the message names the file and line."""


class ModelNotFound(MendlabError):
    """A model name that neither the catalogue nor the user's file knows."""


class ModelUnavailable(MendlabError):
    """A known model whose files are missing, truncated or fail their checksum."""


class NoChatTemplate(MendlabError):
    """A base model without a chat template: we refuse rather than silently invent one."""


class ContextOverflow(MendlabError):
    """The conversation does not fit in the model's context window."""


class BackendError(MendlabError):
    """The backend failed (server down, wrong URL, bad answer) after retries."""


class InputError(MendlabError):
    """A malformed input file (JSONL, conversation); the message names file and line."""


class IncompleteRun(MendlabError):
    """A run that finished with samples stored as failed: the results written leave them out, and
    the non-zero exit keeps a script from taking them for the whole run."""

    exit_code = 3
