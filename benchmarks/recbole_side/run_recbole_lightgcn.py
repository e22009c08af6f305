"""RecBole side of ``benchmarks/recsys_vs_recbole.py``: train RecBole 1.2.1's LightGCN on ml-100k.

Run it with the interpreter of the venv made by ``setup_venv.sh`` (RecBole 1.2.1 needs
numpy<1.24); it deliberately does not import polymodal. It trains for a fixed number of
epochs (no early stopping), times the training part of every epoch separately from the
validation pass, evaluates the test split and writes one JSON file::

    .bench/recbole-venv/bin/python benchmarks/recbole_side/run_recbole_lightgcn.py \
        --data-dir DIR --epochs 40 --out recbole.json

``DIR`` must contain ``ml-100k/ml-100k.inter`` (RecBole atomic format; the recbole wheel
ships it under ``recbole/dataset_example/ml-100k/``). RecBole's log, tensorboard and
checkpoint folders go to a temporary working directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

DATASET = "ml-100k"
MODEL = "LightGCN"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="folder holding ml-100k/ml-100k.inter")
    parser.add_argument("--epochs", required=True, type=int, help="fixed number of training epochs")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--embedding-size", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--reg-weight", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--keep-workdir", action="store_true", help="keep RecBole's log/checkpoint folder")
    return parser.parse_args(argv)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def patch_torch_load(checkpoint_dir: Path) -> None:
    """Let RecBole reload its own checkpoints under torch>=2.6.

    RecBole 1.2.1 pickles its Config object into every checkpoint and reloads it in
    ``Trainer.evaluate(load_best_model=True)`` with a plain ``torch.load``. Since torch 2.6
    ``torch.load`` defaults to ``weights_only=True``, which refuses that pickle. Files inside
    our own temporary checkpoint folder (written by RecBole in this very process) are loaded
    with ``weights_only=False``; every other call keeps torch's default.
    """
    original_load = torch.load
    root = checkpoint_dir.resolve()

    def load(f, *args, **kwargs):
        if isinstance(f, str | os.PathLike) and Path(f).resolve().is_relative_to(root):
            kwargs.setdefault("weights_only", False)
        return original_load(f, *args, **kwargs)

    torch.load = load


def recbole_config_dict(args: argparse.Namespace, data_dir: Path, checkpoint_dir: Path) -> dict:
    return {
        # environment
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "state": args.log_level.upper(),
        "data_path": str(data_dir),
        "checkpoint_dir": str(checkpoint_dir),
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "worker": 0,
        # data: every rating is an interaction (no rating threshold / value filter)
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "val_interval": None,
        "threshold": None,
        "rm_dup_inter": None,
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        # model
        "embedding_size": args.embedding_size,
        "n_layers": args.n_layers,
        "reg_weight": args.reg_weight,
        # training: fixed epoch count, early stopping disabled
        "epochs": args.epochs,
        "train_batch_size": args.batch_size,
        "learner": "adam",
        "learning_rate": args.lr,
        "weight_decay": 0.0,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        "eval_step": 1,
        "stopping_step": args.epochs + 1,
        # evaluation
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG", "Hit", "MRR", "Precision"],
        "topk": [10, 20, 50],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 6,
    }


def to_floats(result) -> dict[str, float]:
    return {key: float(value) for key, value in (result or {}).items()}


def run(args: argparse.Namespace, workdir: Path) -> dict:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    data_dir = args.data_dir.resolve()
    inter_file = data_dir / DATASET / f"{DATASET}.inter"
    if not inter_file.is_file():
        raise SystemExit(f"missing {inter_file}")

    checkpoint_dir = workdir / "saved"
    patch_torch_load(checkpoint_dir)
    # RecBole writes ./log and ./log_tensorboard relative to the working directory.
    os.chdir(workdir)

    load_start = list(os.getloadavg())
    t_start = time.perf_counter()
    # RecBole's Config also parses ``--key=value`` pairs from sys.argv; hide our own CLI from it.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        config = Config(
            model=MODEL, dataset=DATASET, config_dict=recbole_config_dict(args, data_dir, checkpoint_dir)
        )
    finally:
        sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_data = time.perf_counter()
    rss_after_data = peak_rss_mb()

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset).to(config["device"])

    base_trainer = get_trainer(config["MODEL_TYPE"], config["model"])

    class TimedTrainer(base_trainer):
        """RecBole's trainer, timing the training and validation parts of each epoch separately."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.epoch_train_seconds: list[float] = []
            self.epoch_train_cpu_seconds: list[float] = []
            self.epoch_valid_seconds: list[float] = []
            self.valid_scores: list[float] = []

        def _train_epoch(self, *a, **kw):
            start, cpu_start = time.perf_counter(), time.process_time()
            loss = super()._train_epoch(*a, **kw)
            self.epoch_train_seconds.append(time.perf_counter() - start)
            self.epoch_train_cpu_seconds.append(time.process_time() - cpu_start)
            return loss

        def _valid_epoch(self, *a, **kw):
            start = time.perf_counter()
            score, result = super()._valid_epoch(*a, **kw)
            self.epoch_valid_seconds.append(time.perf_counter() - start)
            self.valid_scores.append(float(score))
            return score, result

    trainer = TimedTrainer(config, model)
    t_fit = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    t_fit_end = time.perf_counter()
    rss_after_fit = peak_rss_mb()

    # The model in memory is the final-epoch model: evaluate it first, then reload the best-valid one.
    test_final = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    test_best = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    t_end = time.perf_counter()

    train_ds = train_data.dataset
    epoch_train = trainer.epoch_train_seconds
    valid_scores = trainer.valid_scores
    # RecBole keeps a new best only on a strict improvement, i.e. the first maximum.
    best_epoch = int(np.argmax(valid_scores)) if valid_scores else None

    return {
        "tool": "recbole",
        "version": _recbole_version(),
        "model": MODEL,
        "dataset": DATASET,
        "epochs": args.epochs,
        "epochs_run": len(epoch_train),
        "epoch_train_seconds": epoch_train,
        "mean_epoch_seconds": float(np.mean(epoch_train)) if epoch_train else float("nan"),
        "mean_epoch_seconds_excl_first": float(np.mean(epoch_train[1:])) if len(epoch_train) > 1 else None,
        "median_epoch_seconds": float(np.median(epoch_train)) if epoch_train else float("nan"),
        # CPU time of this process per training epoch (all threads); a wall/CPU ratio far above
        # 1/threads means other processes competed for the cores during that epoch.
        "epoch_train_cpu_seconds": trainer.epoch_train_cpu_seconds,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "epoch_valid_seconds": trainer.epoch_valid_seconds,
        "train_loss": [float(trainer.train_loss_dict[i]) for i in sorted(trainer.train_loss_dict)],
        "fit_seconds": t_fit_end - t_fit,
        "data_prep_seconds": t_data - t_start,
        "total_seconds": t_end - t_start,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_mb_after_data": rss_after_data,
        "peak_rss_mb_after_fit": rss_after_fit,
        "test_model": "best_valid",
        "test": to_floats(test_best),
        "test_final_model": to_floats(test_final),
        "best_valid_score": float(best_valid_score),
        "best_valid_epoch": best_epoch,
        "valid_ndcg@10_per_epoch": valid_scores,
        "best_valid": to_floats(best_valid_result),
        "n_users": int(dataset.user_num - 1),  # RecBole reserves id 0 for padding
        "n_items": int(dataset.item_num - 1),
        "n_interactions": int(dataset.inter_num),
        "n_train_interactions": int(train_ds.inter_num),
        "n_valid_interactions": int(valid_data.dataset.inter_num),
        "n_test_interactions": int(test_data.dataset.inter_num),
        "settings": {
            "batch_size": args.batch_size,
            "lr": args.lr,
            "embedding_size": args.embedding_size,
            "n_layers": args.n_layers,
            "reg_weight": args.reg_weight,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "device": str(config["device"]),
            "optimizer": "adam",
            "loss": "BPR + reg_weight * EmbLoss (L2 of batch ego embeddings)",
            "neg_sampling": "uniform, 1 per positive (excludes the user's training items)",
            "split": "RS [0.8, 0.1, 0.1] per user, random order; valid/test sizes floored",
            "eval_mode": "full ranking, training items masked",
            "valid_metric": "ndcg@10",
            "early_stopping": False,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def _recbole_version() -> str:
    import recbole

    return recbole.__version__


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # RecBole 1.2.1 trips deprecation warnings of newer torch/pandas (torch.sparse.FloatTensor,
    # torch.cuda.amp.GradScaler, chained inplace fillna); they do not affect the results.
    warnings.filterwarnings("ignore", module=r"recbole\.")
    out = args.out.resolve()
    cwd = Path.cwd()
    workdir = Path(tempfile.mkdtemp(prefix="recbole-lightgcn-"))
    try:
        result = run(args, workdir)
    finally:
        os.chdir(cwd)
        if args.keep_workdir:
            print(f"RecBole work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    test = result["test"]
    print(
        f"recbole {result['version']} {MODEL}: {result['epochs_run']} epochs, "
        f"mean train epoch {result['mean_epoch_seconds']:.3f}s (median {result['median_epoch_seconds']:.3f}s), "
        f"peak RSS {result['peak_rss_mb']:.0f} MB, "
        f"test recall@20 {test.get('recall@20', float('nan')):.4f} ndcg@20 {test.get('ndcg@20', float('nan')):.4f} "
        f"-> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
