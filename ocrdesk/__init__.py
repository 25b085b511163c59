"""OCRDesk: the one import name the distribution installs.

`ocrdesk.engine` is the headless core (no Qt), `ocrdesk.gui` the PySide6 window on top of it,
`ocrdesk.resources` their data files. In the repository these live in the top-level folders
engine/, gui/ and resources/ (the wheel maps them here, and the checkout links them here), so that
installed into a shared environment OCRDesk adds `ocrdesk` and nothing else to site-packages.
`ocrdesk.main` is the entry point, the only module that knows both the CLI and the window.

This module imports nothing: loading `ocrdesk.engine` must not pull anything else in.
"""

__version__ = "0.1.0"
