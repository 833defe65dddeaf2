"""The losses a method minimizes: the dense least-squares ``objective`` (QR-reduced) and the
measured ones of completion and sensing (``measurement``).
"""
