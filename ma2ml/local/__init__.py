"""One-machine mode: ``ma2ml run`` and the result commands.

``runner`` starts the learner (in-process) and worker processes on one
store; ``progress`` draws the live view; ``commands`` answers status, trials
and best; ``export`` writes a retraining script; ``report`` writes plots and
an HTML page. What those read from a search's results (summaries, the random
baseline, the time left) is ``ma2ml.results``, shared with the dashboard. The
learner, worker and store code are the cluster's own.
"""
