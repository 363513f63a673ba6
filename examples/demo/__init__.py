"""The drag demo: protocol, streams, web app and page (run it with examples/drag_demo.py)."""
