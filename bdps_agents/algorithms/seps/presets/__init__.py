"""SePS's settings per scenario preset: ``<family>/<scenario>.yaml`` holds the ``seps:`` section
used when SePS runs that scenario."""
