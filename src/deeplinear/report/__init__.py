"""The sweep report: summary rows, figures and profiles (``sweep_report``), the row texts
(``rows``), the interactive page (``page``), figures from tables (``plots``), colours and
bootstrap intervals.
"""
