"""Reports: tables, JSON and Markdown summaries of results."""
