"""Language models as acting policies: `lm` (one interface for any checkpoint, candidate scoring or
generation, analytic FLOPs), `cost` (what one call cost), `demos` (BabyAIBot demonstrations and
ScienceWorld gold paths), `train` (behaviour cloning, tokenizers), `dagger` (DAgger rounds), `cache` (the
model cache and committed checkpoints: `python -m bench.models` trains a profile's pairs), `profiles`
(smoke, cpu, paper). Uses environments; knows nothing of routers, running or reports."""
