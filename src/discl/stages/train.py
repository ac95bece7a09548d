"""Stage `train`: the task model for each method (baselines and DisCL curricula), resumable; each method
trains as training/methods.py says. A model records digests of what it trained on (model_cache.input_digests):
when the kept synthetic images, the hard set or the real rows change, the methods that read them retrain."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..config import RunConfig
from ..rundir import RunDir
from ..swap import recover, replace_folder
from ..training import ddp
from ..training.callbacks import Callback
from ..training.loggers import check_installed
from ..training.methods import load_inputs, train_method


def run_train(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True, callbacks: Sequence[Callback] = ()) -> pd.DataFrame:
    """Every method trains into its staging folder (train/.<method>.next/, where an interrupted run resumes);
    only when all have finished do they replace the models in use, so a failure leaves every method's model
    as it was, consistent with the config.yaml the session puts back."""
    t = cfg.train
    check_installed(t.loggers)  # before any work
    inputs = load_inputs(run, cfg, t.methods, echo)
    logs = []
    for method in t.methods:
        if ddp.is_main():  # one process puts a crashed swap's folder back; the others wait for it
            recover(run.method_dir(method))
        ddp.barrier()
        log, _ = train_method(run, cfg, method, inputs, run.method_staging(method), echo, progress, callbacks=callbacks,
                              current=run.method_dir(method))
        logs.append(pd.DataFrame(log))
        echo(f"train {method}: {len(log)} epochs, final val accuracy {100 * log[-1]['val_acc']:.2f}%")
    if ddp.is_main():
        for method in t.methods:
            replace_folder(run.method_staging(method), run.method_dir(method))
    return pd.concat(logs, ignore_index=True)


def run_train_from_env(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True,
                       callbacks: Sequence[Callback] = ()) -> pd.DataFrame:
    """run_train in this process, or as one rank under torchrun: this process's device (cuda:LOCAL_RANK),
    then the process group (NCCL on GPUs, gloo on CPU); only rank 0 echoes."""
    from ..training.device import resolve_device

    ddp.init_from_env(resolve_device(cfg.train.device, "train.device"))
    try:
        ddp.check_batch(cfg.train.classifier.batch_size, "train.classifier.batch_size")
        return run_train(run, cfg, echo if ddp.is_main() else (lambda *_: None), progress, callbacks)
    finally:
        ddp.shutdown()
