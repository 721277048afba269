"""One module per external system: the archive stores and the capture streams."""
