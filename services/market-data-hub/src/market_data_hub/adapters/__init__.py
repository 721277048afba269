"""One module per external system."""
