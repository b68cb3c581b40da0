"""ma2ml: Kubernetes-native AutoML with multi-agent reinforcement learning (MA2ML).

Layout (DESIGN.md section 7): ``spec`` models the PipelineSearch resource,
``spaces`` the search spaces, ``store`` the replay buffer and trial queue,
``learner`` the MA2ML algorithm, ``worker`` the trainers, ``operator`` the
kopf operator, ``local`` the one-machine runner and ``cli`` the command.
"""

__version__ = "0.1.0"
