"""PRIME Workbench dashboards (Gradio). `python -m workbench --runs DIR`."""
