"""The worker: turns a trial's pipeline into a trained model and a reward.

``data`` (datasets, split, cached per process), ``augment`` (batched
AutoAugment-style policies), ``model`` (MBConv builder, FLOPs), ``recipe``
(optimizer and schedule), ``train`` (``run_trial``, the built-in trainer),
``reward``, ``result`` (``TrialResult``), ``errors`` (``TrialError``,
``TrialInterrupted``), ``custom`` (user commands and ``ma2ml.report``),
``spool`` and ``loop`` (``run_worker``: claim, heartbeat, train, report),
``preview`` and ``cli`` (command bodies). Import the submodules directly;
this package stays light so that ``ma2ml.report`` loads no torch.
"""
