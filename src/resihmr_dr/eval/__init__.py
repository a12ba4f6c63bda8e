"""Evaluation: metrics (the paper's Table 1 protocol), synthetic benchmark, reports."""
