"""Training loop for :class:`ctcseq.model.CTCModel`: bucketed batches,
checkpoints, exact resume, early stopping, a JSONL log and learning curves.

Determinism: the batch order of epoch e and the weight noise of each batch
are drawn from generators seeded by (seed, epoch[, batch]), and every
checkpoint stores the weights, the optimiser state and the position in the
epoch.  Resuming from any checkpoint therefore replays exactly the updates an
uninterrupted run makes, and ends with the same weights.

Files in the output directory::

    checkpoint.npz   weights + optimiser state + trainer state (atomic)
    best.npz         the model with the lowest dev error so far (a plain
                     CTCModel file: what decoding needs)
    train.jsonl      one JSON object per epoch (standard JSON: a value that
                     is not a number, such as the dev loss without dev
                     data, is null), rewritten from the checkpoint's history
                     after each checkpoint, so it never lists an epoch twice
    curves.png       training loss and dev error per epoch

A resumed run must use the same settings, except ``max_epochs`` and
``patience``, which only decide when to stop: a finished run can be extended.

Utterances whose transcript needs more output steps than they have
(:func:`ctcseq.model.min_output_steps`, e.g. at ``stride`` 2) cannot be
learnt: training gives them zero loss and gradient (they stay in their
batches, so the updates are those of earlier versions), leaves them out of
the reported training and dev losses, and counts them (``train_infeasible``,
``dev_infeasible`` in each epoch's record, and a warning).  Updates skipped
for a non-finite loss or gradient are counted too (``skipped_updates``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np

from .ctc import ctc_loss
from .datadir import atomic_write
from .decode import greedy_decode
from .errors import DataError, UserError
from .metrics import align, error_rate
from .model import CTCModel, min_output_steps
from .mpi import shard_bounds
from .optim import SGD, Adam, WeightNoise, clip_grad_norm, swapped_in
from .progress import Progress

__all__ = ["Example", "TrainConfig", "make_batches", "pad_batch", "mask_batch", "Trainer"]


@dataclasses.dataclass
class Example:
    """One utterance: features (n_frames, dim) float32 and label indices."""

    utt: str
    feats: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings (all JSON-able; stored in checkpoints).

    optimizer : "adam" or "sgd" (SGD with momentum, Graves's choice)
    lr, momentum : learning rate; momentum for SGD
    lr_decay : the learning rate of epoch e (from 0) is ``lr * lr_decay**e``
        (1: constant); a decaying rate lets the last epochs settle
    batch_frames : a batch holds at most this many (padded) frames
    max_epochs, patience : stop after max_epochs, or after ``patience``
        epochs without a better dev error
    clip : global gradient-norm clip (0 disables)
    weight_noise : std of Gaussian weight noise (0 disables; Graves 2013
        used 0.075, after convergence without it)
    dropout : share of the BiLSTM outputs (between layers and before the
        output layer) zeroed in training, the rest scaled by 1 / (1 - dropout)
    freq_masks, freq_width : SpecAugment (Park et al. 2019): per utterance,
        this many bands of 0..freq_width consecutive channels set to zero
        (the same channels in the statics and in every delta block)
    time_masks, time_width : per utterance, this many spans of 0..time_width
        frames (at most 1/20 of the utterance each) set to zero
    feature_blocks : the input is this many equal blocks of channels
        (statics, deltas, delta-deltas: 3) for the frequency masks
    ema : keep an exponential moving average of the weights, with this
        decay per update (0 disables; the first updates use the smaller
        ``(1 + n) / (10 + n)``); dev evaluation and ``best.npz`` then use the
        averaged weights, which are smoother than the last update's
    checkpoint_every : also checkpoint every this many batches (0: only at
        the end of each epoch)
    seed : batch order and weight noise
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    lr_decay: float = 1.0
    momentum: float = 0.9
    batch_frames: int = 8000
    max_epochs: int = 20
    patience: int = 3
    clip: float = 5.0
    weight_noise: float = 0.0
    dropout: float = 0.0
    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0
    feature_blocks: int = 1
    ema: float = 0.0
    checkpoint_every: int = 50
    seed: int = 0

    # settings a resumed run may change: they only decide when to stop
    RESUMABLE_CHANGES = ("max_epochs", "patience")

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise UserError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("batch_frames", "max_epochs"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "clip", "weight_noise", "patience", "checkpoint_every",
                     "freq_masks", "freq_width", "time_masks", "time_width"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.lr_decay <= 1:
            raise UserError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.ema < 1:
            raise UserError(f"ema must be in [0, 1), got {self.ema}")
        if self.feature_blocks < 1:
            raise UserError(f"feature_blocks must be >= 1, got {self.feature_blocks}")


def make_batches(lengths, batch_frames, rng):
    """Bucket by length: sort, cut into batches of at most ``batch_frames``
    padded frames, shuffle the batch order.

    Returns a list of index arrays.  An utterance longer than batch_frames
    gets a batch of its own.
    """
    lengths = np.asarray(lengths)
    # ties broken by a random key so equal lengths mix across epochs
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches, cur, longest = [], [], 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if cur and new_longest * (len(cur) + 1) > batch_frames:
            batches.append(np.array(cur))
            cur, new_longest = [], lengths[i]
        cur.append(i)
        longest = new_longest
    if cur:
        batches.append(np.array(cur))
    rng.shuffle(batches)
    return batches


def pad_batch(examples, dtype):
    """(x (T, N, D), lengths (N,), targets (N, S), target_lengths (N,))."""
    lengths = np.array([e.feats.shape[0] for e in examples])
    tlens = np.array([len(e.labels) for e in examples])
    T, D = lengths.max(), examples[0].feats.shape[1]
    x = np.zeros((T, len(examples), D), dtype)
    targets = np.zeros((len(examples), max(1, tlens.max())), np.int64)
    for n, e in enumerate(examples):
        x[: lengths[n], n] = e.feats
        targets[n, : tlens[n]] = e.labels
    return x, lengths, targets, tlens


def mask_batch(x, lengths, rng, freq_masks=0, freq_width=0, time_masks=0, time_width=0,
               blocks=1):
    """SpecAugment-style masking (Park et al. 2019) of a padded batch, in place.

    Parameters
    ----------
    x : ndarray (T, N, D)
        Normalised features (zero is the mean, so a masked value carries no
        information); D must be a multiple of ``blocks``.
    lengths : array of int (N,)
    rng : numpy.random.Generator
    freq_masks, freq_width : per sequence, ``freq_masks`` bands of
        ``U{0..freq_width}`` consecutive channels of each of the ``blocks``
        blocks of D / blocks channels (the same channels in every block, so
        a band is hidden in the statics and in their deltas alike)
    time_masks, time_width : per sequence, ``time_masks`` spans of
        ``U{0..min(time_width, length // 20)}`` frames

    Returns
    -------
    x
    """
    T, N, D = x.shape
    if D % blocks:
        raise ValueError(f"blocks: {blocks} does not divide the {D} channels")
    F = D // blocks
    view = x.reshape(T, N, blocks, F)
    for n in range(N):
        L = int(lengths[n])
        for _ in range(freq_masks):
            w = int(rng.integers(0, min(freq_width, F) + 1))
            f0 = int(rng.integers(0, F - w + 1))
            view[:L, n, :, f0:f0 + w] = 0
        for _ in range(time_masks):
            w = int(rng.integers(0, min(time_width, L // 20) + 1))
            t0 = int(rng.integers(0, L - w + 1))
            x[t0:t0 + w, n] = 0
    return x


def _make_optimizer(cfg, params, place):
    if cfg.optimizer == "adam":
        return Adam(params, lr=cfg.lr, device=place)
    return SGD(params, lr=cfg.lr, momentum=cfg.momentum, device=place)


def _opt_state(opt):
    """(JSON-able state, host arrays): one format whatever the device."""
    host = opt.place.to_host
    if isinstance(opt, Adam):
        return {"t": opt.t}, {**{f"m/{k}": host(v) for k, v in opt.m.items()},
                               **{f"v/{k}": host(v) for k, v in opt.v.items()}}
    return {}, {f"velocity/{k}": host(v) for k, v in opt.velocity.items()}


def _load_opt_state(opt, meta, arrays):
    put = opt.place.asarray
    if isinstance(opt, Adam):
        opt.t = int(meta["t"])
        for k in opt.m:
            opt.m[k][...] = put(arrays[f"m/{k}"])
            opt.v[k][...] = put(arrays[f"v/{k}"])
    else:
        for k in opt.velocity:
            opt.velocity[k][...] = put(arrays[f"velocity/{k}"])


def evaluate(model, examples, batch_frames, dtype, comm=None):
    """Mean per-label CTC loss and greedy label error rate over examples.

    The loss leaves out the examples too short for their transcripts
    (:meth:`CTCModel.too_short`), whose loss is infinite; the error rate
    counts them (their hypotheses are decoded like the others).  With a
    communicator of several ranks (:mod:`ctcseq.mpi`) each rank evaluates
    every size-th batch and all get the totals."""
    if not examples:
        return float("nan"), float("nan")
    batches = make_batches([e.feats.shape[0] for e in examples], batch_frames,
                           np.random.default_rng(0))
    if comm is not None and comm.size > 1:
        batches = batches[comm.rank::comm.size]
    total_loss, total_labels, refs, hyps = 0.0, 0, [], []
    for idx in batches:
        batch = [examples[i] for i in idx]
        x, lengths, targets, tlens = pad_batch(batch, dtype)
        lp = model.log_probs(x, lengths)
        out_lengths = model.output_lengths(lengths)
        losses = ctc_loss(lp, targets, out_lengths, tlens, blank=model.blank,
                          reduction="none", zero_infinity=True)
        total_loss += float(np.sum(losses))   # zero for the infeasible ones
        total_labels += int(tlens[~model.too_short(lengths, targets, tlens)].sum())
        hyps += greedy_decode(lp, out_lengths, blank=model.blank)  # no second forward pass
        refs += [list(e.labels) for e in batch]
    if comm is not None and comm.size > 1:
        counts = [align(r, h)[1] for r, h in zip(refs, hyps)]
        totals = comm.allreduce_sum(np.array(
            [total_loss, total_labels, sum(c.errors for c in counts),
             sum(c.ref_len for c in counts)], np.float64))
        return (float(totals[0]) / max(int(totals[1]), 1),
                float(totals[2]) / totals[3] if totals[3] else float("nan"))
    return total_loss / max(total_labels, 1), error_rate(refs, hyps)


class _ShardRng:
    """Hands a rank its share of the dropout masks that one process would
    draw for the whole batch (``steps`` x ``n`` x ...), so that the ranks'
    masks together are that process's, whatever their number."""

    def __init__(self, rng, steps, n, lo):
        self.rng, self.steps, self.n, self.lo = rng, steps, n, lo

    def random(self, shape, dtype=np.float64):
        whole = self.rng.random((self.steps, self.n) + tuple(shape[2:]), dtype=dtype)
        return whole[:shape[0], self.lo:self.lo + shape[1]]


class Trainer:
    """Trains ``model`` on ``train`` examples, selecting on ``dev``.

    Parameters
    ----------
    model : CTCModel
        Trained in place.
    train, dev : list of Example
    out_dir : str
    cfg : TrainConfig
    progress : bool
        Show a progress line.
    comm : communicator of :mod:`ctcseq.mpi`, optional
        Data-parallel training on several processes (``mpiexec -n K``): every
        rank holds the whole model and data, computes the loss and gradient
        of its contiguous share of each batch (:func:`ctcseq.mpi.shard_bounds`),
        scaled by its share of the batch, and one ``Allreduce`` of one
        contiguous buffer (all gradients and the loss) sums them.  Every rank
        then takes the same (deterministic) update, so the weights stay
        identical without being sent.  SpecAugment masks and dropout masks
        are drawn for the whole batch on every rank and sliced, so K ranks
        make the updates of one process up to the order of float sums.  Rank
        0 alone writes the checkpoints, the log, ``best.npz`` and the
        progress line; the others write nothing.  Without it (or with one
        process) nothing of this runs.
    """

    def __init__(self, model: CTCModel, train, dev, out_dir, cfg: TrainConfig, progress=True,
                 comm=None):
        if not train:
            raise DataError("train: no training examples")
        self.model, self.train, self.dev, self.cfg = model, train, dev, cfg
        # utterances too short for their transcripts (see the module docstring)
        self.train_infeasible = _infeasible(model, train)
        self.dev_infeasible = _infeasible(model, dev or [])
        if self.train_infeasible.all():
            e = train[0]
            raise DataError(f"train: all {len(train)} training utterances are too short for "
                            f"their transcripts at stride {model.stride} (e.g. {e.utt}: "
                            f"{len(e.feats)} frames give "
                            f"{int(model.output_lengths(len(e.feats)))} steps, its "
                            f"{len(e.labels)} labels need {min_output_steps(e.labels)})")
        self.out_dir = out_dir
        self.comm = comm if comm is not None and comm.size > 1 else None
        self.is_root = self.comm is None or self.comm.is_root
        self.progress = progress and self.is_root
        if self.is_root:
            os.makedirs(out_dir, exist_ok=True)
        self.opt = _make_optimizer(cfg, model.params, model.place)
        # the weight average and its update count (n), checkpointed with the rest
        self.ema = {k: v.copy() for k, v in model.params.items()} if cfg.ema else None
        self.state = {"epoch": 0, "batch": 0, "best_dev_err": None, "best_dev_loss": None,
                      "best_epoch": None, "bad_epochs": 0, "history": [], "epoch_loss": 0.0,
                      "epoch_labels": 0, "epoch_seconds": 0.0, "done": False, "ema_updates": 0,
                      "epoch_skipped": 0}
        self.ckpt_path = os.path.join(out_dir, "checkpoint.npz")
        self._buf = None   # the gradients' Allreduce buffer, made on the first step

    # -- checkpoints -----------------------------------------------------------
    def save_checkpoint(self):
        if not self.is_root:
            return
        opt_meta, opt_arrays = _opt_state(self.opt)
        meta = {"format": "ctcseq.checkpoint", "format_version": 1,
                "model_config": self.model.config(), "train_config": dataclasses.asdict(self.cfg),
                "trainer": self.state, "optimizer": opt_meta}
        host = self.model.place.to_host   # checkpoints hold host arrays: any device resumes
        arrays = {f"param/{k}": v for k, v in self.model.host_params().items()}
        arrays.update({f"opt/{k}": v for k, v in opt_arrays.items()})
        if self.ema is not None:
            arrays.update({f"ema/{k}": host(v) for k, v in self.ema.items()})
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        with atomic_write(self.ckpt_path) as f:
            np.savez(f, **arrays)

    def resume(self):
        """Continue from ``checkpoint.npz`` in out_dir; returns False if none.

        The model and the training settings must be those of the checkpoint,
        except ``max_epochs`` and ``patience`` (a finished run can be
        extended: its next epochs are those an uninterrupted run with the new
        setting would have made).

        Raises
        ------
        ctcseq.errors.DataError
            The checkpoint is unreadable or not a training checkpoint.
        ctcseq.errors.UserError
            The model or the settings differ from the checkpoint's.
        """
        if not os.path.exists(self.ckpt_path):
            return False
        try:
            with np.load(self.ckpt_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        except Exception as e:
            raise DataError(f"{self.ckpt_path} is unreadable (truncated or corrupt?): {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != "ctcseq.checkpoint":
            raise DataError(f"{self.ckpt_path} is not a ctcseq training checkpoint")
        mine = self.model.config()["model"]
        if meta["model_config"]["model"] != mine:
            theirs = meta["model_config"]["model"]
            diff = {k: (theirs.get(k), mine.get(k)) for k in sorted(set(theirs) | set(mine))
                    if theirs.get(k) != mine.get(k)}
            raise UserError(f"{self.ckpt_path} was written for a different model: "
                            + "; ".join(f"{k} {a!r} there, {b!r} now"
                                        for k, (a, b) in diff.items()))
        # settings added since the checkpoint was written take their defaults
        saved = {**dataclasses.asdict(TrainConfig()), **meta["train_config"]}
        now = dataclasses.asdict(self.cfg)
        diff = [k for k in now if saved.get(k) != now[k]
                and k not in TrainConfig.RESUMABLE_CHANGES]
        if diff:
            raise UserError(f"{self.ckpt_path} was written with other training settings ("
                            + "; ".join(f"{k} {saved.get(k)!r} there, {now[k]!r} now"
                                        for k in diff)
                            + "); resume with the same settings (only "
                            + " and ".join(TrainConfig.RESUMABLE_CHANGES) + " may change)")
        put = self.model.place.asarray
        for k, p in self.model.params.items():
            p[...] = put(arrays[f"param/{k}"])
        _load_opt_state(self.opt, meta["optimizer"],
                        {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
        if self.ema is not None:
            for k, v in self.ema.items():
                v[...] = put(arrays[f"ema/{k}"])
        self.state = st = {"ema_updates": 0, "epoch_skipped": 0, **meta["trainer"]}
        if saved["patience"] != self.cfg.patience:   # an early stop may be lifted, or due
            st["done"] = bool(self.dev and self.cfg.patience
                              and st["bad_epochs"] >= self.cfg.patience)
        # a crash between the checkpoint and the log may have left the log behind
        self._write_log()
        return True

    # -- weight average ----------------------------------------------------------
    def _update_ema(self):
        n = self.state["ema_updates"]
        decay = min(self.cfg.ema, (1.0 + n) / (10.0 + n))
        for k, p in self.model.params.items():
            a = self.ema[k]
            a *= decay
            a += (1.0 - decay) * p
        self.state["ema_updates"] = n + 1

    def averaged_weights(self):
        """The model holds the averaged weights inside the block (no-op
        without ``ema``); the trained ones are put back after it."""
        return swapped_in(self.model.params, self.ema or {})

    # -- the loop --------------------------------------------------------------
    def _write_log(self):
        """train.jsonl from the history (one line per epoch), atomically."""
        if not self.is_root:
            return
        with atomic_write(os.path.join(self.out_dir, "train.jsonl"), "w",
                          encoding="utf-8") as f:
            f.writelines(json.dumps(_standard_json(r), allow_nan=False) + "\n"
                         for r in self.state["history"])

    def run(self, log=print):
        """Train until max_epochs or early stopping; returns the history."""
        cfg, st, model = self.cfg, self.state, self.model
        if not self.is_root:
            log = _quiet
        if self.comm is not None:
            # rank 0's weights (and weight average) for all: they start equal
            self.comm.bcast_arrays(model.params)
            if self.ema is not None:
                self.comm.bcast_arrays(self.ema)
        lengths = [e.feats.shape[0] for e in self.train]
        n_bad, n_dev_bad = int(self.train_infeasible.sum()), int(self.dev_infeasible.sum())
        if (n_bad or n_dev_bad) and not st["done"] and st["epoch"] < cfg.max_epochs:
            log(f"warning: {_infeasible_note(n_bad, self.train, self.train_infeasible)} "
                f"training and {_infeasible_note(n_dev_bad, self.dev, self.dev_infeasible)} "
                f"dev utterances are too short for their transcripts at stride "
                f"{model.stride}: they are left out of the losses (zero gradient)")
        while not st["done"] and st["epoch"] < cfg.max_epochs:
            epoch = st["epoch"]
            self.opt.lr = cfg.lr * cfg.lr_decay ** epoch
            batches = make_batches(lengths, cfg.batch_frames,
                                   np.random.default_rng([cfg.seed, epoch]))
            bar = Progress(len(batches), f"epoch {epoch + 1}", "batch", enabled=self.progress)
            bar.count = st["batch"]
            t_start = time.monotonic() - st["epoch_seconds"]
            frames = 0
            for b in range(st["batch"], len(batches)):
                batch = [self.train[i] for i in batches[b]]
                x, lens, targets, tlens = pad_batch(batch, model.dtype)
                # drawn per (seed, epoch, batch): a resumed run replays them exactly
                rng = np.random.default_rng([cfg.seed, epoch, b, 1])
                if cfg.freq_masks or cfg.time_masks:
                    mask_batch(x, lens, rng, cfg.freq_masks, cfg.freq_width, cfg.time_masks,
                               cfg.time_width, cfg.feature_blocks)
                if cfg.weight_noise > 0:
                    noise = WeightNoise(cfg.weight_noise, seed=[cfg.seed, epoch, b])
                    with noise.perturbed(model.params):
                        loss, grads = self._loss_and_grads(x, lens, targets, tlens, rng)
                else:
                    loss, grads = self._loss_and_grads(x, lens, targets, tlens, rng)
                norm = clip_grad_norm(grads, cfg.clip) if cfg.clip > 0 else 0.0
                if math.isfinite(loss) and math.isfinite(norm):
                    self.opt.step(grads)
                    if self.ema is not None:
                        self._update_ema()
                    # "mean" loss: per label, averaged over the sequences, the
                    # infeasible ones included as zeros; they are not counted
                    st["epoch_loss"] += loss * len(batch)
                    st["epoch_labels"] += len(batch) - int(
                        self.train_infeasible[batches[b]].sum())
                else:
                    st["epoch_skipped"] += 1
                st["batch"] = b + 1
                frames += int(lens.sum())
                elapsed = time.monotonic() - t_start
                st["epoch_seconds"] = elapsed
                bar.update(postfix=f"loss {st['epoch_loss'] / max(st['epoch_labels'], 1):.3f}, "
                                   f"{frames / max(elapsed, 1e-9):.0f} frames/s")
                if cfg.checkpoint_every and (b + 1) % cfg.checkpoint_every == 0 \
                        and b + 1 < len(batches):
                    self.save_checkpoint()
            bar.close()
            with self.averaged_weights():
                dev_loss, dev_err = evaluate(model, self.dev, cfg.batch_frames, model.dtype,
                                             self.comm)
            record = {"epoch": epoch + 1,
                      "train_loss": st["epoch_loss"] / max(st["epoch_labels"], 1),
                      "dev_loss": dev_loss, "dev_err": dev_err,
                      "seconds": round(st["epoch_seconds"], 2),
                      "skipped_updates": st["epoch_skipped"],
                      "train_infeasible": n_bad, "dev_infeasible": n_dev_bad}
            st["history"].append(record)
            # Without dev data every epoch counts as the best so far.  Equal
            # error rates are told apart by the dev loss, which keeps falling
            # while a young model still outputs only blanks (100% error).
            best_err, best_loss = st["best_dev_err"], st["best_dev_loss"]
            improved = (not self.dev or best_err is None or dev_err < best_err
                        or (dev_err == best_err and dev_loss < best_loss))
            if improved:
                st["best_dev_err"], st["best_epoch"], st["bad_epochs"] = dev_err, epoch + 1, 0
                st["best_dev_loss"] = dev_loss
                if self.is_root:
                    with self.averaged_weights():
                        model.save(os.path.join(self.out_dir, "best.npz"))
            else:
                st["bad_epochs"] += 1
            st.update(epoch=epoch + 1, batch=0, epoch_loss=0.0, epoch_labels=0, epoch_seconds=0.0,
                      epoch_skipped=0)
            if self.dev and cfg.patience and st["bad_epochs"] >= cfg.patience:
                st["done"] = True
            # the checkpoint first: the log describes only epochs it holds
            self.save_checkpoint()
            self._write_log()
            skipped = record["skipped_updates"]
            log(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, dev loss "
                f"{dev_loss:.4f}, dev error {100 * dev_err:.2f}%"
                f"{' (best)' if improved else ''}, {record['seconds']:.0f}s"
                + (f"; {skipped} of {len(batches)} updates skipped (non-finite loss or "
                   f"gradient)" if skipped else ""))
            if st["done"]:
                log(f"early stop: no better dev error for {cfg.patience} epochs "
                    f"(best {100 * st['best_dev_err']:.2f}% at epoch {st['best_epoch']})")
            if self.is_root:
                plot_curves(st["history"], os.path.join(self.out_dir, "curves.png"))
        return st["history"]

    def _loss_and_grads(self, x, lens, targets, tlens, rng):
        """The batch's mean loss and gradients: on this process, or summed
        over the ranks (see ``comm`` in the class docstring)."""
        cfg, model = self.cfg, self.model
        if self.comm is None:
            return model.loss_and_grads(x, lens, targets, tlens, zero_infinity=True,
                                        dropout=cfg.dropout, rng=rng)
        n = len(lens)
        lo, hi = shard_bounds(n, self.comm.size, self.comm.rank)
        names = sorted(model.grads)
        place = model.place
        # gradients on a GPU go to MPI as device memory when it is CUDA-aware
        # (CTCSEQ_MPI_CUDA_AWARE=1), else through the host
        on_device = place.is_cuda and self.comm.cuda_aware
        xp = place.xp if on_device else np
        if self._buf is None:
            # all gradients and the loss: one Allreduce per step
            self._buf = xp.empty(sum(model.grads[k].size for k in names) + 1, model.dtype)
        buf = self._buf
        if hi > lo:
            T = int(lens[lo:hi].max())
            loss, grads = model.loss_and_grads(
                np.ascontiguousarray(x[:T, lo:hi]), lens[lo:hi], targets[lo:hi], tlens[lo:hi],
                zero_infinity=True, dropout=cfg.dropout,
                rng=_ShardRng(rng, int(model.output_lengths(x.shape[0])), n, lo))
            off = 0
            for k in names:
                g = (grads[k] if on_device else place.to_host(grads[k])).ravel()
                buf[off:off + g.size] = g
                off += g.size
            # a mean over the share, weighted by the share: the sum over ranks
            # is the mean over the batch
            buf[:-1] *= model.dtype.type((hi - lo) / n)
            buf[-1] = loss * (hi - lo)
        else:
            buf[...] = 0
        if on_device and not place.sim:
            xp.cuda.get_current_stream().synchronize()   # MPI reads outside the stream
        self.comm.allreduce_sum(buf)
        off = 0
        for k in names:
            g = model.grads[k]
            part = buf[off:off + g.size].reshape(g.shape)
            g[...] = part if on_device else place.asarray(part)
            off += g.size
        return float(buf[-1]) / n, model.grads


def _quiet(*args, **kwargs):
    pass


def _infeasible(model, examples):
    """Boolean array: which examples are too short for their transcripts."""
    return np.array([min_output_steps(e.labels) > int(model.output_lengths(len(e.feats)))
                     for e in examples], bool)


def _infeasible_note(n, examples, mask):
    if not n:
        return "0"
    e = examples[int(np.argmax(mask))]
    return f"{n} (e.g. {e.utt}: {len(e.labels)} labels, {len(e.feats)} frames)"


def _standard_json(record):
    """record with non-finite floats (NaN: no dev data) as None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()}


def plot_curves(history, path):
    """Training loss and dev error per epoch, as a PNG (needs matplotlib;
    skipped with a note if it is not installed)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax1.plot(epochs, [h["dev_loss"] for h in history], "s-", label="dev loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("CTC loss per label")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [100 * h["dev_err"] for h in history], "^-", color="C3",
             label="dev error %")
    ax2.set_ylabel("dev error (%)")
    lines = ax1.get_lines() + ax2.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], loc="upper right")
    fig.tight_layout()
    try:
        with atomic_write(path, durable=False) as f:
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)
    return True
