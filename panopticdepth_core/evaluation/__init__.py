"""Evaluation: PQ / DPQ / DVPQ, depth metrics, result writers in the official layouts."""
