"""What every layer uses: the MLflow store (`tracking`), where the harness keeps things and which code made
them (`provenance`), how a user's mistake becomes one error line (`errors`), and the intervals every number
carries (`stats`). Imports nothing of the other layers."""
