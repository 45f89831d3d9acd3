"""batchlab's Streamlit web explorer: thin pages over small modules.

``forms`` builds widgets from dataclass field metadata, ``charts`` makes Altair
charts from the run series, ``state`` round-trips settings and results through
query parameters (links that recompute every run they name), ``services`` calls
the store and the simulator (with caching), ``jobs`` runs simulations outside the
script thread, ``pageutil`` starts and follows them, ``recover`` offers to
recompute runs a link names but the store lacks, ``catalog`` says how each summary
metric is shown, ``labels`` names runs by what differs, ``tables`` and ``views``
draw a run or a comparison, ``fmt`` formats numbers and escapes user text,
``launch`` starts ``streamlit run``.
"""
