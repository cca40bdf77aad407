"""Offline evaluation: full-ranking metrics, the models and peers ranked alike, publish gates and
the published report.
"""
