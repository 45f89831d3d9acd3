"""Model config.json files of the catalogue (see README.md in the parent folder)."""
