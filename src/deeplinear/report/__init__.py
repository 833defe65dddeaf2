"""The sweep report (``sweep_report.write_report``): the fair comparison of runs (``comparison``),
the summary rows and their outputs (``summary``), the static figures (``sweep_figures``), the row
texts (``rows``), the interactive page (``page``), figures from tables (``plots``), colours and
bootstrap intervals. Nothing is imported here: ``explain`` and ``reproduce`` take ``plots``
without the sweep report behind it.
"""
