"""The gallery index: its record and file (``index``, ``index_file``), the folder it embeds
(``files``), updates in place (``update``), embedding on several devices (``distributed``) and
the optional approximate index (``ann``). Knows no search."""
