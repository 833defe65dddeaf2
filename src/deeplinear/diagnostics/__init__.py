"""What is measured about a run or a problem, below the problems that declare them: the reachable
minimum (``floors``), probes recorded inside the loop (``probes``, ``sharpness``), critical points
(``curvature``) and the decoupled theory (``theory``).
"""
