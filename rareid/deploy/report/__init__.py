"""The review page of a search (``page``): one self-contained HTML file with the results
inlined, drawn by its own script (``static/``), in ``file`` mode beside ``rareid search``'s
results or in ``serve`` mode behind ``rareid serve``."""
