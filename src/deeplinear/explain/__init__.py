"""Verdicts for results directories: ``explain(DIR)`` (``api``) judges every run of a run
directory (``run_directory``) or each best configuration of a sweep (``sweep_directory``), all
through ``judging.judge_run``."""

from deeplinear.explain.api import explain as explain
from deeplinear.explain.run_directory import Explanation as Explanation
