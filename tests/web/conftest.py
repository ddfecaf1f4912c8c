import os
import sys

# tests/web/webcluster.py is imported as `webcluster`.
sys.path.insert(0, os.path.dirname(__file__))
