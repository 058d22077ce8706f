"""Evaluation in physical space: the surrogates compared, their metrics, intervals, reports and plots."""
