"""Tests of how OCRDesk is installed: wheel, desktop integration, PyInstaller bundle, .deb."""
