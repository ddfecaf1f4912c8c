import os
import sys

# tests/core/helpers.py is imported as `helpers` by the core tests.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "core"))
