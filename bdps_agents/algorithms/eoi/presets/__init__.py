"""EOI's settings per scenario preset: ``<family>/<scenario>.yaml`` holds the ``eoi:`` section
used when EOI runs that scenario (the reference's explore_ratio per SMAC map)."""
