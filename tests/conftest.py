import os
import sys

# tests/core/helpers.py is imported as `helpers` by the core tests, tests/strategies.py as `strategies`.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "core"))
sys.path.insert(0, os.path.dirname(__file__))
