"""Bundled BurstGPT trace excerpts (CC-BY-4.0, see README.md); a package so wheels ship them."""
