"""Every generation, kept: SQLite in WAL mode, one transaction per record.

A run is a set of jobs, each with a resume key (a hash of run, model, messages, parameters, sample
index and the job's scope). A job whose key is stored is done; a run started again skips it. Because
the record is written in one transaction and the key is UNIQUE, a process killed with -9 at any
instant leaves either the whole row or nothing, and re-running never doubles a row.

A run's identity includes its configuration: `ensure_run` stores it with the run and refuses to
resume a run under another one (or starts a fresh id beside it, when asked), so results made with
two temperatures or two task files never end up counted as one run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

from mendlab.conversation import Conversation
from mendlab.errors import MendlabError
from mendlab.models.base import Completion, Message, SamplingParams

DEFAULT_DB = "mendlab.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    resume_key TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    params TEXT NOT NULL,
    messages TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    output TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    prompt_tokens_evaluated INTEGER,
    finish_reason TEXT NOT NULL,
    latency_s REAL NOT NULL,
    first_token_s REAL,
    created REAL NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS generations_run ON generations(run_id);
CREATE TABLE IF NOT EXISTS repair_trees (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    tree TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS marks (
    id INTEGER PRIMARY KEY,
    conversation TEXT NOT NULL,
    message_index INTEGER NOT NULL,
    source TEXT NOT NULL,
    mark TEXT NOT NULL,
    errors TEXT NOT NULL,
    model TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS marks_conversation ON marks(conversation);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    kind TEXT NOT NULL,
    winner TEXT NOT NULL,
    model_left TEXT NOT NULL,
    model_right TEXT NOT NULL,
    conversation_left TEXT NOT NULL,
    conversation_right TEXT NOT NULL,
    message_index INTEGER NOT NULL,
    anonymous INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS votes_pair ON votes(conversation_left, conversation_right, message_index);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    status TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    error TEXT,
    score TEXT NOT NULL,
    data TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    generations INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    config_sha256 TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, task, model, sample_id)
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    parent TEXT,
    fork_turn INTEGER,
    model TEXT,
    messages TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def resume_key(
    run_id: str,
    model: str,
    messages: Sequence[Message],
    params: SamplingParams,
    sample_index: int,
    scope: str = "",
) -> str:
    """The identity of one sample. `scope` names the job that asked for it (say one dialog of one
    rung), so that two jobs sending the same prompt get two samples, not one shared answer; the
    empty scope keeps the keys of stores written before scopes existed."""
    payload: dict[str, Any] = {
        "run": run_id,
        "model": model,
        "messages": [m.to_openai() for m in messages],
        "params": {k: v for k, v in params.as_dict().items() if k != "n"},
        "sample": sample_index,
    }
    if scope:
        payload["scope"] = scope
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class FieldDiff:
    """One configuration field that differs between a stored run and a new request for it."""

    field: str  # dotted path into the config, e.g. "params.temperature"
    old: Any  # MISSING when the stored run did not have the field
    new: Any

    def __str__(self) -> str:
        return f"{self.field} {_show(self.old)} → {_show(self.new)}"


class _Missing:
    def __repr__(self) -> str:
        return "(none)"


MISSING: Any = _Missing()


def _show(value: Any) -> str:
    if value is MISSING:
        return "(none)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str) and len(value) >= 40 and all(c in "0123456789abcdef" for c in value):
        text = f'"{value[:12]}…"'  # a digest: its head is enough to tell two apart
    return text if len(text) <= 60 else text[:59] + "…"


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _normal(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as it reads back from the store (tuples become lists, keys strings)."""
    loaded: dict[str, Any] = json.loads(json.dumps(dict(config), sort_keys=True))
    return loaded


def config_line(config: Mapping[str, Any]) -> str:
    """A stored configuration on one line, for `mendlab runs`."""
    return ", ".join(f"{k}={_show(v)}" for k, v in _flatten(_normal(config)).items())


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldDiff, ...]:
    """Every leaf field whose value differs, nested mappings compared field by field. A field only
    one side has differs too: a run stored without it was made under settings nobody recorded."""
    a, b = _flatten(_normal(old)), _flatten(_normal(new))
    return tuple(
        FieldDiff(k, a.get(k, MISSING), b.get(k, MISSING))
        for k in sorted(a.keys() | b.keys())
        if a.get(k, MISSING) != b.get(k, MISSING)
    )


class RunMismatch(MendlabError):
    """A run id that exists with another configuration: resuming it would mix two experiments."""

    def __init__(self, run_id: str, diffs: Sequence[FieldDiff]) -> None:
        self.run_id = run_id
        self.diffs = tuple(diffs)
        super().__init__(
            f"run {run_id!r} was made with another configuration: {'; '.join(map(str, self.diffs))}. "
            "Pass --new-run to start a new run beside it, or --run with another id"
        )


@dataclass(frozen=True)
class Run:
    """A run as stored: its id, kind and configuration. `requested` is the id the caller asked for;
    it differs from `id` when that one was taken by another configuration (`diffs` says how)."""

    id: str
    kind: str
    config: Mapping[str, Any]
    created: float
    resumed: bool  # it existed already with this configuration
    requested: str = ""
    diffs: tuple[FieldDiff, ...] = ()

    @property
    def moved(self) -> str | None:
        """What to tell the user when the requested id held another configuration; else None."""
        if not self.requested or self.id == self.requested:
            return None
        return (
            f"run {self.requested!r} holds another configuration ({'; '.join(map(str, self.diffs))}): "
            f"this is run {self.id!r}"
        )


@dataclass(frozen=True)
class GenerationRecord:
    run_id: str
    resume_key: str
    model: str
    backend: str
    params: Mapping[str, Any]
    messages: tuple[Message, ...]
    sample_index: int
    output: str
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_evaluated: int | None
    finish_reason: str
    latency_s: float
    first_token_s: float | None
    created: float = field(default_factory=time.time)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        run_id: str,
        model: str,
        backend: str,
        messages: Sequence[Message],
        params: SamplingParams,
        completion: Completion,
        sample_index: int,
        meta: Mapping[str, Any] | None = None,
        scope: str = "",
    ) -> GenerationRecord:
        return cls(
            run_id=run_id,
            resume_key=resume_key(run_id, model, messages, params, sample_index, scope),
            model=model,
            backend=backend,
            params=params.as_dict(),
            messages=tuple(messages),
            sample_index=sample_index,
            output=completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            prompt_tokens_evaluated=completion.prompt_tokens_evaluated,
            finish_reason=completion.finish_reason,
            latency_s=completion.latency_s,
            first_token_s=completion.first_token_s,
            meta={**({"scope": scope} if scope else {}), **dict(meta or {})},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "model": self.model,
            "backend": self.backend,
            "params": dict(self.params),
            "messages": [m.to_openai() for m in self.messages],
            "sample_index": self.sample_index,
            "output": self.output,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "finish_reason": self.finish_reason,
            "latency_s": round(self.latency_s, 4),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 4),
            "created": self.created,
            "resume_key": self.resume_key,
            **({"meta": dict(self.meta)} if self.meta else {}),
        }


SAMPLE_STATUSES = ("ok", "error")


@dataclass(frozen=True)
class SampleRecord:
    """One sample of one task for one model, as the engine stored it: its verdict (`score`), what the
    scorer kept (`data`), or, with status "error", why it failed (`finish_reason` "error"). Cost is
    the sum over the sample's generations, stored answers included, so a resumed run costs the same."""

    run_id: str
    task: str
    model: str
    sample_id: str
    status: str  # ok | error
    error: str | None = None
    score: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generations: int = 0
    latency_s: float = 0.0
    config_sha256: str = ""
    created: float = field(default_factory=time.time)

    @property
    def finish_reason(self) -> str:
        return "error" if self.status == "error" else "stop"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "finish_reason": self.finish_reason}


SAMPLE_FIELDS = tuple(f.name for f in fields(SampleRecord))


def config_sha256(config: Mapping[str, Any]) -> str:
    """The hash that names a run's configuration (its stored form, so it reads back the same)."""
    return hashlib.sha256(json.dumps(_normal(config), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Mark:
    """A mark on an assistant turn: by the grader (with its error types) or by a person."""

    conversation: str
    message_index: int
    source: str  # "grader" or "person"
    mark: str
    errors: tuple[str, ...]
    model: str | None
    created: float = 0.0


@dataclass(frozen=True)
class Vote:
    """A person's verdict on left vs right answering the same message. `kind` is "fix" when that
    message asked for a fix, else "first". The models are the authors of the two answers and the
    conversations are where each answer was generated (a branch that inherits it is not another
    answer). `anonymous`: the names were hidden from the voter when the vote was cast."""

    session: str
    kind: str
    winner: str  # left | right | tie | both_bad
    model_left: str
    model_right: str
    conversation_left: str
    conversation_right: str
    message_index: int
    anonymous: bool
    created: float = 0.0


VOTE_KINDS = ("fix", "first")
VOTE_WINNERS = ("left", "right", "tie", "both_bad")
MARK_FIELDS = tuple(f.name for f in fields(Mark))
VOTE_FIELDS = tuple(f.name for f in fields(Vote))


class ResultsStore:
    """The project's memory. Open one per process; SQLite's WAL lets readers and one writer share it."""

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()  # the arena's sessions share one store across threads
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process in WAL mode
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise MendlabError(f"{self.path}: not a usable results store: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def ensure_run(self, run_id: str, kind: str, config: Mapping[str, Any], *, new_if_changed: bool = False) -> Run:
        """Create the run, or resume it if it exists with the same kind and configuration.

        A different configuration raises `RunMismatch` naming each differing field, old and new; with
        `new_if_changed`, the first of `run_id-2`, `run_id-3`, ... that is free or holds this very
        configuration is used instead (so the same command run twice resumes the same new run)."""
        wanted = {"kind": kind, **_normal(config)}
        first: tuple[FieldDiff, ...] = ()
        with self._tx() as db:
            for n in range(1, 10_000):
                rid = run_id if n == 1 else f"{run_id}-{n}"
                row = db.execute("SELECT kind, created, config FROM runs WHERE id = ?", (rid,)).fetchone()
                if row is None:
                    created = time.time()
                    db.execute(
                        "INSERT INTO runs(id, kind, created, config) VALUES (?, ?, ?, ?)",
                        (rid, kind, created, json.dumps(_normal(config), sort_keys=True)),
                    )
                    return Run(rid, kind, _normal(config), created, False, run_id, first)
                stored = {"kind": row[0], **json.loads(row[2])}
                diffs = config_diff(stored, wanted)
                if not diffs:
                    return Run(rid, kind, json.loads(row[2]), row[1], True, run_id, first)
                if not new_if_changed:
                    raise RunMismatch(rid, diffs)
                first = first or diffs
        raise MendlabError(f"run {run_id!r}: no free id left beside it")  # pragma: no cover

    def run(self, run_id: str) -> Run | None:
        """The stored run, or None."""
        rows = self._read("SELECT id, kind, created, config FROM runs WHERE id = ?", (run_id,))
        return Run(rows[0][0], rows[0][1], json.loads(rows[0][3]), rows[0][2], True, run_id) if rows else None

    def runs(self) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT r.id, r.kind, r.created, r.config, COUNT(g.id) FROM runs r "
            "LEFT JOIN generations g ON g.run_id = r.id GROUP BY r.id ORDER BY r.created"
        )
        return [
            {"id": r[0], "kind": r[1], "created": r[2], "config": json.loads(r[3]), "generations": r[4]} for r in rows
        ]

    def done_keys(self, run_id: str) -> set[str]:
        rows = self._read("SELECT resume_key FROM generations WHERE run_id = ?", (run_id,))
        return {r[0] for r in rows}

    def add(self, rec: GenerationRecord) -> bool:
        """Store one generation; False if its resume key was already there (nothing doubled)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO generations(run_id, resume_key, model, backend, params, messages, "
                "sample_index, output, prompt_tokens, completion_tokens, prompt_tokens_evaluated, "
                "finish_reason, latency_s, first_token_s, created, meta) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.run_id,
                    rec.resume_key,
                    rec.model,
                    rec.backend,
                    json.dumps(dict(rec.params), sort_keys=True),
                    json.dumps([m.to_openai() for m in rec.messages], ensure_ascii=False),
                    rec.sample_index,
                    rec.output,
                    rec.prompt_tokens,
                    rec.completion_tokens,
                    rec.prompt_tokens_evaluated,
                    rec.finish_reason,
                    rec.latency_s,
                    rec.first_token_s,
                    rec.created,
                    json.dumps(dict(rec.meta), ensure_ascii=False, sort_keys=True),
                ),
            )
            return cur.rowcount == 1

    def generation(self, key: str) -> GenerationRecord | None:
        """The stored generation of one resume key, or None."""
        found = self.generations(key=key)
        return found[0] if found else None

    def generations(self, run_id: str | None = None, *, key: str | None = None) -> list[GenerationRecord]:
        sql = (
            "SELECT run_id, resume_key, model, backend, params, messages, sample_index, output, prompt_tokens, "
            "completion_tokens, prompt_tokens_evaluated, finish_reason, latency_s, first_token_s, created, meta "
            "FROM generations"
        )
        args: tuple[Any, ...] = ()
        if key is not None:
            sql += " WHERE resume_key = ?"
            args = (key,)
        elif run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        rows = self._read(sql + " ORDER BY id", args)
        return [
            GenerationRecord(
                run_id=r[0],
                resume_key=r[1],
                model=r[2],
                backend=r[3],
                params=json.loads(r[4]),
                messages=tuple(Message(m["role"], m["content"]) for m in json.loads(r[5])),
                sample_index=r[6],
                output=r[7],
                prompt_tokens=r[8],
                completion_tokens=r[9],
                prompt_tokens_evaluated=r[10],
                finish_reason=r[11],
                latency_s=r[12],
                first_token_s=r[13],
                created=r[14],
                meta=json.loads(r[15]),
            )
            for r in rows
        ]

    def save_sample(self, rec: SampleRecord, conversations: Sequence[Conversation] = ()) -> None:
        """A sample's row and its transcripts in one transaction: a kill leaves both or neither, so a
        sample is never done without its transcripts nor its transcripts counted without the sample."""
        if rec.status not in SAMPLE_STATUSES:
            raise ValueError(f"a sample's status is one of {SAMPLE_STATUSES}")
        cols = list(SAMPLE_FIELDS)
        values = [getattr(rec, c) for c in cols]
        values[cols.index("score")] = json.dumps(dict(rec.score), ensure_ascii=False, sort_keys=True)
        values[cols.index("data")] = json.dumps(dict(rec.data), ensure_ascii=False, sort_keys=True)
        with self._tx() as db:
            for conv in conversations:
                self._put_conversation(db, conv)
            db.execute(
                f"INSERT OR REPLACE INTO samples({', '.join(cols)}, finish_reason) "
                f"VALUES ({', '.join('?' * (len(cols) + 1))})",
                (*values, rec.finish_reason),
            )

    def samples(self, run_id: str, task: str | None = None, model: str | None = None) -> list[SampleRecord]:
        """The stored samples of a run, optionally of one task and one model, in the order they finished."""
        where, args = ["run_id = ?"], [run_id]
        for col, value in (("task", task), ("model", model)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        rows = self._read(
            f"SELECT {', '.join(SAMPLE_FIELDS)} FROM samples WHERE {' AND '.join(where)} ORDER BY created, rowid",
            tuple(args),
        )
        out = []
        for r in rows:
            row = dict(zip(SAMPLE_FIELDS, r, strict=True))
            out.append(SampleRecord(**{**row, "score": json.loads(row["score"]), "data": json.loads(row["data"])}))
        return out

    def save_conversation(self, conv: Conversation) -> None:
        """Insert or update a conversation node (the chat REPL and the arena save as they go)."""
        with self._tx() as db:
            self._put_conversation(db, conv)

    @staticmethod
    def _put_conversation(db: sqlite3.Connection, conv: Conversation) -> None:
        data = conv.to_json()
        db.execute(
            "INSERT INTO conversations(id, parent, fork_turn, model, messages, meta, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET messages = excluded.messages, "
            "meta = excluded.meta",
            (
                conv.id,
                conv.parent,
                conv.fork_turn,
                conv.model,
                json.dumps(data["messages"], ensure_ascii=False),
                json.dumps(dict(conv.meta), ensure_ascii=False, sort_keys=True),
                time.time(),
            ),
        )

    def conversations(self) -> list[Conversation]:
        rows = self._read("SELECT id, parent, fork_turn, model, messages, meta FROM conversations ORDER BY created")
        return [_conversation(r) for r in rows]

    def save_tree(self, run_id: str, task_id: str, tree: Mapping[str, Any]) -> None:
        """A finished repair tree (programs, feedback, repairs and verdicts) for one task."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO repair_trees(run_id, task_id, tree, created) VALUES (?, ?, ?, ?)",
                (run_id, task_id, json.dumps(dict(tree), ensure_ascii=False), time.time()),
            )

    def trees(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self._read("SELECT task_id, tree FROM repair_trees WHERE run_id = ? ORDER BY created", (run_id,))
        return {r[0]: json.loads(r[1]) for r in rows}

    def add_mark(
        self, conversation: str, message_index: int, source: str, mark: str, errors: Sequence[str], model: str | None
    ) -> None:
        """A mark on one assistant turn. Marks are appended, never replaced: a person's overrule and the
        grader's verdict are both kept, and the latest of each source is the current one."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO marks(conversation, message_index, source, mark, errors, model, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation, message_index, source, mark, json.dumps(list(errors)), model, time.time()),
            )

    def marks(self, conversation: str | None = None) -> list[Mark]:
        where, args = (" WHERE conversation = ?", (conversation,)) if conversation else ("", ())
        rows = self._read(f"SELECT {', '.join(MARK_FIELDS)} FROM marks{where} ORDER BY id", args)
        return [Mark(**{**dict(zip(MARK_FIELDS, r, strict=True)), "errors": tuple(json.loads(r[4]))}) for r in rows]

    def add_vote(self, vote: Vote) -> bool:
        """Store a vote; False if this pair of answers (either way round) already has one. Checked in
        the writing transaction, so two pages (or two processes) cannot both vote on one pair."""
        if vote.kind not in VOTE_KINDS or vote.winner not in VOTE_WINNERS:
            raise ValueError(f"a vote is {'/'.join(VOTE_KINDS)} with a winner in {'/'.join(VOTE_WINNERS)}")
        cols = VOTE_FIELDS[:-1]  # created is set here
        a, b, k = vote.conversation_left, vote.conversation_right, vote.message_index
        with self._tx() as db:
            seen = db.execute(
                "SELECT 1 FROM votes WHERE message_index = ? AND ((conversation_left = ? AND conversation_right = ?) "
                "OR (conversation_left = ? AND conversation_right = ?)) LIMIT 1",
                (k, a, b, b, a),
            ).fetchone()
            if seen is not None:
                return False
            db.execute(
                f"INSERT INTO votes({', '.join(cols)}, created) VALUES ({', '.join('?' * (len(cols) + 1))})",
                (*(getattr(vote, c) for c in cols), time.time()),
            )
        return True

    def votes(self) -> list[Vote]:
        rows = self._read(f"SELECT {', '.join(VOTE_FIELDS)} FROM votes ORDER BY id")
        return [Vote(**{**dict(zip(VOTE_FIELDS, r, strict=True)), "anonymous": bool(r[8])}) for r in rows]

    def conversation(self, conv_id: str) -> Conversation | None:
        rows = self._read(
            "SELECT id, parent, fork_turn, model, messages, meta FROM conversations WHERE id = ?", (conv_id,)
        )
        return _conversation(rows[0]) if rows else None

    def export_arena_jsonl(self, out: TextIO, *, hide_hidden_names: bool = False) -> int:
        """Arena conversations, one per line, each with its marks and the votes that name it; every
        line is still a `{"messages": [...]}` conversation that `mendlab generate` can read back.
        `hide_hidden_names` (the page's export) leaves out the models of battles whose names are still
        hidden, so the page never hands them out; `mendlab export --arena` keeps everything."""
        marks: dict[str, list[dict[str, Any]]] = {}
        for m in self.marks():
            marks.setdefault(m.conversation, []).append(asdict(m))
        votes: dict[str, list[dict[str, Any]]] = {}
        for v in self.votes():
            for conv in {v.conversation_left, v.conversation_right}:
                votes.setdefault(conv, []).append(asdict(v))
        n = 0
        for c in self.conversations():
            if c.meta.get("source") == "arena":
                row = {**c.to_json(), "marks": marks.get(c.id, []), "votes": votes.get(c.id, [])}
                if hide_hidden_names and c.meta.get("names_hidden"):
                    row = _without_names(row)
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        return n

    def export_jsonl(self, out: TextIO, run_id: str | None = None) -> int:
        n = 0
        for rec in self.generations(run_id):
            out.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
            n += 1
        return n


def _without_names(row: dict[str, Any]) -> dict[str, Any]:
    """An exported arena conversation with every model name left out."""
    stats = row.get("stats")
    if isinstance(stats, dict):
        stats = {i: {k: v for k, v in e.items() if k != "model"} for i, e in stats.items() if isinstance(e, dict)}
    return {
        **row,
        "model": None,
        "messages": [{k: v for k, v in m.items() if k != "origin"} for m in row["messages"]],
        "stats": stats,
        "marks": [{**m, "model": None} for m in row["marks"]],
        "votes": [{**v, "model_left": None, "model_right": None} for v in row["votes"]],
    }


def _conversation(r: Sequence[Any]) -> Conversation:
    data = {"id": r[0], "parent": r[1], "fork_turn": r[2], "model": r[3], "messages": json.loads(r[4])}
    return Conversation.from_json({**data, **json.loads(r[5])})
