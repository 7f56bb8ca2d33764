"""rnnlab-report: results of many runs and sweeps as one table (mean ± std over seeds) and plots.

``runs.py`` finds the runs under a directory and groups them; ``tables.py`` writes the table as
Markdown, CSV and LaTeX; ``plots.py`` draws learning curves from the TensorBoard event files and a
bar chart per metric. The command line is ``rnnlab/cli/report.py``.
"""
