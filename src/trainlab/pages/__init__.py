"""Offline HTML pages: the rendering every page shares (page.py, templates/) and a run's own page (run_page.py),
written at the run's end. The sweep and comparison pages, built on these, live in experiments/report.py."""
