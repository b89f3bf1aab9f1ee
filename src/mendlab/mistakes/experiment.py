"""The paper's table, end to end: pretrain on error-free or retry data, decode three ways, probe, fine-tune.

A run folder holds the preset it runs (`preset.json`, with the lab's `VERSION`; another preset or
version is refused there, another device is not), one folder per pretrained model, and one JSONL of
graded solutions per (method, seed), each with the solution the model wrote. Every piece is written
atomically when it is complete and skipped when it exists, so a killed run resumes where it stopped and
a finished one rebuilds its report without training anything. Pretrained models train to the same
number of tokens (`Preset.train_tokens`), whatever their data, as the paper compares them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mendlab.errors import MendlabError
from mendlab.mistakes import VERSION
from mendlab.mistakes.checker import check, is_back, split_steps, step_param
from mendlab.mistakes.corpus import DataSpec, Example, Rows, examples, pack, prompt_ids
from mendlab.mistakes.decode import Decoded, beam, budget, greedy, perfect_detector, retry_upon_regret
from mendlab.mistakes.igsm import GenConfig, Problem, instance, problems
from mendlab.mistakes.lora import with_lora
from mendlab.mistakes.model import GPT, GPTConfig
from mendlab.mistakes.probe import Probe, accuracy, fit_probe, own_mistakes, probe_data, probe_detector, recall
from mendlab.mistakes.tokenizer import Tokenizer, tokenizer
from mendlab.mistakes.train import TrainConfig, drop_checkpoint, fsync_dir, save_atomic, save_final, steps_for, train


@dataclass(frozen=True)
class ModelShape:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    # The training rows' length. Decoding is never capped by it: the model's context is the longest
    # test prompt plus its solution budget, measured on the run's test set (`Run.context`); rotary
    # positions have no table to outgrow.
    block_size: int = 512


@dataclass(frozen=True)
class Preset:
    name: str
    train_gen: GenConfig  # the pretraining problems (op up to train_gen.op_max: in distribution)
    test_ops: tuple[int, ...]  # graded at each; above train_gen.op_max is out of distribution
    test_max_instance: int
    n_train: int  # training problems per seed: every model of a seed draws its rows from them
    train_tokens: int  # real tokens each pretrained model trains on, whatever its data (equal across rows)
    n_test: int  # test problems per op
    shape: ModelShape
    train: TrainConfig  # optimizer and schedule; its steps/tokens are set per model
    seeds: tuple[int, ...] = (0, 1)
    retry_rates: tuple[float, ...] = (0.1, 0.2, 0.5)
    masked_rates: tuple[float, ...] = (0.1, 0.2, 0.5)
    weak_rates: tuple[float, ...] = (0.2,)
    miss_rates: tuple[float, ...] = (0.2,)
    beam_width: int = 8  # 0: no beam row
    # Beam search and retry upon regret decode one problem at a time: graded on the first N test problems
    # of each op, beside the error-free model's greedy grades on those same problems (the table's n).
    sequential_problems: int = 100
    max_retries: int = 10  # 0: no retry-upon-regret rows
    probe_problems: int = 300  # 0: no probe, and no retry upon regret with one
    finetune_rate: float = 0.5  # the retry data LoRA and continued pretraining learn from
    finetune_steps: int = 300  # 0: no fine-tuning rows
    finetune_lr: float = 1e-3
    lora_rank: int = 8
    decode_batch: int = 64  # greedy decoding's batch (results do not depend on it)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ood_ops(self) -> tuple[int, ...]:
        return tuple(op for op in self.test_ops if op > self.train_gen.op_max)

    def pretraining(self) -> list[DataSpec]:
        specs = [DataSpec()]
        specs += [DataSpec(r, "strong") for r in self.retry_rates]
        specs += [DataSpec(r, "strong", mask_wrong=True) for r in self.masked_rates]
        specs += [DataSpec(r, "weak") for r in self.weak_rates]
        specs += [DataSpec(r, "miss") for r in self.miss_rates]
        return specs


PRESETS: dict[str, Preset] = {
    # Two cores, about 38 minutes (measured, version 3: 19 minutes a seed): six models of 2 layers x 128
    # (0.46M parameters, ~12.5k tokens/s), error-free and retry strong p=0.5 with and without the mask,
    # 2 seeds, each trained on the same 3.5M tokens read (~285 s each); then per seed greedy grading of
    # 400 test problems per model, beam 4 and retry upon regret on 20 per op, the probe. Trained on op 1-3
    # (4 stated parameters), graded to op 5. Its error-free models solve 0 of 200 in-distribution test
    # problems a seed: the validation gate fails, as the report says; the effect needs the gpu preset.
    "cpu": Preset(
        name="cpu",
        train_gen=GenConfig(op_min=1, op_max=3, max_instance=4),
        test_ops=(2, 3, 4, 5),
        test_max_instance=6,
        n_train=12_000,
        train_tokens=3_500_000,
        n_test=100,
        shape=ModelShape(n_layer=2, n_head=4, n_embd=128, block_size=512),
        train=TrainConfig(batch_size=4, lr=3e-3, warmup=100, weight_decay=0.05, checkpoint_every=200),
        retry_rates=(0.5,),
        masked_rates=(0.5,),
        weak_rates=(),
        miss_rates=(),
        beam_width=4,
        sequential_problems=20,
        max_retries=10,
        probe_problems=200,
        finetune_steps=0,
    ),
    # A GPU: toward the paper's iGSM-med (op up to 15 in training, graded to 21), sized for one H200 in
    # about 15 minutes (estimated, never run here: ~500k tokens/s of training, ~4 ms a decoding step):
    # a 12-layer, 512-wide model (~38M parameters) per training set and seed, 30M tokens each (the
    # paper's models see ~1000 times more), greedy on 128 problems per op in batches of 256. Beam search
    # and retry upon regret decode one problem at a time (seconds each at op 15-21) and are left out; the
    # probe and its recall at the model's own mistakes stay. The training set is generated in parallel.
    "gpu": Preset(
        name="gpu",
        train_gen=GenConfig(op_min=2, op_max=15, max_instance=20),
        test_ops=(10, 15, 18, 21),
        test_max_instance=28,
        n_train=60_000,
        train_tokens=30_000_000,
        n_test=128,
        shape=ModelShape(n_layer=12, n_head=8, n_embd=512, block_size=1024),
        train=TrainConfig(
            batch_size=64, lr=2e-3, warmup=100, weight_decay=0.05, device="cuda", bf16=True, checkpoint_every=200
        ),
        retry_rates=(0.5,),
        masked_rates=(0.5,),
        weak_rates=(),
        miss_rates=(),
        beam_width=0,
        max_retries=0,
        probe_problems=500,
        finetune_steps=0,
        decode_batch=256,
    ),
    # Seconds: what the tests run.
    "tiny": Preset(
        name="tiny",
        train_gen=GenConfig(op_min=2, op_max=3, max_instance=6),
        test_ops=(2, 4),
        test_max_instance=8,
        n_train=60,
        train_tokens=6_000,
        n_test=4,
        shape=ModelShape(n_layer=1, n_head=2, n_embd=32, block_size=384),
        train=TrainConfig(batch_size=4, warmup=2, checkpoint_every=3),
        seeds=(0, 1),
        retry_rates=(0.5,),
        masked_rates=(0.5,),
        weak_rates=(0.5,),
        miss_rates=(0.5,),
        beam_width=2,
        sequential_problems=2,
        max_retries=2,
        probe_problems=8,
        finetune_steps=3,
    ),
}


def run_identity(preset: Preset) -> dict[str, Any]:
    """What makes two runs the same run: the preset and the lab's version, not its seeds (each seed's
    models and grades are files of their own, so more seeds extend a run) nor the device (nor bf16,
    which follows it): a run resumed on another machine is the same run."""
    d = preset.as_dict()
    del d["seeds"]
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("device", "bf16", "steps", "tokens")}
    return {"version": VERSION, **json.loads(json.dumps(d))}


# -- one graded solution, and the files that hold them --------------------------------------------------


@dataclass(frozen=True)
class Graded:
    id: str
    op: int
    correct: bool
    kind: str | None  # the first wrong step's kind
    backs: int  # [BACK] steps the model wrote itself
    regrets: int  # steps retry-upon-regret resampled
    # Partial credit, for models too small to get whole solutions right: the necessary parameters
    # defined right before the first wrong step, over all the necessary ones (1 when correct). A right
    # but unnecessary step is allowed and earns nothing.
    progress: float = 0.0
    solution: str = ""  # what the model wrote: every transcript is kept

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def grade(problem: Problem, decoded: Decoded) -> Graded:
    v = check(problem, decoded.solution)
    inst = instance(problem)
    need = {inst.params[x].name for x in inst.necessary}
    steps = split_steps(decoded.solution)
    before = steps if v.correct else steps[: v.first_wrong or 0]
    done = {step_param(problem, s) for s in before if not is_back(s)} & need
    progress = len(done) / len(need)
    backs = decoded.solution.count("[BACK]")
    return Graded(problem.id, problem.op, v.correct, v.kind, backs, decoded.regrets, progress, decoded.solution)


def write_atomic(path: Path, data: str | bytes) -> None:
    """All of `data` at `path` or the file as it was: a reader never trusts half of a killed write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_graded(path: Path) -> list[Graded]:
    return [Graded(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


# -- the run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One row of the table: which pretrained model, then how it is adapted and decoded."""

    name: str
    data: DataSpec
    decode: str = "greedy"  # greedy | beam | regret-probe | regret-perfect
    finetune: str = ""  # "" | lora | full


BASELINE = Method(DataSpec().label, DataSpec())  # error-free pretraining, greedy: what every row is paired with


def methods(preset: Preset) -> list[Method]:
    rows = [Method(spec.label, spec) for spec in preset.pretraining()]
    base = DataSpec()
    tune = DataSpec(preset.finetune_rate, "strong")
    if preset.beam_width > 0:
        rows.append(Method(f"error-free + beam {preset.beam_width}", base, "beam"))
    if preset.max_retries > 0:
        if preset.probe_problems > 0:
            rows.append(Method("error-free + retry upon regret (probe)", base, "regret-probe"))
        rows.append(Method("error-free + retry upon regret (perfect detector)", base, "regret-perfect"))
    if preset.finetune_steps > 0:
        rows += [
            Method(f"error-free + LoRA on {tune.label}", base, finetune="lora"),
            Method(f"error-free + continued pretraining on {tune.label}", base, finetune="full"),
        ]
    return rows


def _rows(tok: Tokenizer, items: list[Example], block_size: int) -> Rows:
    """Rows of `block_size`, or of the longest example where retries made one longer (rotary positions
    have no limit; the rows just grow), so no solution is cut or dropped."""
    longest = max(len(e.ids) - 1 for e in items)
    return pack(items, max(block_size, longest), tok.pad_id)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def model_folders(method: Method, seed: int) -> list[str]:
    """The model folders (under models/) whose training a method's model went through, in order."""
    base = f"{_slug(method.data.label)}-s{seed}"
    return [base, f"finetune-{method.finetune}-s{seed}"] if method.finetune else [base]


@dataclass
class Run:
    """One preset's run folder."""

    preset: Preset
    out: Path
    log: Callable[[str], None] = print
    tok: Tokenizer = field(default_factory=tokenizer)
    workers: int = field(default_factory=lambda: min(16, os.cpu_count() or 1))  # for generating training sets
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MendlabError(f"{self.out}: cannot make the run folder: {exc.strerror or exc}") from None
        import fcntl

        # Checked and written under a lock of its own: two first runs of different presets in one empty
        # folder would otherwise both find no marker, and one would train under the other's.
        with open(self.out / ".preset.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._claim(self.out / "preset.json", run_identity(self.preset))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _claim(self, marker: Path, mine: dict[str, Any]) -> None:
        """Refuse a folder that holds another configuration or version; mark a new one as ours."""
        if marker.exists():
            try:
                theirs = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise MendlabError(f"{marker}: not a preset file of mendlab; pass another --out") from None
            if not isinstance(theirs, dict):
                raise MendlabError(f"{marker}: not a preset file of mendlab; pass another --out")
            if theirs.get("version") != VERSION:
                raise MendlabError(
                    f"{self.out} holds a run of version {theirs.get('version', 1)} of the lab (this is {VERSION}:"
                    " its data or grading differ); pass another --out"
                )
            if theirs != mine:
                raise MendlabError(f"{self.out} holds a run of another configuration; pass another --out")
        else:
            write_atomic(marker, json.dumps(mine, sort_keys=True, indent=1))

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the run folder for this process: two processes training or grading in one folder would
        train the same model twice and write the same files at once."""
        import fcntl

        path = self.out / ".lock"
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MendlabError(
                    f"{self.out} is in use by another mendlab process; wait for it, or pass another --out"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- data ----------------------------------------------------------------------------------------------

    def _instances(self, op: int) -> int:
        p = self.preset
        return p.train_gen.max_instance if op <= p.train_gen.op_max else p.test_max_instance

    def test_set(self) -> dict[int, list[Problem]]:
        p = self.preset
        if "test" not in self._memo:
            self._memo["test"] = {
                # In distribution means the training problems' size and layers too; only a larger op grows
                # the problem (its stated parameters), never its kind.
                op: problems(
                    replace(p.train_gen, op_min=op, op_max=op, max_instance=self._instances(op)),
                    "test",
                    p.n_test,
                    10_000 + op,
                    self.workers,
                )
                for op in p.test_ops
            }
        out: dict[int, list[Problem]] = self._memo["test"]
        return out

    def train_problems(self, seed: int) -> list[Problem]:
        """The seed's training problems, generated once for all the models of that seed."""
        held = self._memo.get("train")
        if held is None or held[0] != seed:
            held = (seed, problems(self.preset.train_gen, "train", self.preset.n_train, seed, self.workers))
            self._memo["train"] = held  # one seed at a time: a GPU preset's set is large
        out: list[Problem] = held[1]
        return out

    @property
    def context(self) -> int:
        """The longest sequence a model of this run is asked to process: a training row, or a test prompt
        with its whole solution budget (so that no test solution is cut by the model's context)."""
        if "context" not in self._memo:
            tests = [q for qs in self.test_set().values() for q in qs]
            need = max(len(prompt_ids(self.tok, q)) + budget(self.tok, q) for q in tests)
            self._memo["context"] = max(self.preset.shape.block_size, need)
        out: int = self._memo["context"]
        return out

    @property
    def model_config(self) -> GPTConfig:
        s = self.preset.shape
        return GPTConfig(self.tok.vocab_size, s.n_layer, s.n_head, s.n_embd, self.context)

    def _data_key(self, spec: DataSpec) -> str:
        p = self.preset
        return f"v{VERSION}|{spec}|{p.train_gen}|{p.n_train}"

    # -- models --------------------------------------------------------------------------------------------

    def _load(self, model: GPT, folder: Path) -> GPT | None:
        final = folder / "model.pt"
        if not final.exists():
            return None
        model.load_state_dict(torch.load(final, map_location="cpu"))
        drop_checkpoint(folder)  # a run killed between the final weights and this cleanup
        return model.to(self.preset.train.device).eval()

    def _finish(self, model: GPT, folder: Path, result: Any) -> GPT:
        write_atomic(folder / "losses.json", json.dumps(result.losses))
        info = {
            "tokens": result.tokens,
            "trained_tokens": result.trained,
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
        }
        write_atomic(folder / "train.json", json.dumps(info))
        save_final(model, folder)  # last: its presence means the folder is complete
        return model.eval()

    def pretrained(self, spec: DataSpec, seed: int) -> GPT:
        """The model pretrained on `spec` with `seed` (trained, or resumed, on first use)."""
        folder = self.out / "models" / f"{_slug(spec.label)}-s{seed}"
        torch.manual_seed(seed)  # the initial weights are the seed's, whatever ran before in this process
        model = GPT(self.model_config)
        done = self._load(model, folder)
        if done is not None:
            return done
        p = self.preset
        rows = _rows(self.tok, examples(self.tok, self.train_problems(seed), spec, seed), p.shape.block_size)
        cfg = steps_for(replace(p.train, seed=seed, tokens=p.train_tokens), rows)
        self.log(
            f"pretraining {spec.label} seed {seed}: {cfg.steps} steps to {p.train_tokens:,} tokens"
            f" (its data: {rows.tokens:,} tokens in {len(rows)} rows)"
        )
        result = train(model, rows, cfg, folder, data_key=self._data_key(spec))
        return self._finish(model, folder, result)

    def finetuned(self, kind: str, seed: int) -> GPT:
        p = self.preset
        folder = self.out / "models" / f"finetune-{kind}-s{seed}"
        base = self.pretrained(DataSpec(), seed)
        torch.manual_seed(seed)
        model = with_lora(base, p.lora_rank) if kind == "lora" else GPT(self.model_config)
        if kind != "lora":
            model.load_state_dict(base.state_dict())
        done = self._load(model, folder)
        if done is not None:
            return done
        spec = DataSpec(p.finetune_rate, "strong")
        data = problems(p.train_gen, "train", p.n_train, 7_000 + seed, self.workers)  # fresh, same distribution
        rows = _rows(self.tok, examples(self.tok, data, spec, seed), p.shape.block_size)
        cfg = replace(
            p.train,
            seed=seed,
            steps=p.finetune_steps,
            tokens=0,
            lr=p.finetune_lr,
            warmup=max(1, p.finetune_steps // 10),
        )
        self.log(f"fine-tuning ({kind}) seed {seed}")
        result = train(model, rows, cfg, folder, data_key=f"v{VERSION}|finetune|{kind}|{spec}")
        return self._finish(model, folder, result)

    def tokens(self, method: Method, seed: int, trained: bool = False) -> int | None:
        """Tokens read behind a method's model (pretraining plus any fine-tuning), once trained; with
        `trained`, only those the loss was on."""
        total = 0
        for name in model_folders(method, seed):
            path = self.out / "models" / name / "train.json"
            if not path.exists():
                return None
            info = json.loads(path.read_text(encoding="utf-8"))
            total += int(info["trained_tokens" if trained else "tokens"])
        return total

    # -- the probe -------------------------------------------------------------------------------------------

    def probe(self, seed: int) -> Probe:
        """The can_next probe of the error-free model of `seed`: fitted once, kept in probes/."""
        path = self.out / "probes" / f"probe-s{seed}.pt"
        model = self.pretrained(DataSpec(), seed)
        if path.exists():
            probe = Probe(model.cfg.n_embd)
            probe.load_state_dict(torch.load(path, map_location="cpu"))
            return probe
        p = self.preset
        fit_on = problems(p.train_gen, "train", p.probe_problems, 5_000 + seed)
        probe = fit_probe(probe_data(model, self.tok, fit_on, seed), seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(path, probe.state_dict())
        return probe

    def probe_accuracy(self, seed: int) -> dict[str, Any]:
        """Held-out accuracy on clean steps, and recall at the model's own first mistakes (its greedy
        solutions to the test set: the error-free row's grades)."""
        path = self.out / "probes" / f"probe-s{seed}.json"
        if path.exists():
            return dict(json.loads(path.read_text(encoding="utf-8")))
        p = self.preset
        model = self.pretrained(DataSpec(), seed)
        probe = self.probe(seed)
        held_out = problems(p.train_gen, "test", max(1, p.probe_problems // 3), 6_000 + seed)
        held = probe_data(model, self.tok, held_out, seed + 1)
        by_id = {q.id: q for qs in self.test_set().values() for q in qs}
        own = own_mistakes(model, self.tok, [(by_id[g.id], g.solution) for g in self.graded(BASELINE, seed)])
        result = {
            "accuracy": accuracy(probe, held),
            "n": len(held.labels),
            "computable": float(held.labels.mean()),
            "own_wrong": own.wrong,
            "own_named": own.named,
            "own_can_next": len(own.features),
            "own_recall": recall(probe, own),
        }
        write_atomic(path, json.dumps(result))
        return result

    # -- evaluation ----------------------------------------------------------------------------------------

    def graded(self, method: Method, seed: int) -> list[Graded]:
        path = self.out / "evals" / f"{_slug(method.name)}-s{seed}.jsonl"
        if path.exists():
            return read_graded(path)
        p = self.preset
        model = self.finetuned(method.finetune, seed) if method.finetune else self.pretrained(method.data, seed)
        tests = self.test_set()
        out: list[Graded] = []
        detector = None
        if method.decode == "regret-probe":
            detector = probe_detector(self.probe(seed))
        elif method.decode == "regret-perfect":
            detector = perfect_detector
        for _op, probs in tests.items():
            if method.decode == "greedy":
                decoded = greedy(model, self.tok, probs, batch_size=p.decode_batch)
                out.extend(grade(q, d) for q, d in zip(probs, decoded, strict=True))
                continue
            probs = probs[: p.sequential_problems]
            if method.decode == "beam":
                decoded = [beam(model, self.tok, q, p.beam_width) for q in probs]
            else:
                assert detector is not None
                decoded = [
                    retry_upon_regret(model, self.tok, q, detector, p.max_retries, seed=seed + i)
                    for i, q in enumerate(probs)
                ]
            out.extend(grade(q, d) for q, d in zip(probs, decoded, strict=True))
        write_atomic(path, "".join(json.dumps(g.to_json()) + "\n" for g in out))
        return out

    def steps(self) -> Iterator[tuple[str, Callable[[], object]]]:
        """Every unit of work in order, named, for a progress bar."""
        for seed in self.preset.seeds:
            for m in methods(self.preset):
                yield f"{m.name} · seed {seed}", lambda m=m, seed=seed: self.graded(m, seed)  # type: ignore[misc]
            if self.preset.probe_problems > 0:
                yield f"probe · seed {seed}", lambda seed=seed: self.probe_accuracy(seed)  # type: ignore[misc]


def preset_id(preset: Preset) -> str:
    return hashlib.sha256(json.dumps(run_identity(preset), sort_keys=True).encode()).hexdigest()[:12]


def all_graded(run: Run) -> dict[str, dict[int, list[Graded]]]:
    """method name → seed → graded solutions (only what is complete)."""
    out: dict[str, dict[int, list[Graded]]] = {}
    for m in methods(run.preset):
        for seed in run.preset.seeds:
            path = run.out / "evals" / f"{_slug(m.name)}-s{seed}.jsonl"
            if path.exists():
                out.setdefault(m.name, {})[seed] = read_graded(path)
    return out


def losses(run: Run) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for spec in run.preset.pretraining():
        for seed in run.preset.seeds:
            path = run.out / "models" / f"{_slug(spec.label)}-s{seed}" / "losses.json"
            if path.exists():
                out[f"{spec.label} s{seed}"] = json.loads(path.read_text())
    return out


def group_by_op(items: Sequence[Graded]) -> dict[int, list[Graded]]:
    out: dict[int, list[Graded]] = {}
    for g in items:
        out.setdefault(g.op, []).append(g)
    return out
