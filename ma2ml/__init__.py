"""ma2ml: Kubernetes-native AutoML with multi-agent reinforcement learning (MA2ML).

Layout (DESIGN.md section 7): ``spec`` models the PipelineSearch resource,
``spaces`` the search spaces, ``store`` the replay buffer and trial queue,
``learner`` the MA2ML algorithm, ``worker`` the worker process, ``trainer`` the
built-in trainer, ``operator`` the kopf operator, ``local`` the one-machine
runner and ``cli`` the command.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ``ma2ml.report`` for custom trainers, loaded on first use so that
    # ``import ma2ml`` stays light (no torch, no SQLAlchemy).
    if name == "report":
        from ma2ml.worker.custom import report

        return report
    raise AttributeError(f"module 'ma2ml' has no attribute {name!r}")
