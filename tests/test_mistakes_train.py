"""The iGSM lab's model, trainer, decoders, probe, LoRA and the preset run, on a real (tiny) GPT."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mendlab.errors import MendlabError
from mendlab.mistakes import VERSION, experiment
from mendlab.mistakes.checker import can_next, check, split_steps
from mendlab.mistakes.corpus import DataSpec, encode, examples, pack, prompt_ids
from mendlab.mistakes.decode import Decoded, beam, budget, greedy, perfect_detector, retry_upon_regret
from mendlab.mistakes.experiment import PRESETS, Graded, Run, grade, methods, read_graded
from mendlab.mistakes.igsm import GenConfig, Problem, canonical, instance, problem_from_id, problems
from mendlab.mistakes.lora import trainable, with_lora
from mendlab.mistakes.model import GPT, GPTConfig
from mendlab.mistakes.probe import accuracy, fit_probe, own_mistakes, probe_data
from mendlab.mistakes.report import accuracy as pooled_accuracy
from mendlab.mistakes.report import progress, summarize, write_report
from mendlab.mistakes.retry import candidates, with_retries
from mendlab.mistakes.tokenizer import tokenizer
from mendlab.mistakes.train import TrainConfig, batch_rows, identity, lr_at, steps_for, train
from mendlab.stats import Estimate

TOK = tokenizer()
SMALL = GenConfig(op_min=2, op_max=2, max_instance=4)


def tiny(block: int = 384, layers: int = 2, embd: int = 64) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(TOK.vocab_size, n_layer=layers, n_head=2, n_embd=embd, block_size=block))


# -- the model -------------------------------------------------------------------------------------------


def test_packed_problems_do_not_see_each_other() -> None:
    model = tiny()
    a, b = torch.randint(0, TOK.vocab_size, (1, 7)), torch.randint(0, TOK.vocab_size, (1, 5))
    row = torch.cat((a, b), dim=1)
    doc = torch.tensor([[0] * 7 + [1] * 5])
    pos = torch.tensor([list(range(7)) + list(range(5))])
    packed, _ = model(row, doc=doc, positions=pos)
    alone, _ = model(b)
    assert torch.allclose(packed[0, 7:], alone[0], atol=1e-5)
    leaky, _ = model(row)  # without the mask, b attends to a: the test can tell
    assert not torch.allclose(leaky[0, 7:], alone[0], atol=1e-3)


def test_cached_left_padded_decoding_equals_a_full_forward() -> None:
    model = tiny()
    seq = torch.randint(0, TOK.vocab_size, (1, 12))
    full, _ = model(seq)
    pad = 3
    idx = torch.cat((torch.full((1, pad), TOK.pad_id), seq[:, :8]), dim=1)
    valid = torch.tensor([[False] * pad + [True] * 8])
    logits, _, cache = model.step(idx, (valid.long().cumsum(1) - 1).clamp(min=0), valid, None)
    assert torch.allclose(logits[0], full[0, 7], atol=1e-4)
    for t in range(8, 12):
        valid = torch.cat((valid, torch.ones((1, 1), dtype=torch.bool)), dim=1)
        logits, _, cache = model.step(seq[:, t : t + 1], torch.tensor([[t]]), valid, cache)
        assert torch.allclose(logits[0], full[0, t], atol=1e-4)


# -- the data the trainer sees ---------------------------------------------------------------------------


def test_only_the_solution_is_trained_and_masked_retries_are_not() -> None:
    p = problems(SMALL, "train", 1, 0)[0]
    ex = encode(TOK, p, p.solution)
    trained = [t for t, on in zip(ex.ids, ex.trained, strict=True) if on]
    assert TOK.decode(trained[:-1]) == p.solution and trained[-1] == TOK.eos_id
    r = with_retries(p, 0.9, "strong", random.Random(1))
    assert r.wrong, "p=0.9 inserts wrong steps"
    masked = encode(TOK, p, r.text, r.wrong)
    kept = TOK.decode([t for t, on in zip(masked.ids, masked.trained, strict=True) if on][:-1])
    # The wrong "Define W as" is not trained; the "[BACK]." that takes it back is (it must be learned).
    assert kept.count("[BACK].") == len(r.wrong)
    assert [s for s in split_steps(kept.replace("[BACK].", " ")) if s.strip()] == split_steps(p.solution)
    unmasked = TOK.decode([t for t, on in zip(masked.ids, encode(TOK, p, r.text).trained, strict=True) if on][:-1])
    assert unmasked == r.text


def test_packing_keeps_examples_whole_and_counts_real_tokens() -> None:
    data = examples(TOK, problems(SMALL, "train", 30, 0), DataSpec(), 0)
    rows = pack(data, 384, TOK.pad_id)
    assert rows.tokens == sum(len(e.ids) - 1 for e in data)
    assert int(rows.weights.sum()) == sum(sum(e.trained[1:]) for e in data)
    with pytest.raises(ValueError, match="does not fit"):
        pack(data, 20, TOK.pad_id)


# -- the trainer -----------------------------------------------------------------------------------------


def test_the_schedule_warms_up_then_decays_to_one_percent() -> None:
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx((1e-5 + 1e-3) / 2, rel=1e-6)
    assert lr_at(100, cfg) == pytest.approx(1e-5)


def test_the_trainer_overfits_a_tiny_set() -> None:
    data = examples(TOK, problems(SMALL, "train", 8, 0), DataSpec(), 0)
    rows = pack(data, 384, TOK.pad_id)
    model = tiny()
    result = train(model, rows, TrainConfig(steps=120, batch_size=4, lr=3e-3, warmup=5, weight_decay=0.0))
    assert result.losses[-1] < 0.3 * result.losses[0]


TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from pathlib import Path
    from mendlab.mistakes.corpus import DataSpec, examples, pack
    from mendlab.mistakes.igsm import GenConfig, problems
    from mendlab.mistakes.model import GPT, GPTConfig
    from mendlab.mistakes.tokenizer import tokenizer
    from mendlab.mistakes.train import TrainConfig, train
    tok = tokenizer()
    rows = pack(examples(tok, problems(GenConfig(2, 2, 4), "train", 16, 0), DataSpec(0.3), 0), 384, tok.pad_id)
    torch.manual_seed(0)
    model = GPT(GPTConfig(tok.vocab_size, n_layer=1, n_head=2, n_embd=32, block_size=384))
    slow = sys.argv[2] == "slow"
    def on_step(step, loss):
        if slow and step >= 4:
            print("STEP", step, flush=True)
            import time; time.sleep(0.3)
    cfg = TrainConfig(steps=12, batch_size=4, warmup=2, checkpoint_every=2)
    r = train(model, rows, cfg, Path(sys.argv[1]), on_step=on_step)
    torch.save(model.state_dict(), Path(sys.argv[1]) / "final.pt")
    import json
    counts = {"tokens": r.tokens, "trained": r.trained, "seconds": r.seconds}
    (Path(sys.argv[1]) / "counts.json").write_text(json.dumps(counts))
    """
)


def test_a_killed_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    script = tmp_path / "t.py"
    script.write_text(TRAIN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, str(script), str(whole), "fast"], check=True, env=env, timeout=120)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, str(script), str(cut), "slow"], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("STEP 7"):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert 4 <= state["step"] < 12, "killed mid-run, after a checkpoint"
    subprocess.run([sys.executable, str(script), str(cut), "fast"], check=True, env=env, timeout=120)
    a, b = torch.load(whole / "final.pt"), torch.load(cut / "final.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert len(torch.load(cut / "checkpoint.pt", weights_only=False)["losses"]) == 12
    # the counters survive the kill: tokens read and trained as in the whole run, and the seconds
    # before the kill (0.3 s a step from step 4 on) are kept, not restarted from 0
    whole_counts, cut_counts = (json.loads((d / "counts.json").read_text()) for d in (whole, cut))
    assert cut_counts["tokens"] == whole_counts["tokens"] > 0
    assert cut_counts["trained"] == whole_counts["trained"] > 0
    assert state["seconds"] >= 0.3 * (state["step"] - 4) and cut_counts["seconds"] > state["seconds"]


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path: Path) -> None:
    rows = pack(examples(TOK, problems(SMALL, "train", 4, 0), DataSpec(), 0), 384, TOK.pad_id)
    train(tiny(), rows, TrainConfig(steps=2, batch_size=2, warmup=1), tmp_path)
    with pytest.raises(MendlabError, match="another run"):  # a user mistake: one line, no traceback
        train(tiny(), rows, TrainConfig(steps=3, batch_size=2, warmup=1), tmp_path)


def test_a_token_budget_gives_equal_tokens_whatever_the_rows_hold() -> None:
    probs = problems(SMALL, "train", 60, 0)
    plain = pack(examples(TOK, probs, DataSpec(), 0), 384, TOK.pad_id)
    retry = pack(examples(TOK, probs, DataSpec(0.5), 0), 384, TOK.pad_id)
    assert retry.tokens > 1.2 * plain.tokens  # retry steps make longer solutions
    cfg = TrainConfig(tokens=20_000, batch_size=4, warmup=2)
    a, b = steps_for(cfg, plain), steps_for(cfg, retry)
    assert a.steps != b.steps
    masked = pack(examples(TOK, probs, DataSpec(0.5, mask_wrong=True), 0), 384, TOK.pad_id)
    trained = {}
    for name, rows, c in (("plain", plain, a), ("retry", retry, b), ("masked", masked, steps_for(cfg, masked))):
        result = train(tiny(layers=1, embd=32), rows, c)
        assert result.steps == c.steps and abs(result.tokens - 20_000) < 0.1 * 20_000, (result.tokens, c.steps)
        # read and trained tokens, recounted from the batches the schedule draws
        batches = [rows.take(batch_rows(len(rows), k, c)) for k in range(c.steps)]
        assert result.tokens == sum(int((x.doc >= 0).sum()) for x in batches)
        assert result.trained == sum(int(x.weights.sum()) for x in batches) < result.tokens  # prompts untrained
        trained[name] = result.trained
    # at equal tokens read, retry data puts the loss on more tokens (its prompts are a smaller share)
    # and the mask on fewer than unmasked retry data: the table prints both counts for that reason
    assert trained["retry"] > trained["plain"] and trained["masked"] < trained["retry"]
    assert steps_for(TrainConfig(steps=7), plain).steps == 7  # no budget: the steps as given


def test_a_checkpoint_is_the_same_run_on_another_device() -> None:
    cfg, mcfg = TrainConfig(steps=5), GPTConfig(TOK.vocab_size)
    assert identity(cfg, mcfg, "k") == identity(replace(cfg, device="cuda:1", bf16=True), mcfg, "k")
    assert identity(cfg, mcfg, "k") != identity(replace(cfg, lr=1e-4), mcfg, "k")


def test_greedy_gives_every_row_its_own_budget_whatever_the_batch() -> None:
    """A context sized as a run sizes it (the longest prompt + budget of any one problem) must not cut a
    short-prompt, long-solution problem batched with a long-prompt one: the batch is not the unit."""
    pool = problems(GenConfig(op_min=1, op_max=6, max_instance=8), "train", 60, 4)
    long_prompt = max(pool, key=lambda q: len(prompt_ids(TOK, q)) - budget(TOK, q))
    long_budget = max(pool, key=lambda q: budget(TOK, q) - len(prompt_ids(TOK, q)))
    pair = [long_prompt, long_budget]
    context = max(len(prompt_ids(TOK, q)) + budget(TOK, q) for q in pair)
    assert budget(TOK, long_budget) > context - len(prompt_ids(TOK, long_prompt)), "the batch must bind"
    torch.manual_seed(0)
    model = GPT(GPTConfig(TOK.vocab_size, 1, 2, 32, context)).eval()
    with torch.no_grad():
        # a constant [EOS] row scores ~0 after the (zero-mean) LayerNorm, below this seed's argmax at every
        # step: the length assertion below checks that the row ran to its cap, not to an early [EOS]
        model.wte.weight[TOK.eos_id] = -10 * model.wte.weight.abs().max()
    alone = [greedy(model, TOK, [q])[0] for q in pair]
    together = greedy(model, TOK, pair, batch_size=2)
    assert together == alone
    assert len(TOK.encode(together[1].solution)) == budget(TOK, long_budget)


# -- decoding, on a model that learned a handful of problems by heart -----------------------------------


@pytest.fixture(scope="module")
def memorized() -> tuple[GPT, list]:  # type: ignore[type-arg]
    probs = problems(SMALL, "train", 6, 3)
    rows = pack(examples(TOK, probs, DataSpec(), 0), 384, TOK.pad_id)
    torch.manual_seed(0)
    model = GPT(GPTConfig(TOK.vocab_size, n_layer=2, n_head=2, n_embd=64, block_size=384))
    train(model, rows, TrainConfig(steps=250, batch_size=6, lr=3e-3, warmup=10, weight_decay=0.0))
    return model, probs


def test_greedy_beam_and_regret_return_the_learned_solutions(memorized: tuple[GPT, list]) -> None:  # type: ignore[type-arg]
    model, probs = memorized
    for p, d in zip(probs, greedy(model, TOK, probs, batch_size=4), strict=True):
        assert check(p, d.solution).correct, d.solution
    for p in probs[:3]:
        assert check(p, beam(model, TOK, p, width=3).solution).correct
        d = retry_upon_regret(model, TOK, p, perfect_detector, max_retries=3)
        assert check(p, d.solution).correct and d.regrets == 0  # nothing to regret on a right path


def test_regret_resamples_the_step_it_rejects(memorized: tuple[GPT, list]) -> None:  # type: ignore[type-arg]
    model, probs = memorized
    seen: list[str] = []

    def always(problem, previous, name, hidden):  # type: ignore[no-untyped-def]
        seen.append(name)
        return True

    d = retry_upon_regret(model, TOK, probs[0], always, max_retries=4, seed=1)
    assert d.regrets == 4 and len(seen) == 4
    first = split_steps(probs[0].solution)[0]
    assert seen[0] in first, "the detector is asked about the step's own parameter"


def test_a_regret_at_temperature_zero_rewinds_onto_the_greedy_path(memorized: tuple[GPT, list]) -> None:  # type: ignore[type-arg]
    """Rejecting one step once, at temperature 0, must resample exactly that step again from a cache cut
    back to the step's start: the solution is the greedy one, one regret. A cache cut a token too far
    or too short writes something else."""
    model, probs = memorized
    for p in probs[:3]:
        want = greedy(model, TOK, [p])[0].solution
        for reject_at in (1, 2):
            asked: list[str] = []

            def once(problem, previous, name, hidden, asked=asked, reject_at=reject_at):  # type: ignore[no-untyped-def]
                asked.append(name)
                return len(asked) == reject_at

            d = retry_upon_regret(model, TOK, p, once, max_retries=5, temperature=0.0)
            assert (d.solution, d.regrets) == (want, 1), (reject_at, d.solution)
            assert asked[reject_at - 1] == asked[reject_at]  # asked again about the same step


class Scripted:
    """A stand-in for `GPT.step` whose next-token distribution is a script keyed by the tokens generated so
    far (a logic test of the search, no weights). Unscripted histories end: [EOS] with probability 1."""

    def __init__(self, script: dict[tuple[int, ...], dict[int, float]]) -> None:
        self.script = script
        self.wte = torch.nn.Embedding(2, 2)
        self.cfg = GPTConfig(TOK.vocab_size, block_size=100_000)
        self.head = 0

    def step(self, idx, positions, keys_valid, cache):  # type: ignore[no-untyped-def]
        if cache is None:
            self.head = idx.shape[1]
        hist = idx if cache is None else torch.cat((cache[0][0], idx), dim=1)
        logits = torch.full((idx.shape[0], TOK.vocab_size), -1e9)
        for b in range(idx.shape[0]):
            for token, prob in self.script.get(tuple(hist[b, self.head :].tolist()), {TOK.eos_id: 1.0}).items():
                logits[b, token] = math.log(prob)
        return logits, torch.zeros(idx.shape[0], 2), [(hist, hist)]


def test_beam_search_ranks_by_mean_log_probability_and_does_not_stop_early() -> None:
    a, b, c, d = (TOK.stoi[w] for w in ("Define", "so", "The", "many"))
    eos = TOK.eos_id
    script: dict[tuple[int, ...], dict[int, float]] = {
        (): {eos: 0.6, c: 0.3, a: 0.1},  # stop now: the best total log-probability
        (c,): {eos: 0.95, d: 0.05},
        **{(a, *[b] * k): {b: 0.999, eos: 0.001} for k in range(20)},
        (a, *[b] * 20): {eos: 1.0},  # A B^20: an unlikely start, then near-certain tokens: the best mean
    }
    p = problems(SMALL, "test", 1, 0)[0]
    assert budget(TOK, p) > 25
    got = beam(Scripted(script), TOK, p, width=2)  # type: ignore[arg-type]
    # After two steps two hypotheses are finished, the best at mean -0.51, and A B at -1.15 is behind:
    # stopping there (as "no open beam beats the best finished" at the current length) returns "".
    assert got.solution == TOK.decode([a] + [b] * 20)


def test_a_model_that_never_stops_is_cut_at_the_budget() -> None:
    probs = problems(SMALL, "test", 3, 0)
    untrained = tiny()  # almost never samples [EOS]
    for p, d in zip(probs, greedy(untrained, TOK, probs), strict=True):
        assert len(TOK.encode(d.solution)) <= budget(TOK, p)
    one = retry_upon_regret(untrained, TOK, probs[0], perfect_detector, max_retries=0)
    assert len(TOK.encode(one.solution)) <= budget(TOK, probs[0])
    assert len(TOK.encode(beam(untrained, TOK, probs[0], width=2).solution)) <= budget(TOK, probs[0])


def test_greedy_batches_agree_with_one_at_a_time(memorized: tuple[GPT, list]) -> None:  # type: ignore[type-arg]
    model, probs = memorized
    together = greedy(model, TOK, probs, batch_size=6)
    alone = [greedy(model, TOK, [p], batch_size=1)[0] for p in probs]
    assert together == alone


# -- probe and LoRA --------------------------------------------------------------------------------------


def test_the_probe_beats_the_majority_class_on_held_out_steps() -> None:
    gen = GenConfig(op_min=3, op_max=4, max_instance=6)
    rows = pack(examples(TOK, problems(gen, "train", 200, 0), DataSpec(0.3), 0), 384, TOK.pad_id)
    model = tiny()
    train(model, rows, TrainConfig(steps=80, batch_size=8, lr=3e-3, warmup=5))
    fit = probe_data(model, TOK, problems(gen, "train", 120, 1), seed=0)
    held = probe_data(model, TOK, problems(gen, "train", 60, 2), seed=1)
    majority = max(float(held.labels.mean()), 1 - float(held.labels.mean()))
    assert 0.2 < float(held.labels.mean()) < 0.8, "both labels are common"
    acc = accuracy(fit_probe(fit), held)
    assert acc > majority + 0.05, (acc, majority, len(held.labels))


def test_the_probe_reads_the_state_at_as_after_clean_prefixes_only() -> None:
    model = tiny()
    probs = problems(GenConfig(op_min=3, op_max=4, max_instance=6), "train", 5, 0)
    data = probe_data(model, TOK, probs, seed=0)
    assert len(data.where) == len(data.labels) == len(data.features) > 10
    by_id = {p.id: p for p in probs}
    for row, (pid, k, name) in enumerate(data.where):
        p = by_id[pid]
        steps = split_steps(p.solution)
        context = [*prompt_ids(TOK, p), *TOK.encode(" ".join(steps[:k])), *TOK.encode(f"Define {name} as")]
        assert TOK.back_id not in context and context[-1] == TOK.stoi["as"]
        h, _ = model.hidden(torch.tensor([context]))
        assert torch.allclose(data.features[row], h[0, -1], atol=1e-5)
        assert data.labels[row] == float(can_next(p, steps[:k], name))
    assert 0.3 < float(data.labels.mean()) < 0.7  # the next step, and one that cannot be computed yet


def test_own_mistakes_are_first_wrong_steps_naming_a_parameter_not_computable_yet() -> None:
    model = tiny()
    p = next(q for q in problems(GenConfig(op_min=3, op_max=4, max_instance=6), "train", 20, 0)
             if candidates(q, "strong", 0))  # fmt: skip
    steps = split_steps(p.solution)
    w = candidates(p, "strong", 0)[0]
    early = f"Define {w} as z; so z = 3."  # a parameter whose dependencies are not defined yet
    head, _, value = steps[0].rpartition(" = ")
    miscopied = f"{head} = {(int(value.rstrip('.')) + 1) % 23}."  # the right parameter, a wrong number
    own = own_mistakes(
        model, TOK, [(p, p.solution), (p, " ".join([early, *steps])), (p, " ".join([miscopied, *steps[1:]])), (p, "so")]
    )
    assert (own.wrong, own.named, len(own.features)) == (3, 2, 1)
    assert own.kinds == (check(p, early).kind,)
    h, _ = model.hidden(torch.tensor([[*prompt_ids(TOK, p), *TOK.encode(f"Define {w} as")]]))
    assert torch.allclose(own.features[0], h[0, -1], atol=1e-5)


def test_lora_trains_only_its_adapters() -> None:
    base = tiny()
    tuned = with_lora(base, rank=4)
    assert 0 < trainable(tuned) < base.n_params() / 5
    before = {k: v.clone() for k, v in tuned.state_dict().items() if "lora_" not in k}
    rows = pack(examples(TOK, problems(SMALL, "train", 4, 0), DataSpec(0.5), 0), 384, TOK.pad_id)
    train(tuned, rows, TrainConfig(steps=5, batch_size=2, warmup=1, lr=1e-2))
    after = tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    x = torch.randint(0, TOK.vocab_size, (1, 6))
    assert not torch.allclose(base(x)[0], tuned(x)[0])


# -- statistics and the preset run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def by_structure() -> list[list[Problem]]:
    """Real test-split problems grouped by solution structure, the largest groups first."""
    groups: dict[str, list[Problem]] = {}
    for q in problems(GenConfig(op_min=2, op_max=2, max_instance=4), "test", 40, 3):
        groups.setdefault(canonical(q), []).append(q)
    out = sorted(groups.values(), key=len, reverse=True)
    assert len(out) >= 3 and len(out[0]) >= 3, "the fixture needs a few structures, one of them repeated"
    return out


def _g(q: Problem, ok: bool) -> Graded:
    return Graded(q.id, q.op, ok, None if ok else "arith", 0, 0, 1.0 if ok else 0.0)


def test_pooled_accuracy_clusters_by_solution_structure_across_seeds(by_structure: list[list[Problem]]) -> None:
    """Problems of one structure, and every seed's grade of them, are one cluster: the interval is the
    clustered one computed here from `igsm.canonical` directly, wider than one that treats problems (or
    grades) as independent."""
    from mendlab.stats import ratio_t_ci

    grades = {0: [], 1: []}  # type: dict[int, list[Graded]]
    for i, group in enumerate(by_structure):
        for q in group:
            for seed in (0, 1):
                grades[seed].append(_g(q, i % 2 == 0))  # whole structures pass or fail together
    e = pooled_accuracy(grades)
    per = [(len(gr) * 2 if i % 2 == 0 else 0, len(gr) * 2) for i, gr in enumerate(by_structure)]
    ref = ratio_t_ci(per)
    assert (e.successes, e.trials) == (sum(k for k, _ in per), sum(n for _, n in per))
    assert (e.low, e.high) == pytest.approx((ref.low, ref.high))
    by_problem = ratio_t_ci([(2 * int(g.correct), 2) for g in grades[0]])
    assert e.high - e.low > by_problem.high - by_problem.low


def test_paired_difference_pairs_problem_and_seed_and_seeds_speak_for_themselves(
    by_structure: list[list[Problem]],
) -> None:
    from mendlab.mistakes.report import gate, paired, seed_diffs, verdict

    qs = [q for group in by_structure for q in group]
    # the baseline is right on everything for seed 0 and wrong on everything for seed 1; the other row
    # the reverse: paired by seed, other - baseline is -1 then +1 (pairing across seeds would say 0)
    base = {0: [_g(q, True) for q in qs], 1: [_g(q, False) for q in qs]}
    other = {0: [_g(q, False) for q in qs[:5]], 1: [_g(q, True) for q in qs[:5]]}  # graded on a subset
    same, diff = paired(base, other, [2])
    assert (same.successes, same.trials) == (5, 10) and diff.n == 10 and diff.value == 0
    per_seed = seed_diffs(base, other, [2])
    assert per_seed[0].value == -1 and per_seed[1].value == 1
    g = {"passed": True, "has_headroom": True}
    half = Estimate(0.5, 0.3, 0.7, 10, 20)  # the baseline on the row's own problems: room both ways
    assert verdict(g, half, diff, per_seed, 2) == "no difference shown"
    better = {0: [_g(q, True) for q in qs], 1: [_g(q, True) for q in qs]}
    _, up = paired(base | {0: [_g(q, False) for q in qs]}, better, [2])
    ups = seed_diffs(base | {0: [_g(q, False) for q in qs]}, better, [2])
    assert up.value == 1 and all(e.value == 1 for e in ups.values())
    # every pair improved, but in a handful of structures that count about once each: not yet proof
    assert up.low < 0.5
    up = replace(up, low=0.4)  # as many structures again would exclude 0: the verdict's other branches
    assert verdict(g, half, up, ups, 2) == "better"
    _, down = paired(better, base | {0: [_g(q, False) for q in qs]}, [2])
    downs = seed_diffs(better, base | {0: [_g(q, False) for q in qs]}, [2])
    down = replace(down, high=-0.4)
    assert down.value == -1 and verdict(g, half, down, downs, 2) == "worse"
    assert verdict(g, half, up, {0: ups[0]}, 2) == "incomplete"  # a seed not graded yet decides nothing
    assert verdict(g, half, up, {0: ups[0], 1: replace(ups[1], value=-0.1)}, 2) == "no difference shown"
    assert verdict({"passed": False, "has_headroom": True}, half, up, ups, 2).startswith("uninformative")
    assert verdict({"passed": True, "has_headroom": False}, half, up, ups, 2).startswith("uninformative")
    # the whole OOD set has room, but the first few problems a beam row decodes sit at the floor
    floor_here = Estimate(0.0, 0.0, 0.1, 0, 20)
    assert verdict(g, floor_here, up, ups, 2).endswith("on this row's problems")
    # the gate: every seed must pass in distribution (one seed that learned does not carry one that did not)
    ind, ood = qs[:20], qs[20:]
    learned = [_g(q, True) for q in ind] + [_g(q, i % 2 == 0) for i, q in enumerate(ood)]
    ood_op = [replace(g, op=5) for g in learned[20:]]
    one = gate({0: learned[:20] + ood_op, 1: [_g(q, False) for q in ind]}, [2], [5], (0, 1))
    assert not one["passed"] and one["per_seed"]["1"]["value"] == 0
    both = gate({s: learned[:20] + ood_op for s in (0, 1)}, [2], [5], (0, 1))
    assert both["passed"] and both["has_headroom"]
    floor = gate({s: learned[:20] + [replace(g, correct=False) for g in ood_op] for s in (0, 1)}, [2], [5], (0, 1))
    assert floor["passed"] and not floor["has_headroom"]  # OOD at 0%: no room for a difference
    missing = gate({0: learned[:20]}, [2], [5], (0, 1))
    assert not missing["passed"] and missing["missing_seeds"] == [1]


def test_partial_credit_counts_the_necessary_steps_right_before_the_first_error() -> None:
    def spare_constant(q: Problem) -> bool:
        inst = instance(q)
        return any(x not in inst.necessary and inst.defs[x].form == "const" for x in inst.stated)

    pool = problems(GenConfig(op_min=4, op_max=4, max_instance=8), "train", 40, 0)
    p = next(q for q in pool if len(split_steps(q.solution)) >= 3 and spare_constant(q))
    steps = split_steps(p.solution)
    assert grade(p, Decoded(p.solution)).progress == 1.0
    wrong = " ".join([*steps[:2], "Define nothing as [BACK].", steps[-1]])  # a taken-back step is no credit
    g = grade(p, Decoded(wrong))
    assert not g.correct and g.backs == 1 and g.solution == wrong
    assert g.progress == pytest.approx(2 / len(steps))
    # a right but unnecessary step is allowed, and is no progress
    inst = instance(p)
    x = next(x for x in inst.stated if x not in inst.necessary and inst.defs[x].form == "const")
    used = set(re.findall(r"\b[A-Za-z]\b", p.solution))
    free = next(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    bonus = f"Define {inst.params[x].name} as {free}; so {free} = {inst.values[x]}."
    assert check(p, f"{bonus} {p.solution}").correct
    g = grade(p, Decoded(" ".join([bonus, steps[0], steps[-1]])))
    assert not g.correct and g.progress == pytest.approx(1 / len(steps))
    by_seed = {0: [Graded(p.id, 4, False, "deps", 0, 0, 0.5)], 1: [Graded(p.id, 4, True, None, 0, 0, 1.0)]}
    assert progress(by_seed, [4]).value == pytest.approx(0.75)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = Run(PRESETS["tiny"], tmp_path_factory.mktemp("tiny") / "run", log=lambda s: None)
    for _name, work in run.steps():
        work()
    write_report(run)
    return run


def test_the_tiny_preset_runs_reports_and_resumes(tiny_run: Run) -> None:
    preset, folder = tiny_run.preset, tiny_run.out
    summary = json.loads((folder / "summary.json").read_text())
    assert {p.name for p in folder.iterdir()} >= {"summary.json", "report.md", "report.html", "accuracy_vs_op.png",
                                                  "losses.png"}  # fmt: skip
    names = [m["method"] for m in summary["methods"]]
    assert names == [m.name for m in methods(preset)]
    ood_ops = len(preset.ood_ops)
    for row in summary["methods"]:
        assert row["seeds"] == [0, 1]
        n = row["out_of_distribution"]["n"]
        sequential = "beam" in row["method"] or "regret" in row["method"]
        assert n == (preset.sequential_problems if sequential else preset.n_test) * 2 * ood_ops
        # the error-free model's greedy grades on exactly this row's problems, and the paired difference
        assert row["baseline_same_ood"]["n"] == row["diff_ood"]["n"] == n
        assert row["train_tokens"] is not None  # decoding rows: the error-free model's; fine-tuned: both trainings
    base = summary["methods"][0]
    assert base["diff_ood"]["mean"] == 0 and base["baseline_same_ood"] == base["out_of_distribution"]
    # pretrained models train to the same token budget whatever their data
    pretrained = [r["train_tokens"] for r in summary["methods"][: len(preset.pretraining())]]
    step = preset.train.batch_size * preset.shape.block_size  # the most a step can see: the budget's grain
    assert all(abs(t - preset.train_tokens) <= step for t in pretrained), pretrained
    for spec in preset.pretraining():  # the counts are the batches' own, recounted here (and mean over seeds)
        counts = []
        for seed in preset.seeds:
            rows = experiment._rows(
                TOK, examples(TOK, tiny_run.train_problems(seed), spec, seed), preset.shape.block_size
            )
            cfg = steps_for(replace(preset.train, seed=seed, tokens=preset.train_tokens), rows)
            batches = [rows.take(batch_rows(len(rows), k, cfg)) for k in range(cfg.steps)]
            counts.append((sum(int((b.doc >= 0).sum()) for b in batches), sum(int(b.weights.sum()) for b in batches)))
        row = next(r for r in summary["methods"] if r["method"] == spec.label)
        read, trained = (round(sum(c[i] for c in counts) / len(counts)) for i in (0, 1))
        assert (row["train_tokens"], row["trained_tokens"]) == (read, trained), spec
    # a toy model learns nothing: the gate fails per seed and says the comparison is uninformative
    gate = summary["gate"]
    assert gate["passed"] is False and set(gate["per_seed"]) == {"0", "1"} and gate["threshold"] == 0.5
    md = (folder / "report.md").read_text()
    assert "**Validation gate failed**" in md and "uninformative" in md
    assert all(r["verdict"].startswith("uninformative") for r in summary["methods"][1:])
    assert set(summary["test_structures_per_op"]) == {str(op) for op in preset.test_ops}
    assert all(n >= 1 for n in summary["test_structures_per_op"].values())
    assert "| paper (iGSM-med OOD) |" in md and "| 94% |" in md  # retry-strong p=0.5 beside the paper's 94%
    probe = summary["probe"]["0"]
    assert {"accuracy", "own_wrong", "own_named", "own_can_next", "own_recall"} <= probe.keys()
    # every transcript is kept, and grades as stored
    for path in (folder / "evals").glob("*.jsonl"):
        for g in read_graded(path):
            assert check(problem_from_id(g.id), g.solution).correct == g.correct
    # final models keep no training checkpoint
    assert not list((folder / "models").rglob("checkpoint.pt*"))
    # Resume: a second run trains nothing and regrades nothing.
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    time.sleep(0.01)
    again = Run(preset, folder, log=lambda s: pytest.fail(f"trained again: {s}"))
    for _name, work in again.steps():
        work()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.suffix in (".pt", ".jsonl"))
    assert json.loads(json.dumps(summarize(again))) == summary
    with pytest.raises(MendlabError, match="another configuration"):
        Run(replace(preset, n_test=5), folder)
    Run(replace(preset, seeds=(0, 1, 2)), folder)  # more seeds extend the same run
    Run(replace(preset, train=replace(preset.train, device="cuda", bf16=True)), folder)  # so does another device


def test_a_run_folder_is_refused_at_another_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = PRESETS["tiny"]
    Run(preset, tmp_path)
    marker = json.loads((tmp_path / "preset.json").read_text())
    assert marker["version"] == VERSION and not {"device", "bf16"} & marker["train"].keys()
    monkeypatch.setattr(experiment, "VERSION", VERSION + 1)
    with pytest.raises(MendlabError, match=f"version {VERSION} of the lab"):
        Run(preset, tmp_path)


class Interrupted(Exception):
    pass


def test_an_interrupted_tiny_run_resumes_to_the_uninterrupted_one(
    tiny_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = replace(tiny_run.preset, seeds=(0,))
    real = experiment.train
    calls: list[Path | None] = []

    def interrupted(model, rows, cfg, out_dir=None, data_key="", on_step=None):  # type: ignore[no-untyped-def]
        calls.append(out_dir)

        def stop(step: int, loss: float) -> None:
            if len(calls) == 2 and step == 5:  # the second model, after its checkpoint at step 3
                raise Interrupted

        return real(model, rows, cfg, out_dir, data_key, on_step=stop)

    monkeypatch.setattr(experiment, "train", interrupted)
    cut = Run(preset, tmp_path / "cut", log=lambda s: None)
    with pytest.raises(Interrupted):
        for _name, work in cut.steps():
            work()
    assert calls[1] is not None
    state = torch.load(calls[1] / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and not (calls[1] / "model.pt").exists()
    monkeypatch.setattr(experiment, "train", real)
    resumed = Run(preset, tmp_path / "cut", log=lambda s: None)
    for _name, work in resumed.steps():
        work()
    for path in sorted((tmp_path / "cut" / "evals").glob("*.jsonl")):
        assert path.read_text() == (tiny_run.out / "evals" / path.name).read_text(), path.name
    for path in sorted((tmp_path / "cut" / "models").glob("*/model.pt")):
        mine, theirs = torch.load(path), torch.load(tiny_run.out / "models" / path.parent.name / "model.pt")
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), path
        assert (path.parent / "losses.json").read_text() == (
            tiny_run.out / "models" / path.parent.name / "losses.json"
        ).read_text()
    assert not list((tmp_path / "cut" / "models").rglob("checkpoint.pt*"))
    assert json.loads((tmp_path / "cut" / "probes" / "probe-s0.json").read_text()) == json.loads(
        (tiny_run.out / "probes" / "probe-s0.json").read_text()
    )


def test_a_model_is_the_same_whatever_ran_before_it(tmp_path: Path) -> None:
    preset = replace(PRESETS["tiny"], seeds=(0,))
    a = Run(preset, tmp_path / "a", log=lambda s: None).pretrained(DataSpec(), 0)
    torch.rand(3)  # a stray draw from the global generator must not change the next model
    b = Run(preset, tmp_path / "b", log=lambda s: None).pretrained(DataSpec(), 0)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_bad_run_options_are_one_line_errors(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (["train", "tiny", "--device", "foo"], ["run", "tiny", "-o", str(afile)], ["run", "nope"]):
        proc = subprocess.run(
            [sys.executable, "-m", "mendlab", "mistakes", *args], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error:"), proc.stderr


def test_a_model_outside_the_presets_rows_and_a_busy_run_folder_are_refused(tmp_path: Path) -> None:
    """`--retry 0 --masked` would train into the error-free folder under another data key (a traceback
    on resume), and a p the preset has no row for would train a model nothing grades; a folder another
    process works in must not get a second trainer writing the same files."""
    folder = tmp_path / "run"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "mendlab", "mistakes", *args, "-o", str(folder)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    for args, said in (
        (["train", "tiny", "--retry", "0", "--masked"], "--retry above 0"),
        (["train", "tiny", "--retry", "0", "--kind", "weak"], "--retry above 0"),
        (["train", "tiny", "--retry", "0.3"], "not a row of preset 'tiny'"),
    ):
        proc = cli(*args)
        assert proc.returncode == 2 and said in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not folder.exists()  # refused before the run folder is made: nothing left behind
    run = Run(PRESETS["tiny"], folder, log=lambda s: None)
    with run.exclusive():
        proc = cli("eval", "tiny", "--method", "error-free")
        assert proc.returncode == 2 and "in use by another mendlab process" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (folder / "evals").exists()
    with run.exclusive():  # released when the holder is done
        pass
