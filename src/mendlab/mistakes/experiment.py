"""The paper's table, end to end: pretrain on error-free or retry data, decode three ways, probe, fine-tune.

A run folder holds the preset it runs (`preset.json`; another preset is refused there), one checkpoint
folder per pretrained model, and one JSONL of graded solutions per (method, seed). Every piece is written
atomically when it is complete and skipped when it exists, so a killed run resumes where it stopped and
a finished one rebuilds its report without training anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mendlab.errors import MendlabError
from mendlab.mistakes.checker import check, split_steps
from mendlab.mistakes.corpus import DataSpec, Example, Rows, examples, pack
from mendlab.mistakes.decode import Decoded, beam, greedy, perfect_detector, retry_upon_regret
from mendlab.mistakes.igsm import GenConfig, Problem, problems
from mendlab.mistakes.lora import with_lora
from mendlab.mistakes.model import GPT, GPTConfig
from mendlab.mistakes.probe import accuracy, fit_probe, probe_data, probe_detector
from mendlab.mistakes.tokenizer import Tokenizer, tokenizer
from mendlab.mistakes.train import TrainConfig, train


@dataclass(frozen=True)
class ModelShape:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 512


@dataclass(frozen=True)
class Preset:
    name: str
    train_gen: GenConfig  # the pretraining problems (op up to train_gen.op_max: in distribution)
    test_ops: tuple[int, ...]  # graded at each; above train_gen.op_max is out of distribution
    test_max_instance: int
    n_train: int  # pretraining problems per model
    n_test: int  # test problems per op
    shape: ModelShape
    train: TrainConfig
    seeds: tuple[int, ...] = (0, 1)
    retry_rates: tuple[float, ...] = (0.1, 0.2, 0.5)
    masked_rates: tuple[float, ...] = (0.1, 0.2, 0.5)
    weak_rates: tuple[float, ...] = (0.2,)
    miss_rates: tuple[float, ...] = (0.2,)
    beam_width: int = 8
    # Beam search and retry upon regret decode one problem at a time: graded on the first N test problems
    # of each op (the table says so by its n); greedy rows on all of them.
    sequential_problems: int = 100
    max_retries: int = 10
    probe_problems: int = 300
    finetune_rate: float = 0.5  # the retry data LoRA and continued pretraining learn from
    finetune_steps: int = 300
    finetune_lr: float = 1e-3
    lora_rank: int = 8

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
    # Two cores, about 45 minutes for 18 models (2.2-2.5 min each with its greedy grading): a 2-layer model,
    # op 1-3 in training, graded up to op 5. Each model sees ~1M tokens: far too few to solve iGSM (the paper
    # trains on billions), so this preset shows the pipeline and the partial credit, not the paper's accuracies.
    "cpu": Preset(
        name="cpu",
        train_gen=GenConfig(op_min=1, op_max=3, max_instance=4),
        test_ops=(2, 3, 4, 5),
        test_max_instance=6,
        n_train=8_000,
        n_test=80,
        shape=ModelShape(n_layer=2, n_head=4, n_embd=128, block_size=512),
        train=TrainConfig(steps=500, batch_size=4, lr=3e-3, warmup=50, weight_decay=0.05),
        beam_width=4,
        sequential_problems=25,
        probe_problems=200,
        finetune_steps=150,
    ),
    # A GPU: toward the paper's iGSM-med (GPT2-12-12, op up to 15 in training, graded to 21).
    "gpu": Preset(
        name="gpu",
        train_gen=GenConfig(op_min=2, op_max=15, max_instance=20),
        test_ops=(10, 15, 18, 21),
        test_max_instance=28,
        n_train=200_000,
        n_test=500,
        shape=ModelShape(n_layer=12, n_head=12, n_embd=768, block_size=1024),
        train=TrainConfig(
            steps=20_000, batch_size=64, lr=2e-3, warmup=1000, weight_decay=0.05, device="cuda", bf16=True
        ),
        beam_width=32,
        sequential_problems=200,
        probe_problems=2000,
        finetune_steps=2000,
    ),
    # Seconds: what the tests run.
    "tiny": Preset(
        name="tiny",
        train_gen=GenConfig(op_min=2, op_max=3, max_instance=6),
        test_ops=(2, 4),
        test_max_instance=8,
        n_train=60,
        n_test=4,
        shape=ModelShape(n_layer=1, n_head=2, n_embd=32, block_size=384),
        train=TrainConfig(steps=6, batch_size=4, warmup=2, checkpoint_every=3),
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


# -- one graded solution, and the files that hold them --------------------------------------------------


@dataclass(frozen=True)
class Graded:
    id: str
    op: int
    correct: bool
    kind: str | None  # the first wrong step's kind
    backs: int  # [BACK] steps the model wrote itself
    regrets: int  # steps retry-upon-regret resampled
    # Partial credit, for models too small to get whole solutions right: the right steps written before the
    # first wrong one, over the steps the reference needs (1 when correct).
    progress: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def grade(problem: Problem, decoded: Decoded) -> Graded:
    v = check(problem, decoded.solution)
    need = len(split_steps(problem.solution))
    if v.correct:
        progress = 1.0
    else:
        before = split_steps(decoded.solution)[: v.first_wrong or 0]
        progress = min(1.0, sum("[BACK]" not in s for s in before) / need)
    backs = decoded.solution.count("[BACK]")
    return Graded(problem.id, problem.op, v.correct, v.kind, backs, decoded.regrets, progress)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def methods(preset: Preset) -> list[Method]:
    rows = [Method(spec.label, spec) for spec in preset.pretraining()]
    base = DataSpec()
    tune = DataSpec(preset.finetune_rate, "strong")
    rows += [
        Method(f"error-free + beam {preset.beam_width}", base, "beam"),
        Method("error-free + retry upon regret (probe)", base, "regret-probe"),
        Method("error-free + retry upon regret (perfect detector)", base, "regret-perfect"),
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


@dataclass
class Run:
    """One preset's run folder."""

    preset: Preset
    out: Path
    log: Callable[[str], None] = print
    tok: Tokenizer = field(default_factory=tokenizer)

    def __post_init__(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MendlabError(f"{self.out}: cannot make the run folder: {exc.strerror or exc}") from None
        marker = self.out / "preset.json"
        # The seeds are not part of it: each seed's models and grades are files of their own, so more
        # seeds extend a run, and `train --seed 3` adds to the same folder.
        mine = json.dumps({k: v for k, v in self.preset.as_dict().items() if k != "seeds"}, sort_keys=True, indent=1)
        if marker.exists():
            try:
                theirs = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise MendlabError(f"{marker}: not a preset file of mendlab; pass another --out") from None
            if theirs != json.loads(mine):
                raise MendlabError(f"{self.out} holds a run of another configuration; pass another --out")
        else:
            _write_atomic(marker, mine)

    @property
    def model_config(self) -> GPTConfig:
        s = self.preset.shape
        return GPTConfig(self.tok.vocab_size, s.n_layer, s.n_head, s.n_embd, s.block_size)

    def _instances(self, op: int) -> int:
        p = self.preset
        return p.train_gen.max_instance if op <= p.train_gen.op_max else p.test_max_instance

    def test_set(self) -> dict[int, list[Problem]]:
        p = self.preset
        return {
            # In distribution means the training problems' size too; only larger op grows the problem.
            op: problems(
                GenConfig(op_min=op, op_max=op, max_instance=self._instances(op)), "test", p.n_test, 10_000 + op
            )
            for op in p.test_ops
        }

    # -- models --------------------------------------------------------------------------------------------

    def pretrained(self, spec: DataSpec, seed: int) -> GPT:
        """The model pretrained on `spec` with `seed` (trained, or resumed, on first use)."""
        folder = self.out / "models" / f"{_slug(spec.label)}-s{seed}"
        final = folder / "model.pt"
        torch.manual_seed(seed)  # the initial weights are the seed's, whatever ran before in this process
        model = GPT(self.model_config)
        if final.exists():
            model.load_state_dict(torch.load(final, map_location="cpu"))
            return model.to(self.preset.train.device).eval()
        p = self.preset
        data = problems(p.train_gen, "train", p.n_train, seed)
        rows = _rows(self.tok, examples(self.tok, data, spec, seed), p.shape.block_size)
        cfg = replace(p.train, seed=seed)
        self.log(f"pretraining {spec.label} seed {seed}: {rows.tokens:,} tokens in {len(rows)} rows")
        result = train(model, rows, cfg, folder, data_key=f"{spec}|{p.train_gen}|{p.n_train}")
        _write_atomic(folder / "losses.json", json.dumps(result.losses))
        _write_atomic(folder / "train.json", json.dumps({"tokens": result.tokens, "steps": cfg.steps}))
        tmp = folder / "model.pt.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, final)
        return model.eval()

    def finetuned(self, kind: str, seed: int) -> GPT:
        p = self.preset
        folder = self.out / "models" / f"finetune-{kind}-s{seed}"
        base = self.pretrained(DataSpec(), seed)
        torch.manual_seed(seed)
        model = with_lora(base, p.lora_rank) if kind == "lora" else GPT(self.model_config)
        if kind != "lora":
            model.load_state_dict(base.state_dict())
        final = folder / "model.pt"
        if final.exists():
            model.load_state_dict(torch.load(final, map_location="cpu"))
            return model.to(p.train.device).eval()
        spec = DataSpec(p.finetune_rate, "strong")
        data = problems(p.train_gen, "train", p.n_train, 7_000 + seed)  # fresh problems, same distribution
        rows = _rows(self.tok, examples(self.tok, data, spec, seed), p.shape.block_size)
        cfg = replace(
            p.train, seed=seed, steps=p.finetune_steps, lr=p.finetune_lr, warmup=max(1, p.finetune_steps // 10)
        )
        self.log(f"fine-tuning ({kind}) seed {seed}")
        train(model, rows, cfg, folder, data_key=f"finetune|{kind}|{spec}")
        tmp = folder / "model.pt.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, final)
        return model.eval()

    def probe_accuracy(self, seed: int) -> dict[str, float]:
        path = self.out / "probes" / f"probe-s{seed}.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        model = self.pretrained(DataSpec(), seed)
        probe, held = self._probe(model, seed)
        result = {"accuracy": accuracy(probe, held), "n": len(held.labels), "computable": float(held.labels.mean())}
        _write_atomic(path, json.dumps(result))
        return result

    def _probe(self, model: GPT, seed: int) -> tuple[Any, Any]:
        p = self.preset
        train_p = problems(p.train_gen, "train", p.probe_problems, 5_000 + seed)
        held_p = problems(p.train_gen, "test", max(1, p.probe_problems // 3), 6_000 + seed)
        probe = fit_probe(probe_data(model, self.tok, train_p, seed), seed=seed)
        return probe, probe_data(model, self.tok, held_p, seed + 1)

    # -- evaluation ----------------------------------------------------------------------------------------

    def graded(self, method: Method, seed: int) -> list[Graded]:
        path = self.out / "evals" / f"{_slug(method.name)}-s{seed}.jsonl"
        if path.exists():
            return read_graded(path)
        model = self.finetuned(method.finetune, seed) if method.finetune else self.pretrained(method.data, seed)
        tests = self.test_set()
        out: list[Graded] = []
        detector = None
        if method.decode == "regret-probe":
            probe, _ = self._probe(model, seed)
            detector = probe_detector(probe)
        elif method.decode == "regret-perfect":
            detector = perfect_detector
        for _op, probs in tests.items():
            if method.decode == "greedy":
                decoded = greedy(model, self.tok, probs)
                out.extend(grade(q, d) for q, d in zip(probs, decoded, strict=True))
                continue
            probs = probs[: self.preset.sequential_problems]
            if method.decode == "beam":
                decoded = [beam(model, self.tok, q, self.preset.beam_width) for q in probs]
            else:
                assert detector is not None
                decoded = [
                    retry_upon_regret(model, self.tok, q, detector, self.preset.max_retries, seed=seed + i)
                    for i, q in enumerate(probs)
                ]
            out.extend(grade(q, d) for q, d in zip(probs, decoded, strict=True))
        _write_atomic(path, "".join(json.dumps(g.to_json()) + "\n" for g in out))
        return out

    def steps(self) -> Iterator[tuple[str, Callable[[], object]]]:
        """Every unit of work in order, named, for a progress bar."""
        for seed in self.preset.seeds:
            for m in methods(self.preset):
                yield f"{m.name} · seed {seed}", lambda m=m, seed=seed: self.graded(m, seed)  # type: ignore[misc]
            yield f"probe · seed {seed}", lambda seed=seed: self.probe_accuracy(seed)  # type: ignore[misc]


def preset_id(preset: Preset) -> str:
    return hashlib.sha256(json.dumps(preset.as_dict(), sort_keys=True).encode()).hexdigest()[:12]


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
