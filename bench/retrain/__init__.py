"""The retraining benchmark on public shop logs (`python -m bench.retrain`): days.py cuts day 0 and
day 1 and checks the holdout, steps.py runs each seed's commands (cold day 0, warm and cold day-1
retrains, a chain of warm retrains, day 0 refit), measure.py ranks every version on day 1's holdout,
render.py writes the JSON, the Markdown and the plot.
"""
