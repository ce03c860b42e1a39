"""``rareid serve``: the review page with an upload drop zone and a JSON search endpoint
(``server``, on the standard library's HTTP server) over an index reloaded when its file
changes (``engine``)."""
