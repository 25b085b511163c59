"""OCRDesk's headless engine: documents in, grounded markdown out, through any DeepSeek-OCR server.

The GUI and the CLI use only the names exported here. This package never imports Qt.
"""
