"""Maintenance scripts (not installed with batchlab): lock.py writes requirements.lock."""
