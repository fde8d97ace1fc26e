r"""The training loop: data → statistics → model → Adam + EMA + schedule → checkpoints and metrics.

What ``nequip-np train config.yaml`` runs. The output folder holds:

* ``config.yaml``      — the resolved configuration (every "auto" replaced by its number);
* ``metrics.csv``      — one row per epoch: learning rate, train loss, and per validation set its
  loss, energy/force/stress MAE/RMSE and per-element force MAE/RMSE (columns ``val_*`` for the first
  set, ``val1_*``, ... for further ones);
* ``last.ckpt.npz``    — everything needed to resume bit-for-bit (parameters, Adam, EMA, scheduler,
  early stopping, epoch), written atomically at the end of every epoch;
* ``best.ckpt.npz``    — the checkpoint of the epoch with the lowest validation loss;
* ``model.npz``        — the final model with the EMA weights (``nequip_np.load_model``).

Shuffling uses a generator seeded by ``(training.seed, epoch)``, so a resumed run draws the same
batches as an uninterrupted one. Validation, the saved model and the test metrics use the EMA weights.
Data come from :func:`nequip_np.data.sources.build_datasets` (in memory, or streamed from a frame
store); statistics are computed in one streaming pass over the training set.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from nequip_np.data.dataset import iterate_batches
from nequip_np.data.sources import build_datasets
from nequip_np.data.stats import isolated_atom_shifts, streaming_statistics
from nequip_np.model.io import atomic_savez
from nequip_np.model.nequip import NequIPModel
from nequip_np.train import finetune
from nequip_np.train.config import config_to_dict, dump_config, load_config, resolve_defaults
from nequip_np.train.data_parallel import data_parallel_from_environment
from nequip_np.train.ema import EMA
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from nequip_np.train.metrics import MetricAccumulator
from nequip_np.train.optim import Adam, clip_grad_norm
from nequip_np.train.schedule import EarlyStopping, ReduceLROnPlateau, build_lr_scheduler, lr_below

CKPT_VERSION = 1
METRIC_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "val_loss",
    "val_energy_mae",
    "val_energy_rmse",
    "val_per_atom_energy_mae",
    "val_forces_mae",
    "val_forces_rmse",
]
#: per validation set ``p`` (``val``, ``val1``, ...): p_<metric> columns, then per element
_SET_METRICS = [
    "loss",
    "energy_mae",
    "energy_rmse",
    "per_atom_energy_mae",
    "forces_mae",
    "forces_rmse",
    "per_atom_energy_rmse",
    "stress_mae",
    "stress_rmse",
]


def metric_columns(val_names, type_names) -> list[str]:
    """metrics.csv header: the historical columns first, then stress, per-element and further sets."""
    cols = list(METRIC_COLUMNS)
    for p in val_names or ["val"]:
        for m in _SET_METRICS + [f"forces_{k}_{t}" for t in type_names for k in ("mae", "rmse")]:
            if f"{p}_{m}" not in cols:
                cols.append(f"{p}_{m}")
    return cols


def _loss_coefficients(t, type_names) -> LossCoefficients:
    """training.loss_coeffs / loss / huber_delta / per_type_forces_coeffs → LossCoefficients."""
    c = {k: float(v) for k, v in t.loss_coeffs.items()}
    ptf = t.per_type_forces_coeffs
    if ptf is not None:
        missing = [n for n in type_names if n not in ptf]
        extra = [n for n in ptf if n not in type_names]
        if missing or extra:
            raise ValueError(
                f"training.per_type_forces_coeffs needs a positive coefficient for every type "
                f"{list(type_names)}; missing {missing}, unknown {extra}"
            )
        ptf = tuple(float(ptf[n]) for n in type_names)
    return LossCoefficients(
        per_atom_energy=c.get("per_atom_energy", 0.0),
        forces=c.get("forces", 0.0),
        stress=c.get("stress", 0.0),
        total_energy=c.get("total_energy", 0.0),
        loss=t.loss,
        huber_delta=t.huber_delta,
        per_type_forces=ptf,
    )


class Trainer:
    """Train a NequIP model from a configuration (a YAML path, a dict or a ``Config``)."""

    def __init__(self, config, output_dir=None, progress: bool = True):
        config, self.finetune = finetune.prepare(config)  # model.initial_model: architecture from the file
        cfg = load_config(config)
        self.progress = progress
        d, t = cfg.data, cfg.training
        c = t.loss_coeffs
        require = tuple(
            k
            for k, w in (
                ("energy", c.get("per_atom_energy", 0) + c.get("total_energy", 0)),
                ("forces", c.get("forces", 0)),
                ("stress", 0),
            )
            if w > 0
        )
        data = build_datasets(d, cfg.model.type_names, cfg.model.r_max, cfg.model.per_edge_type_cutoff, require)
        type_names = data.type_names
        self.coeffs = _loss_coefficients(t, type_names)
        self.train_set, self.val_sets, self.test_sets = data.train, data.val, data.test
        self.val_set = self.val_sets[0][1] if self.val_sets else self.train_set.subset([])
        self.test_set = self.test_sets[0][1] if self.test_sets else self.train_set.subset([])
        stats = streaming_statistics(self.train_set, type_names)
        stats["type_names"] = list(type_names)
        if cfg.model.per_type_energy_shifts == "least_squares":
            cfg.model.per_type_energy_shifts = stats["per_type_energy_shifts"]
        if d.isolated_atom_energies is not None and cfg.model.per_type_energy_shifts == "isolated_atom_energies":
            cfg.model.per_type_energy_shifts = isolated_atom_shifts(d.isolated_atom_energies, type_names)
        self.config = resolve_defaults(cfg, stats)
        if output_dir is not None:
            self.config.training.output_dir = str(output_dir)
        self.stats = stats
        self.out = Path(self.config.training.output_dir)
        self.columns = metric_columns([n for n, _ in self.val_sets], type_names)
        self.model = self._build_model()
        t = self.config.training
        self.optimizer = Adam(self.model.params, lr=t.learning_rate, amsgrad=t.amsgrad, weight_decay=t.weight_decay)
        self.ema = EMA(self.model.params, decay=t.ema_decay) if t.ema_decay is not None else None
        sch = t.scheduler
        self.scheduler = (
            None
            if sch is None
            else ReduceLROnPlateau(
                self.optimizer,
                factor=sch.factor,
                patience=sch.patience,
                threshold=sch.threshold,
                threshold_mode=sch.threshold_mode,
                cooldown=sch.cooldown,
                min_lr=sch.min_lr,
            )
        )
        self.lr_scheduler = None if t.lr_scheduler is None else build_lr_scheduler(t.lr_scheduler, self.optimizer)
        es = t.early_stopping
        self.early = None if es is None else EarlyStopping(patience=es.patience, min_delta=es.min_delta)
        self.epoch = 0
        self.best_val = np.inf
        # several MPI ranks (mpirun): sharded, summed gradients; only rank 0 writes (docs/lammps_mpi.md)
        self.parallel = data_parallel_from_environment()
        if self.parallel is not None and not self.coeffs.is_plain():
            raise ValueError(
                "data-parallel training (several MPI ranks) supports the per-atom-energy, forces and "
                "stress MSE loss only; run on one rank for total_energy, huber/mae or "
                "per_type_forces_coeffs"
            )
        self.writes = self.parallel is None or self.parallel.writes
        self.progress = self.progress and self.writes

    def _build_model(self) -> NequIPModel:
        m, t = config_to_dict(self.config)["model"], self.config.training
        if t.dtype != "float64":
            m["model_dtype"] = t.dtype
        if self.finetune is not None:  # initial weights from model.initial_model (train/finetune.py)
            model = finetune.build(self.finetune, m, t.backend, self.train_set, self.stats)
            for key in finetune.PER_TYPE + ("avg_num_neighbors", "type_names"):
                setattr(self.config.model, key, getattr(model.config, key))
            return model
        m.pop("initial_model", None)
        return NequIPModel(backend=t.backend, **m)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, dataset, params=None) -> dict:
        """Loss and metrics of ``dataset`` (EMA weights unless ``params`` is given)."""
        params = params if params is not None else (self.ema.params if self.ema else self.model.params)
        acc = MetricAccumulator(type_names=self.config.model.type_names)
        for batch in iterate_batches(dataset, self.config.training.val_batch_size):
            out = self.model.compute(batch, params=params)
            acc.add(batch, out, self.coeffs)
        return acc.result()

    # ------------------------------------------------------------------ training
    def train(self) -> dict:
        t = self.config.training
        if self.writes:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(self.config, self.out / "config.yaml")
        bar = _progress(range(self.epoch, t.max_epochs), self.progress, initial=self.epoch, total=t.max_epochs)
        for epoch in bar:
            lr = self.optimizer.lr  # the rate this epoch trained with (step schedules: at its start)
            train_loss = self._train_epoch(epoch)
            vals = {name: self.evaluate(ds) for name, ds in self.val_sets if len(ds)}
            val = next(iter(vals.values())) if vals else {"loss": train_loss}
            self.epoch = epoch + 1
            stop = self._after_epoch(val["loss"])
            if self.writes:
                self._save_checkpoint(self.out / "last.ckpt.npz")
                self._log(epoch, lr, train_loss, vals)
            if val["loss"] < self.best_val:
                self.best_val = val["loss"]
                if self.writes:
                    self._save_checkpoint(self.out / "best.ckpt.npz")
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(train=f"{train_loss:.3g}", val=f"{val['loss']:.3g}", lr=f"{self.optimizer.lr:.2g}")
            if stop:
                break
        final = self.ema.params if self.ema else self.model.params
        self.model.load_params(final)
        if self.writes:
            self.model.save(self.out / "model.npz")
        result = {"epochs": self.epoch, "best_val_loss": self.best_val}
        tests = {name: self.evaluate(ds, params=final) for name, ds in self.test_sets if len(ds)}
        if tests:
            result["test"] = next(iter(tests.values()))
            if len(tests) > 1:
                result["tests"] = tests
            if self.writes:
                with open(self.out / "test_metrics.json", "w") as fh:
                    json.dump(result["test"] if len(tests) == 1 else tests, fh, indent=2)
        return result

    def _train_epoch(self, epoch: int) -> float:
        t = self.config.training
        rng = np.random.default_rng([t.seed, epoch])
        losses = []
        for batch in iterate_batches(self.train_set, t.batch_size, shuffle=True, rng=rng):
            if self.parallel is not None:  # every rank draws the same batch and computes one shard of it
                loss, _, grads, _ = self.parallel.loss_and_grad(self.model, batch, self.coeffs, loss_and_grad)
            else:
                loss, _, grads, _ = loss_and_grad(self.model, batch, self.coeffs)
            if not np.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: the training loss is {loss}; lower the learning rate")
            if t.grad_clip is not None:
                clip_grad_norm(grads, t.grad_clip)
            self.optimizer.step(grads)
            if self.ema is not None:
                self.ema.update(self.model.params)
            if self.lr_scheduler is not None and t.lr_scheduler_interval == "step":
                self.lr_scheduler.step()
            losses.append(loss)
        return float(np.mean(losses))

    def _after_epoch(self, val_loss: float) -> bool:
        t = self.config.training
        if self.scheduler is not None:
            self.scheduler.step(val_loss)
        if self.lr_scheduler is not None and t.lr_scheduler_interval == "epoch":
            self.lr_scheduler.step()
        stop = self.early.step(val_loss) if self.early is not None else False
        return bool(stop or (t.stop_below_lr is not None and lr_below(self.optimizer, t.stop_below_lr)))

    def _log(self, epoch, lr, train_loss, vals) -> None:
        path = self.out / "metrics.csv"
        new = not path.exists()
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss}
        for name, m in vals.items():
            row.update({f"{name}_{k}": v for k, v in m.items()})
        with open(path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(self.columns)
            w.writerow([row.get(k) for k in self.columns])

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {
            "epoch": self.epoch,
            "best_val": self.best_val,
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler else None,
            "early": self.early.state_dict() if self.early else None,
        }

    def _save_checkpoint(self, path) -> None:
        arrays = {}
        meta = _flatten(self._state(), arrays)
        arrays.update({f"param/{k}": v for k, v in self.model.params.items()})
        atomic_savez(
            path,
            ckpt_version=np.array(CKPT_VERSION),
            state=np.array(json.dumps(meta)),
            config=np.array(json.dumps(config_to_dict(self.config))),
            **arrays,
        )

    def load_checkpoint(self, path) -> None:
        """Restore everything written by ``_save_checkpoint`` (for ``--resume``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {str(path)!r} to resume from")
        with np.load(path, allow_pickle=False) as data:
            if int(data["ckpt_version"]) > CKPT_VERSION:
                raise ValueError(
                    f"{str(path)!r} has checkpoint version {int(data['ckpt_version'])}, "
                    f"newer than {CKPT_VERSION}; upgrade nequip-np"
                )
            arrays = {k: data[k] for k in data.files}
        state = _unflatten(json.loads(str(arrays["state"])), arrays)
        self.model.load_params({k[6:]: v for k, v in arrays.items() if k.startswith("param/")})
        self.optimizer.params = self.model.params
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.lr_scheduler:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.early:
            self.early.load_state_dict(state["early"])
        self.epoch, self.best_val = int(state["epoch"]), float(state["best_val"])
        _truncate_metrics(self.out / "metrics.csv", self.epoch)


def _truncate_metrics(path, n_epochs: int) -> None:
    """Drop metric rows of epochs that a resumed run will redo (written after the last checkpoint)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) < n_epochs]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)


def _flatten(obj, arrays, prefix="s"):
    """JSON-able skeleton of nested dicts; numpy arrays are moved into ``arrays`` by key."""
    if isinstance(obj, dict):
        return {k: _flatten(v, arrays, f"{prefix}/{k}") for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, arrays, f"{prefix}/{i}") for i, v in enumerate(obj)]
    return obj


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _progress(iterable, enabled, **kw):
    if not enabled or os.environ.get("NEQUIP_NP_NO_PROGRESS"):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc="epochs", unit="epoch", **kw)
