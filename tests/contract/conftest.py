"""Puts this folder on sys.path so the suite can import ``harnesses``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
