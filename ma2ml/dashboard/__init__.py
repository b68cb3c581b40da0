"""``ma2ml dashboard``: a live, read-only web UI over the store.

``source`` opens a store read-only (never creates, migrates or writes);
``params`` checks query parameters; ``queries`` and ``learning`` build the
JSON views (searches, trials, best so far against random search, policies,
credit, decisions against reward); ``preview`` draws a trial's augmentation
(torch, imported only when a preview is asked for); ``app`` is the Starlette
application and ``command`` the ``ma2ml dashboard`` command. The page itself
(``static/``) polls the JSON API and draws with the plotly.js that PyPI
``plotly`` ships: nothing is fetched from outside the machine.
"""
