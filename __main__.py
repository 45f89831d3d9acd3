"""``python -m batchlab``: the command line."""
from batchlab.cli import main

main()
