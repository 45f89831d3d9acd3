"""batchlab's Streamlit web explorer: thin pages over small modules.

``forms`` builds widgets from dataclass field metadata, ``charts`` makes Altair
charts from the run series, ``state`` round-trips settings and results through
query parameters, ``services`` calls the store and the simulator (with caching),
``views`` draws a run or a comparison, ``launch`` starts ``streamlit run``.
"""
