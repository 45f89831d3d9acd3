"""batchlab's hardware catalogue: GPU datasheets (gpus.json) and models (models/*.json); read by core.hardware."""
