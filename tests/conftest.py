"""Shared fixtures: see tests/support.py for the helpers behind them."""

from __future__ import annotations

import sys

from tests.support import ROOT

sys.path.insert(0, str(ROOT))
