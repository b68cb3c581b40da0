"""The worker process: claim a trial, heartbeat its lease, run a trainer, report, repeat.

``loop`` (``run_worker``), ``lease`` (the heartbeat), ``prefetch`` (claiming the
next trial while one trains), ``spool`` (reports the store has not accepted yet),
``places`` (checkpoint and spool folders), ``outcome``, ``errors``
(``StoreFault``), ``custom`` (a user's command as the trainer, and
``ma2ml.report``), ``untrusted`` and ``parent_death`` (what a custom command can
do to its worker), ``cli`` (the command body). The built-in trainer is
``ma2ml.trainer``, imported only when a search uses it. Import the submodules
directly; this package stays light so that ``ma2ml.report`` loads no torch.
"""
