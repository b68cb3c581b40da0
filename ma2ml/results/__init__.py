"""A search's results as every reader shows them: the CLI, the report and the dashboard.

``summary`` (``summarize``: counts, the best trial, curves, time used, the
trials table's rows and order), ``baseline`` (the random-search baseline, the
expected best of n random pipelines) and ``eta`` (the time left). Read from the
store only; no torch, no learner. Import the submodules directly.
"""
