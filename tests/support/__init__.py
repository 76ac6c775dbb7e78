"""What the tests share: processes on loopback (services, bridges), fake hosts, waiting, npm and release
caches, speech. Fixtures stay in tests/conftest.py; everything here is plain code a test imports."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The checkout's root."""
