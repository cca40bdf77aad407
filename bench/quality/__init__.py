"""The quality benchmark on real shop logs (`python -m bench.quality`): run.py runs the seeds and holds
the command line, runs.py reads a seed back, checks.py aggregates and checks, render.py writes the
JSON, the Markdown and the plot.
"""
