"""Reporting: tables, verdicts and plots read back from MLflow (`report`), the QUICK/DEEPTHINK pair's own
report (`pair`), and REPRODUCE.md generated from results/ (`reproduce_doc`). The top layer under the entry
points: it reads what running wrote."""
