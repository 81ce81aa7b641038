"""Environments: the task registry (`tasks`), BabyAI-Text (`babyai_text`, with its episode memory and
wording), ScienceWorld (`scienceworld_text`, one JVM per environment), and what each model reads of an
episode (`contexts`). Knows nothing of models, routers or reports."""
