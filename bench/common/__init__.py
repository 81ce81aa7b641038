"""What every layer uses: the MLflow store (`tracking`), where the harness keeps things and which code made
them (`provenance`), how a user's mistake becomes one error line (`errors`), the intervals every number
carries (`stats`), and one random stream per owner of a run seed (`seeding`). Imports nothing of the other
layers."""
