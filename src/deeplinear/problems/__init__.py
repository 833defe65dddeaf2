"""Problems and their data: dense targets with a chosen spectrum and the notebook's generator
(``dense``), completion and sensing (``measured``), initial weights (``initialization``). A
problem declares its reachable floor (``floor``) and what its runs record (``probe``).
"""
