"""The dashboard at /ui: server-side page shells (Jinja2) whose scripts read the JSON API, and the
vendored chart library. Off with RECDISTILL_UI=false."""
