"""Regenerating the paper: its numbers, tables from finished runs, ΔW rank analysis and figures."""
