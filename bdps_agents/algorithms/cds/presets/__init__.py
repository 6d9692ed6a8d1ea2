"""CDS's settings per scenario preset: ``<family>/<scenario>.yaml`` holds the ``cds:`` section
used when CDS runs that scenario (the reference's per-map β1, β2, β; docs/methods/cds.md)."""
