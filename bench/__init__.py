"""Benchmarks: ``python -m bench NAME [--quick]`` runs ``bench/NAME.py``'s ``main(argv)``."""
