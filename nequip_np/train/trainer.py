r"""The training loop: data → statistics → model → Adam + EMA + schedule → checkpoints and metrics.

What ``nequip-np train config.yaml`` runs. The output folder holds:

* ``config.yaml``      — the resolved configuration (every "auto" replaced by its number);
* ``metrics.csv``      — one row per epoch: train/val loss, energy and force MAE/RMSE, learning rate;
* ``last.ckpt.npz``    — everything needed to resume bit-for-bit (parameters, Adam, EMA, scheduler,
  early stopping, epoch), written atomically at the end of every epoch;
* ``best.ckpt.npz``    — the checkpoint of the epoch with the lowest validation loss;
* ``model.npz``        — the final model with the EMA weights (``nequip_np.load_model``).

Shuffling uses a generator seeded by ``(training.seed, epoch)``, so a resumed run draws the same
batches as an uninterrupted one. Validation, the saved model and the test metrics use the EMA weights.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from nequip_np.data.dataset import GraphDataset, iterate_batches, read_frames, split_indices
from nequip_np.data.stats import compute_statistics, isolated_atom_shifts
from nequip_np.model.io import atomic_savez
from nequip_np.model.nequip import NequIPModel
from nequip_np.train import finetune
from nequip_np.train.config import config_to_dict, dump_config, load_config, resolve_defaults
from nequip_np.train.data_parallel import data_parallel_from_environment
from nequip_np.train.ema import EMA
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from nequip_np.train.metrics import MetricAccumulator
from nequip_np.train.optim import Adam, clip_grad_norm
from nequip_np.train.schedule import EarlyStopping, ReduceLROnPlateau, lr_below

CKPT_VERSION = 1
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_energy_mae", "val_energy_rmse",
                  "val_per_atom_energy_mae", "val_forces_mae", "val_forces_rmse"]


def _type_names_from_frames(frames) -> list[str]:
    from ase.data import atomic_numbers

    return sorted({s for a in frames for s in a.get_chemical_symbols()}, key=lambda s: atomic_numbers[s])


class Trainer:
    """Train a NequIP model from a configuration (a YAML path, a dict or a ``Config``)."""

    def __init__(self, config, output_dir=None, progress: bool = True):
        config, self.finetune = finetune.prepare(config)  # model.initial_model: architecture from the file
        cfg = load_config(config)
        self.progress = progress
        d, t = cfg.data, cfg.training
        self.coeffs = LossCoefficients(**_coeffs(t.loss_coeffs))
        require = tuple(k for k, c in (("energy", self.coeffs.per_atom_energy), ("forces", self.coeffs.forces),
                                       ("stress", self.coeffs.stress)) if c > 0)
        frames = read_frames(d.path, format=d.format, units=d.units, require=require)
        type_names = cfg.model.type_names
        if type_names == "auto":
            type_names = _type_names_from_frames(frames)
        else:
            unknown = sorted({s for a in frames for s in a.get_chemical_symbols()} - set(type_names))
            if unknown:
                raise ValueError(f"{d.path}: species {unknown} are not in model.type_names {list(type_names)}")
        idx_train, idx_val, idx_test = split_indices(len(frames), d.train, d.val, d.test, seed=d.split_seed)
        r_max = cfg.model.r_max
        data = GraphDataset(frames, type_names, r_max, cfg.model.per_edge_type_cutoff)
        self.train_set, self.val_set, self.test_set = (data.subset(i) for i in (idx_train, idx_val, idx_test))
        if len(self.train_set) == 0:
            raise ValueError("the training split is empty; check data.train")
        stats = compute_statistics(self.train_set.graphs, type_names)
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
        self.model = self._build_model()
        t = self.config.training
        self.optimizer = Adam(self.model.params, lr=t.learning_rate, amsgrad=t.amsgrad, weight_decay=t.weight_decay)
        self.ema = EMA(self.model.params, decay=t.ema_decay) if t.ema_decay is not None else None
        sch = t.scheduler
        self.scheduler = None if sch is None else ReduceLROnPlateau(
            self.optimizer, factor=sch.factor, patience=sch.patience, threshold=sch.threshold,
            threshold_mode=sch.threshold_mode, cooldown=sch.cooldown, min_lr=sch.min_lr)
        es = t.early_stopping
        self.early = None if es is None else EarlyStopping(patience=es.patience, min_delta=es.min_delta)
        self.epoch = 0
        self.best_val = np.inf
        # several MPI ranks (mpirun): sharded, summed gradients; only rank 0 writes (docs/lammps_mpi.md)
        self.parallel = data_parallel_from_environment()
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
        acc = MetricAccumulator()
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
            train_loss = self._train_epoch(epoch)
            val = self.evaluate(self.val_set) if len(self.val_set) else {"loss": train_loss}
            self.epoch = epoch + 1
            stop = self._after_epoch(val["loss"])
            if self.writes:
                self._save_checkpoint(self.out / "last.ckpt.npz")
                self._log(epoch, train_loss, val)
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
        if len(self.test_set):
            result["test"] = self.evaluate(self.test_set, params=final)
            if self.writes:
                with open(self.out / "test_metrics.json", "w") as fh:
                    json.dump(result["test"], fh, indent=2)
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
            losses.append(loss)
        return float(np.mean(losses))

    def _after_epoch(self, val_loss: float) -> bool:
        t = self.config.training
        if self.scheduler is not None:
            self.scheduler.step(val_loss)
        stop = self.early.step(val_loss) if self.early is not None else False
        return bool(stop or (t.stop_below_lr is not None and lr_below(self.optimizer, t.stop_below_lr)))

    def _log(self, epoch, train_loss, val) -> None:
        path = self.out / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(METRIC_COLUMNS)
            w.writerow([epoch, self.optimizer.lr, train_loss, val.get("loss")] +
                       [val.get(k[4:]) for k in METRIC_COLUMNS[4:]])

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {"epoch": self.epoch, "best_val": self.best_val, "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "early": self.early.state_dict() if self.early else None}

    def _save_checkpoint(self, path) -> None:
        arrays = {}
        meta = _flatten(self._state(), arrays)
        arrays.update({f"param/{k}": v for k, v in self.model.params.items()})
        atomic_savez(path, ckpt_version=np.array(CKPT_VERSION), state=np.array(json.dumps(meta)),
                     config=np.array(json.dumps(config_to_dict(self.config))), **arrays)

    def load_checkpoint(self, path) -> None:
        """Restore everything written by ``_save_checkpoint`` (for ``--resume``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {str(path)!r} to resume from")
        with np.load(path, allow_pickle=False) as data:
            if int(data["ckpt_version"]) > CKPT_VERSION:
                raise ValueError(f"{str(path)!r} has checkpoint version {int(data['ckpt_version'])}, "
                                 f"newer than {CKPT_VERSION}; upgrade nequip-np")
            arrays = {k: data[k] for k in data.files}
        state = _unflatten(json.loads(str(arrays["state"])), arrays)
        self.model.load_params({k[6:]: v for k, v in arrays.items() if k.startswith("param/")})
        self.optimizer.params = self.model.params
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
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


def _coeffs(raw: dict) -> dict:
    names = {"per_atom_energy": "per_atom_energy", "total_energy": "per_atom_energy", "forces": "forces",
             "stress": "stress"}
    out = {"per_atom_energy": 0.0, "forces": 0.0, "stress": 0.0}
    for k, v in raw.items():
        out[names[k]] += float(v)
    return out


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
