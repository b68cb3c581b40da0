"""The built-in trainer: a trial's pipeline in, a trained model and a reward out.

``data`` (datasets, split, cached per process), ``augment`` (batched
AutoAugment-style policies), ``model`` (MBConv builder, FLOPs), ``recipe``
(optimizer and schedule), ``train`` (``run_trial``), ``retrain`` (the chosen
pipeline on the whole training set, for ``ma2ml export``), ``preview`` and ``cli``
(``ma2ml augment-preview``). What any trainer hands the worker, the built-in one
or a custom command, is here too and imports no torch: ``result``
(``TrialResult``), ``reward`` and ``errors`` (``TrialError``, ``TrialInterrupted``).
The worker process (``ma2ml.worker``) imports ``train`` only when a search uses
the built-in trainer. Import the submodules directly; this package stays light.
"""
