"""How answers are judged and summarised: the scorers a task format owns (hira/scoring/scorers.py) and the metrics
they use (hira/scoring/metrics.py). A building block beside hira/data: it imports nothing from the package above
hira/files, so a format module can name its scorer, or define a new one, without reaching up into hira/evaluation.
"""
